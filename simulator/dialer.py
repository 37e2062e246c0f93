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

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime

from octolux import lxp
from simulator.dongle import DongleConfig, DongleFactory, DongleProtocol, SimulatedDongle
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
            self.send_frame(self.factory.responder.heartbeat())


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
    def heartbeats_answered_lately(self) -> bool:
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
        if not self.heartbeats_answered_lately:
            if not self._paused:
                self._paused = True
                self.log.info(
                    "dongle {datalog}: no heartbeat answered for {count} heartbeats: "
                    "not broadcasting until one is", datalog=self.config.datalog,
                    count=self.unanswered_heartbeats)
            return
        super().broadcast_now()


class DialingDongle(SimulatedDongle):
    """One simulated dongle that connects to ``endpoint`` and keeps reconnecting.

    Its one client is the server it dials; ``broadcast_now`` broadcasts only
    while that server answers the heartbeats, and ``drop_clients`` closes the
    connection until the backoff delay has passed.
    """

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
    config = DongleConfig(**settings)
    dongle = DialingDongle(reactor, HostnameEndpoint(reactor, host, port), config, plant,
                           address=f"{host}:{port}", retry_policy=retry_policy,
                           unanswered_heartbeats=unanswered_heartbeats)
    dongle.startService()
    return dongle
