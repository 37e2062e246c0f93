"""A simulated dongle that dials out, as real ones dial the vendor's server (port 4346).

A real dongle is a TCP client of the vendor's server: it connects, sends a
heartbeat at once and every minute after, broadcasts its input data, answers
the requests the server relays, and reconnects when the link drops. When
nobody answers its heartbeats for a while it stops broadcasting input data
(PROTOCOL.md section 3) and starts again once someone does.

``DialingDongle`` is that: the same ``DongleFactory`` (plant, answers,
broadcasts, faults) as the listening ``Dongle``, connected through a
``ClientService`` with exponential backoff instead of a listening port.
"""

from __future__ import annotations

import collections

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from octolux import lxp
from simulator.dongle import DongleConfig, DongleFactory, DongleProtocol, _observer
from simulator.plant import Plant

# Heartbeats in a row that may go unanswered before the broadcasts stop.
DEFAULT_UNANSWERED_HEARTBEATS = 3


class DialingDongleProtocol(DongleProtocol):
    """The dongle's one connection to its server: heartbeats start the moment it is up."""

    def connectionMade(self):
        super().connectionMade()
        if not self.refused:
            # A real dongle introduces itself with a heartbeat straight away: it is how
            # the server learns which dongle this connection is.
            self.send_frame(lxp.Heartbeat(self.factory.config.datalog,
                                          protocol=self.factory.heartbeat_protocol))


class DialingDongleFactory(DongleFactory):
    """A ``DongleFactory`` that stops broadcasting while its heartbeats go unanswered.

    The broadcasts pause once ``unanswered_heartbeats`` heartbeat intervals
    have passed since the connection was made or the last heartbeat answer,
    and resume with the next answer.
    """

    protocol = DialingDongleProtocol

    def __init__(self, clock: IReactorTime, config: DongleConfig | None = None,
                 plant: Plant | None = None,
                 unanswered_heartbeats: int = DEFAULT_UNANSWERED_HEARTBEATS):
        super().__init__(clock, config, plant)
        self.unanswered_heartbeats = unanswered_heartbeats
        self.heartbeat_answers = 0
        self._answered_at = clock.seconds()
        self._paused = False

    @property
    def answered(self) -> bool:
        """Has a heartbeat been answered recently enough to keep broadcasting?"""
        patience = self.unanswered_heartbeats * self.config.heartbeat
        # A little slack: the answer to the last heartbeat of the window may be in flight.
        return self.clock.seconds() - self._answered_at <= patience + self.config.heartbeat / 2

    def client_connected(self, client: DongleProtocol) -> bool:
        # A new link gets its own chance: the server behind it may answer.
        self._answered_at = self.clock.seconds()
        return super().client_connected(client)

    def frame_received(self, client: DongleProtocol, frame) -> None:
        if isinstance(frame, lxp.Heartbeat):
            self.heartbeat_answers += 1
            self._answered_at = self.clock.seconds()
            if self._paused:
                self._paused = False
                self.log.info("dongle {datalog}: heartbeats answered again: broadcasting",
                              datalog=self.config.datalog)
        super().frame_received(client, frame)

    def broadcast_now(self) -> None:
        """Broadcast the input registers, unless nobody has answered the heartbeats."""
        if not self.answered:
            if not self._paused:
                self._paused = True
                self.log.info(
                    "dongle {datalog}: no heartbeat answered for {count} heartbeats: "
                    "not broadcasting until one is", datalog=self.config.datalog,
                    count=self.unanswered_heartbeats)
            return
        super().broadcast_now()


class DialingDongle(service.Service):
    """One simulated dongle that connects to ``endpoint`` and keeps reconnecting.

    Like ``Dongle`` for tests: ``plant``, ``requests``, ``faults``, ``clients``,
    ``when_connected()``, ``when_request()``, ``broadcast_now()``.
    """

    log = Logger(observer=_observer)

    def __init__(self, clock: IReactorTime, endpoint, config: DongleConfig | None = None,
                 plant: Plant | None = None, *, address: str = "the server",
                 retry_policy=None,
                 unanswered_heartbeats: int = DEFAULT_UNANSWERED_HEARTBEATS):
        config = config or DongleConfig()
        self.name = config.datalog
        self.address = address
        self.factory = DialingDongleFactory(clock, config, plant, unanswered_heartbeats)
        self._retry_policy = retry_policy or backoffPolicy(maxDelay=60.0)
        self._client = ClientService(endpoint, self.factory, retryPolicy=self._retry_delay,
                                     clock=clock)

    # -- what tests use -------------------------------------------------------------

    @property
    def config(self) -> DongleConfig:
        """The dongle's configuration."""
        return self.factory.config

    @property
    def plant(self) -> Plant:
        """The simulated inverter."""
        return self.factory.plant

    @property
    def requests(self) -> collections.deque:
        """Request frames received from the server, in order (the latest 10 000)."""
        return self.factory.requests

    @property
    def clients(self) -> list[DongleProtocol]:
        """The connection to the server, if it is up (a list, as ``Dongle.clients``)."""
        return self.factory.clients

    @property
    def faults(self):
        """The fault injection in force; assign a new ``Faults`` to change it live."""
        return self.factory.faults

    @faults.setter
    def faults(self, faults) -> None:
        self.factory.faults = faults

    def when_connected(self) -> defer.Deferred:
        """A Deferred that fires once connected to the server."""
        return self.factory.when_connected()

    def when_request(self, predicate=None) -> defer.Deferred:
        """A Deferred firing with the next request frame (matching ``predicate``) once handled."""
        return self.factory.when_request(predicate)

    def broadcast_now(self) -> None:
        """Broadcast the input registers now, off schedule (if heartbeats are answered)."""
        self.factory.broadcast_now()

    def drop_clients(self) -> defer.Deferred:
        """Close the connection (it is made again after the backoff delay)."""
        return self.factory.drop_clients()

    def stop(self) -> defer.Deferred:
        """Stop dialling and close the connection."""
        return defer.maybeDeferred(self.stopService)

    # -- service ------------------------------------------------------------------------

    def startService(self):
        super().startService()
        config = self.config
        self.log.info(
            "dongle {datalog} (inverter {inverter}) dialling {address}; {broadcast} every "
            "{interval} s, heartbeat every {heartbeat} s, speed x{speed}",
            datalog=config.datalog, inverter=config.inverter, address=self.address,
            broadcast=config.format.value, interval=config.interval,
            heartbeat=config.heartbeat, speed=config.speed)
        self._client.startService()

    def stopService(self):
        super().stopService()
        return defer.gatherResults(
            [self._client.stopService(), self.factory.shutdown()]
        ).addCallback(lambda _: None)

    def _retry_delay(self, attempt: int) -> float:
        delay = self._retry_policy(attempt)
        self.log.info("dongle {datalog}: no connection to {address}, retrying in {delay:.1f} s "
                      "(attempt {attempt})", datalog=self.config.datalog,
                      address=self.address, delay=delay, attempt=attempt)
        return delay


def start_dialing_simulator(reactor, host: str, port: int, *, plant: Plant | None = None,
                            retry_policy=None,
                            unanswered_heartbeats: int = DEFAULT_UNANSWERED_HEARTBEATS,
                            **settings) -> DialingDongle:
    """Start a dongle that dials ``host:port`` in-process; returns the running ``DialingDongle``.

    ``settings`` are ``DongleConfig`` fields. ``await dongle.when_connected()``
    waits for the connection; ``await dongle.stop()`` stops it.
    """
    from twisted.internet.endpoints import HostnameEndpoint

    config = DongleConfig(**settings)
    dongle = DialingDongle(reactor, HostnameEndpoint(reactor, host, port), config, plant,
                           address=f"{host}:{port}", retry_policy=retry_policy,
                           unanswered_heartbeats=unanswered_heartbeats)
    dongle.startService()
    return dongle
