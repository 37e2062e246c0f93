"""The relay: a dongle's own connection to the vendor's server, kept beside ours.

In server mode the dongle talks to the bridge instead of the vendor's server,
so the vendor's app goes dark. With ``cloud = HOST:PORT`` in the inverter's
section, each dongle connection gets a ``CloudLink``: the bridge dials the
vendor's server for it and passes the bytes both ways, frame by frame and
untouched (``octolux.lxp.splitter``), so the app keeps working while the
bridge still sees every frame and sends its own requests between the cloud's.

Who answers the dongle's heartbeats: the cloud, while the link is up (its
answers pass through like everything else); the bridge, while it is not.
Never both for the same heartbeat, so the dongle sees one answer each time.

The cloud never holds up the local side: nothing waits on it, frames for a
link that is down or not keeping up are dropped (counted, logged once per
outage), and the link is redialled with backoff for as long as the dongle is
connected.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from octolux.lxp.splitter import FrameSplitter
from octolux.net.endpoints import FailureReportingEndpoint, describe_peer, failure_phrase


@implementer(IPushProducer)
class Congestion:
    """Registered on a transport as its producer, to learn when its send buffer is full.

    Twisted calls ``pauseProducing`` when the transport holds more than its
    buffer size unsent and ``resumeProducing`` once that is written; meanwhile
    ``congested`` is True and the relay drops instead of piling up memory.
    """

    def __init__(self):
        self.congested = False

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self.congested = True

    def resumeProducing(self) -> None:
        """The transport has written its buffer out."""
        self.congested = False

    def stopProducing(self) -> None:
        """The connection is closing: nothing more is written."""
        self.congested = True


class _CloudProtocol(protocol.Protocol):
    """The connection to the vendor's server: its bytes go to the dongle, frame by frame."""

    link: CloudLink

    def __init__(self):
        self._splitter = FrameSplitter()
        self.congestion = Congestion()

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.congestion, True)
        self.link.cloud_connected(self)

    def dataReceived(self, data: bytes) -> None:
        for chunk in self._splitter.feed(data):
            self.link.to_dongle(chunk)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.link.cloud_lost(self, failure_phrase(reason))

    def send(self, chunk: bytes) -> bool:
        """Write one whole frame to the cloud; False (nothing written) if it is not keeping up."""
        if self.congestion.congested:
            return False
        self.transport.write(chunk)
        return True


class _CloudFactory(protocol.Factory):
    noisy = False

    def __init__(self, link: CloudLink):
        self.link = link

    def buildProtocol(self, addr) -> _CloudProtocol:
        built = _CloudProtocol()
        built.link = self.link
        return built


class CloudLink:
    """One dongle connection's own connection to the vendor's server, redialled while needed.

    ``to_dongle(chunk)`` writes one whole frame (or run of bytes) from the
    cloud to the dongle; ``from_dongle(chunk)`` is called with each whole frame
    the dongle sends. ``up`` says whether the cloud is there to answer
    heartbeats.
    """

    log = Logger()

    def __init__(
        self,
        endpoint,  # IStreamClientEndpoint to the vendor's server
        address: str,  # "host:port", for the log
        to_dongle: Callable[[bytes], None],
        *,
        clock: IReactorTime,
        name: str,
        retry_policy=None,
    ):
        self.address = address
        self.to_dongle = to_dongle
        self.name = name
        self.frames_relayed = 0  # dongle -> cloud
        self.frames_dropped = 0  # dongle -> cloud, while the link was down or congested
        self._cloud: _CloudProtocol | None = None
        self._dropping = False  # has this outage been logged?
        self._retry_policy = retry_policy or backoffPolicy(maxDelay=300.0)
        self._last_problem = "not connected yet"
        self._client = ClientService(
            FailureReportingEndpoint(endpoint, self._attempt_failed),
            _CloudFactory(self),
            retryPolicy=self._retry_delay,
            clock=clock,
        )

    @property
    def up(self) -> bool:
        """Is the connection to the vendor's server up?"""
        return self._cloud is not None

    def start(self) -> None:
        """Dial the vendor's server (and keep redialling) until ``stop``."""
        self._client.startService()

    def stop(self) -> None:
        """Close the link and stop redialling (the dongle has gone)."""
        self._client.stopService()

    def from_dongle(self, chunk: bytes) -> None:
        """Pass one whole frame from the dongle to the cloud, or drop it if it can't take it."""
        if self._cloud is not None and self._cloud.send(chunk):
            self.frames_relayed += 1
            if self._dropping:
                self._dropping = False
                self.log.info("{name}: relaying to the vendor's server {address} again",
                              name=self.name, address=self.address)
            return
        self.frames_dropped += 1
        if not self._dropping:
            self._dropping = True
            why = "not keeping up" if self._cloud is not None else self._last_problem
            self.log.info(
                "{name}: not relaying to the vendor's server {address} ({why}): the local"
                " side goes on; the vendor's app misses data until the link is back",
                name=self.name, address=self.address, why=why)

    # -- called by _CloudProtocol ----------------------------------------------------

    def cloud_connected(self, cloud: _CloudProtocol) -> None:
        """The vendor's server is connected: relay through ``cloud`` from now on."""
        self._cloud = cloud
        self.log.info("{name}: relaying to the vendor's server {address} ({peer})",
                      name=self.name, address=self.address,
                      peer=describe_peer(cloud.transport.getPeer()))

    def cloud_lost(self, cloud: _CloudProtocol, reason: str) -> None:
        """``cloud`` has gone (``reason``, for the next log line); the client redials."""
        if cloud is self._cloud:
            self._cloud = None
            self._last_problem = f"connection lost: {reason}"

    def _attempt_failed(self, failure) -> None:
        self._last_problem = f"cannot connect: {failure_phrase(failure)}"

    def _retry_delay(self, attempt: int) -> float:
        delay = self._retry_policy(attempt)
        # An unreachable cloud for days would otherwise log a line a minute.
        if attempt == 1 or attempt % 10 == 0:
            self.log.info("{name}: the vendor's server {address}: {why}; retrying in {delay:.1f} s",
                          name=self.name, address=self.address, why=self._last_problem,
                          delay=delay)
        return delay
