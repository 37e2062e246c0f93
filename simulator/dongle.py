"""A simulated WiFi datalogger ("dongle") and its inverter: the Twisted side of the simulator.

Behaves like the real thing (PROTOCOL.md section 8): heartbeats on every
connection; input broadcasts, and replies to any client's request, go to every
connected client; requests for another datalog or inverter serial are ignored
(except inverter serial 0000000000, see ``responder.ANY_INVERTER``).
Every byte is encoded and decoded by ``octolux.lxp``; the numbers come from a
``simulator.plant.Plant``, the answers from a ``simulator.responder.Responder``.

Sockets and timers only, in three layers:

- ``DongleProtocol``: one TCP client. Bytes in -> frames (``lxp.FrameDecoder``),
  frames out -> bytes (``lxp.build``), and the per-connection faults.
- ``DongleFactory``: the dongle itself. Its clients, the broadcast and
  foreign-traffic timers, the request log; what to answer is the responder's,
  the random faults ``simulator.faults``', the state file ``simulator.state``'s.
- ``Dongle``: a service listening on an endpoint; ``start_simulator`` starts
  one in-process for tests and exposes its port, plant and request log. It and
  ``simulator.dialer.DialingDongle`` (which dials out) share what tests see of
  a dongle through ``SimulatedDongle``.

All timers go through the injected clock (``IReactorTime``), so tests drive
them with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import collections
import datetime
import os
from collections.abc import Callable

import attrs
from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from octolux import lxp
from octolux.lxp.frames import REQUESTS
from octolux.net.badframes import BadFrameLog
from simulator.faults import FaultInjection, Faults, non_negative, positive
from simulator.logs import Hex, Summary, observer, set_verbose
from simulator.models import DEFAULT_MODEL, SIMULATED_MODELS, DongleKind, SimulatedModel
from simulator.plant import Plant
from simulator.registers import DEFAULT_INVERTER_SERIAL
from simulator.responder import Answer, BroadcastFormat, Responder
from simulator.state import PlantState

__all__ = [
    "DEFAULT_DATALOG_SERIAL", "REQUEST_LOG_LENGTH", "BroadcastFormat", "Dongle", "DongleConfig",
    "DongleFactory", "DongleProtocol", "Faults", "SimulatedDongle", "set_verbose",
    "start_simulator",
]

DEFAULT_DATALOG_SERIAL = "SIMDL00001"
# The request log keeps the latest this many: enough for any test, bounded for a
# ``twistd lxp-simulator`` that runs for months.
REQUEST_LOG_LENGTH = 10_000


def _serial(instance, attribute, value):
    lxp.check_serial(value, attribute.name)


def _simulated_model(value: SimulatedModel | str) -> SimulatedModel:
    if isinstance(value, SimulatedModel):
        return value
    try:
        return SIMULATED_MODELS[value]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(SIMULATED_MODELS)}: {value!r}") from None


@attrs.frozen
class DongleConfig:
    """Everything that makes one simulated dongle (see ``twistd lxp-simulator --help``)."""

    datalog: str = attrs.field(default=DEFAULT_DATALOG_SERIAL, validator=_serial)
    inverter: str = attrs.field(default=DEFAULT_INVERTER_SERIAL, validator=_serial)
    interval: float = attrs.field(default=120.0, validator=positive)
    burst_gap: float = attrs.field(default=1.0, validator=non_negative)
    heartbeat: float = attrs.field(default=60.0, validator=positive)
    first_burst_delay: float = attrs.field(default=1.0, validator=non_negative)
    format: BroadcastFormat = attrs.field(default=BroadcastFormat.BURSTS, converter=BroadcastFormat)
    speed: float = attrs.field(default=1.0, validator=positive)
    seed: int | None = None
    start: datetime.datetime | None = None  # simulated start time; None: the wall clock at start
    clock_offset: float = 0.0  # seconds the inverter's clock is ahead of the simulated time
    state_path: str | None = attrs.field(
        default=None, converter=attrs.converters.optional(os.fspath)
    )
    faults: Faults = Faults()
    dongle: DongleKind = attrs.field(default=DongleKind.BA, converter=DongleKind)
    model: SimulatedModel = attrs.field(default=DEFAULT_MODEL, converter=_simulated_model)
    batteries: int = attrs.field(default=0, validator=non_negative)


# -- one client -----------------------------------------------------------------


class DongleProtocol(protocol.Protocol):
    """One TCP client of a simulated dongle: frames in and out, heartbeats, connection faults."""

    log = Logger(observer=observer)
    factory: DongleFactory

    def __init__(self):
        self.peer = "unknown"
        self.connected_at = 0.0
        self.refused = False
        self._decoder = lxp.FrameDecoder(lxp.Direction.TO_DONGLE)  # its clients' requests
        self._heartbeats: task.LoopingCall | None = None
        self._drop_call = None
        self._outbox: collections.deque[bytes] = collections.deque()
        self._drain_call = None
        self._lost_waiters: list[defer.Deferred] = []
        self._lost = False
        self._bad_frames: BadFrameLog | None = None  # bounded, like the bridge's

    @property
    def clock(self) -> IReactorTime:
        """The dongle's clock."""
        return self.factory.clock

    @property
    def silent(self) -> bool:
        """True once this connection has gone quiet (``Faults.silent_after``)."""
        after = self.factory.faults.silent_after
        return after is not None and self.clock.seconds() - self.connected_at >= after

    def connectionMade(self):
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        self.connected_at = self.clock.seconds()
        self._bad_frames = BadFrameLog(self.log, self.clock, "simulator", self.peer)
        if not self.factory.client_connected(self):
            self.refused = True
            self.transport.loseConnection()
            return
        faults = self.factory.faults
        if faults.split and hasattr(self.transport, "setTcpNoDelay"):
            # Without this the kernel would merge the segments again.
            self.transport.setTcpNoDelay(True)
        self._heartbeats = task.LoopingCall(self._send_heartbeat)
        self._heartbeats.clock = self.clock
        self._heartbeats.start(self.factory.config.heartbeat, now=False)
        if faults.drop_every is not None:
            self._drop_call = self.clock.callLater(faults.drop_every, self._drop)

    def dataReceived(self, data: bytes):
        if self.silent:
            self.log.debug("silent: ignoring {count} bytes from {peer}", count=len(data),
                           peer=self.peer)
            return
        self.log.debug("from {peer}: {data}", peer=self.peer, data=Hex(data))
        for item in self._decoder.feed(data):
            if isinstance(item, lxp.BadFrame):
                self._bad_frames.report(item)
            else:
                self.factory.frame_received(self, item)

    def connectionLost(self, reason=protocol.connectionDone):
        self._lost = True
        if self._bad_frames is not None:
            self._bad_frames.close()
        for call in (self._drop_call, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self._drop_call = self._drain_call = None
        if self._heartbeats is not None and self._heartbeats.running:
            self._heartbeats.stop()
        self._outbox.clear()
        if not self.refused:
            self.factory.client_lost(self, reason)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_lost(self) -> defer.Deferred[None]:
        """A Deferred that fires once this connection is closed."""
        if self._lost:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    # -- output -------------------------------------------------------------------

    def send_frame(self, frame) -> None:
        """Encode ``frame`` and send it, through the output faults."""
        if self.silent or self._lost:
            return
        injection = self.factory.fault_injection
        data = lxp.build(frame)
        if injection.corrupt_crc(frame):
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
            self.log.debug("corrupting the CRC of {frame} to {peer}", frame=Summary(frame),
                           peer=self.peer)
        data = injection.garbage() + data
        self.log.debug("to {peer}: {frame}: {data}", peer=self.peer, frame=Summary(frame),
                       data=Hex(data))
        self._write(data, bool(injection.faults.split))

    def _write(self, data: bytes, split: bool) -> None:
        if not split and not self._outbox:
            self.transport.write(data)
            return
        # Everything queues behind earlier segments, or frames would overtake each other.
        self._outbox.extend(self.factory.fault_injection.segments(data))
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        # One segment per reactor turn, so that each leaves in its own TCP segment.
        self._drain_call = None
        if self._outbox and not self._lost:
            self.transport.write(self._outbox.popleft())
            if self._outbox:
                self._drain_call = self.clock.callLater(0, self._drain)

    def _send_heartbeat(self) -> None:
        self.send_frame(self.factory.responder.heartbeat())

    def _drop(self) -> None:
        self._drop_call = None
        self.log.info("dropping the connection to {peer} (fault injection: drop every {seconds} s)",
                      peer=self.peer, seconds=self.factory.faults.drop_every)
        self.transport.loseConnection()


# -- the dongle -------------------------------------------------------------------


class DongleFactory(protocol.Factory):
    """One simulated dongle and its inverter: its clients, its timers, its request log.

    ``requests`` holds every request frame received from any client, in order,
    including the ones it ignored (wrong serials, mute, silent excepted): the
    latest ``REQUEST_LOG_LENGTH`` of them. ``responder`` says what to answer.
    """

    protocol = DongleProtocol
    noisy = False  # we log connections ourselves, with the dongle's serial
    log = Logger(observer=observer)

    def __init__(self, clock: IReactorTime, config: DongleConfig | None = None,
                 plant: Plant | None = None):
        config = config or DongleConfig()
        self.clock = clock
        self.config = config
        if plant is None:
            start = config.start or datetime.datetime.now().replace(microsecond=0)
            plant = Plant(start=start, seed=config.seed, inverter_serial=config.inverter,
                          model=config.model, batteries=config.batteries,
                          clock_offset=datetime.timedelta(seconds=config.clock_offset))
        self.plant = plant
        self.responder = Responder(config.datalog, config.inverter, plant, config.format,
                                   config.interval, config.dongle)
        self.requests: collections.deque = collections.deque(maxlen=REQUEST_LOG_LENGTH)
        self.clients: list[DongleProtocol] = []
        self.fault_injection = FaultInjection(config.faults, config.seed)
        self._synced_at = clock.seconds()
        if config.faults.grid_down:
            self.plant.set_grid(False)
        self._broadcast_call = None
        self._foreign_call = None
        self._foreign_sent = 0
        self._pending: set = set()
        self._request_waiters: list[tuple[Callable, defer.Deferred]] = []
        self._connection_waiters: list[defer.Deferred] = []
        self.state: PlantState | None = None
        if config.state_path is not None:
            self.state = PlantState(config.state_path, plant, config.datalog, config.inverter)
            self.state.restore()

    # -- settings ---------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The fault injection in force; assign a new ``Faults`` to change it live."""
        return self.fault_injection.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.fault_injection.faults = faults
        self.log.info("dongle {datalog}: faults now {faults}", datalog=self.config.datalog,
                      faults=faults)
        if self.plant.grid_up == faults.grid_down:
            self.sync_plant()  # the power cut starts (or ends) now, not at the last step
            self.plant.set_grid(not faults.grid_down)
        self._schedule_foreign_traffic()

    @property
    def interval(self) -> float:
        """Seconds between input broadcasts (the dongle's parameter 0, which clients may set)."""
        return self.responder.interval

    # -- clients ------------------------------------------------------------------

    def client_connected(self, client: DongleProtocol) -> bool:
        """Take on a new client; False if it is refused (``Faults.max_clients``)."""
        limit = self.faults.max_clients
        if limit is not None and len(self.clients) >= limit:
            self.log.info("dongle {datalog}: refusing {peer}: {count} clients already "
                          "(fault injection: max {limit})", datalog=self.config.datalog,
                          peer=client.peer, count=len(self.clients), limit=limit)
            return False
        self.clients.append(client)
        self.log.info("dongle {datalog}: client {peer} connected ({count} connected)",
                      datalog=self.config.datalog, peer=client.peer, count=len(self.clients))
        # A BJ or DG dongle greets each client with its holding registers 0-79.
        self.sync_plant()
        for frame in self.responder.connect_push():
            client.send_frame(frame)
        # A new client gets a burst soon, and every client the same schedule after it.
        self._schedule_broadcasts(self.config.first_burst_delay)
        self._schedule_foreign_traffic()
        waiters, self._connection_waiters = self._connection_waiters, []
        for waiter in waiters:
            waiter.callback(client)
        return True

    def client_lost(self, client: DongleProtocol, reason) -> None:
        """Forget a client; stop broadcasting when none is left."""
        if client in self.clients:
            self.clients.remove(client)
        self.log.info("dongle {datalog}: client {peer} disconnected ({why}); {count} connected",
                      datalog=self.config.datalog, peer=client.peer,
                      why=reason.getErrorMessage(), count=len(self.clients))
        if not self.clients:
            self._cancel_broadcasts()
            self._cancel(self._foreign_call)
            self._foreign_call = None

    def when_connected(self) -> defer.Deferred:
        """A Deferred that fires with a client protocol once one is connected."""
        if self.clients:
            return defer.succeed(self.clients[0])
        waiter: defer.Deferred = defer.Deferred()
        self._connection_waiters.append(waiter)
        return waiter

    def drop_clients(self) -> defer.Deferred:
        """Close every client connection; fires once they are all closed."""
        clients = list(self.clients)
        for client in clients:
            self.log.info("dongle {datalog}: closing the connection to {peer}",
                          datalog=self.config.datalog, peer=client.peer)
            client.transport.loseConnection()
        return defer.gatherResults([client.when_lost() for client in clients])

    def send_to_all(self, frame) -> None:
        """Send ``frame`` to every connected client, as a dongle does with everything."""
        for client in list(self.clients):
            client.send_frame(frame)

    # -- requests -----------------------------------------------------------------

    def frame_received(self, client: DongleProtocol, frame) -> None:
        """Handle one frame from a client: answer requests, ignore the rest."""
        if isinstance(frame, REQUESTS):
            self._request_received(client, frame)
        elif isinstance(frame, lxp.Heartbeat):
            self.log.debug("heartbeat echoed by {peer}", peer=client.peer)
        else:
            self.log.info("ignoring {frame} from {peer}: not a request", frame=Summary(frame),
                          peer=client.peer)

    def when_request(self, predicate: Callable[[object], bool] | None = None) -> defer.Deferred:
        """A Deferred firing with the next request frame (matching ``predicate``) once handled."""
        waiter: defer.Deferred = defer.Deferred()
        self._request_waiters.append((predicate or (lambda frame: True), waiter))
        return waiter

    def _request_received(self, client: DongleProtocol, request) -> None:
        self.requests.append(request)
        datalog = self.config.datalog
        self.log.info("dongle {datalog}: request from {peer}: {request}",
                      datalog=datalog, peer=client.peer, request=Summary(request))
        faults = self.faults
        if not self.responder.addressed_to_us(request):
            self.log.info(
                "dongle {datalog}: ignoring it: addressed to datalog {to_datalog} "
                "inverter {to_inverter}", datalog=datalog,
                to_datalog=request.datalog, to_inverter=getattr(request, "inverter", "-"))
        elif faults.mute:
            self.log.info("dongle {datalog}: not replying (fault injection: mute)",
                          datalog=datalog)
        else:
            self.sync_plant()
            if self.fault_injection.busy(request):
                self.log.info("dongle {datalog}: answering BUSY (fault injection)",
                              datalog=datalog)
                answer = Answer((self.responder.refuse(request, lxp.ExceptionCode.BUSY),))
            else:
                answer = self.answer_request(request)
            for frame in answer.frames:
                if faults.reply_delay:
                    self._later(faults.reply_delay, self.send_to_all, frame)
                else:
                    self.send_to_all(frame)
        remaining = []
        for predicate, waiter in self._request_waiters:
            if predicate(request):
                waiter.callback(request)
            else:
                remaining.append((predicate, waiter))
        self._request_waiters = remaining

    def answer_request(self, request) -> Answer:
        """The responder's answer, logged, saved and acted upon."""
        answer = self.responder.respond(request)
        for note in answer.notes:
            self.log.info("dongle {datalog}: {note}", datalog=self.config.datalog, note=note)
        if answer.changed and self.state is not None:
            self.state.save()
        if answer.interval is not None and self._broadcast_call is not None:
            self._schedule_broadcasts(answer.interval)
        return answer

    # -- the plant ----------------------------------------------------------------

    def sync_plant(self) -> None:
        """Run the plant up to now: simulated time is real time times ``speed``."""
        now = self.clock.seconds()
        elapsed, self._synced_at = now - self._synced_at, now
        if elapsed > 0:
            self.plant.advance(elapsed * self.config.speed)

    # -- broadcasts -----------------------------------------------------------------

    def broadcast_now(self) -> None:
        """Broadcast the input registers now: a burst of three frames or one 127-register frame."""
        self.sync_plant()
        self.log.debug("dongle {datalog}: broadcasting inputs to {count} clients",
                       datalog=self.config.datalog, count=len(self.clients))
        for index, frame in enumerate(self.responder.broadcast()):
            if index == 0:
                self.send_to_all(frame)
            else:
                self._later(index * self.config.burst_gap, self.send_to_all, frame)

    def _schedule_broadcasts(self, delay: float) -> None:
        self._cancel(self._broadcast_call)
        self._broadcast_call = self.clock.callLater(delay, self._broadcast_due)

    def _broadcast_due(self) -> None:
        self._broadcast_call = self.clock.callLater(self.interval, self._broadcast_due)
        self.broadcast_now()

    def _cancel_broadcasts(self) -> None:
        self._cancel(self._broadcast_call)
        self._broadcast_call = None

    # -- foreign traffic --------------------------------------------------------------

    def _schedule_foreign_traffic(self) -> None:
        every = self.faults.foreign_traffic
        if every is None or not self.clients:
            self._cancel(self._foreign_call)
            self._foreign_call = None
        elif self._foreign_call is None:
            self._foreign_call = self.clock.callLater(every, self._foreign_due)

    def _foreign_due(self) -> None:
        self._foreign_call = None
        self.sync_plant()
        frame = self.responder.foreign_frame(self._foreign_sent)
        self._foreign_sent += 1
        self.log.info("dongle {datalog}: sending foreign traffic (fault injection): {frame}",
                      datalog=self.config.datalog, frame=Summary(frame))
        self.send_to_all(frame)
        self._schedule_foreign_traffic()

    # -- timers -------------------------------------------------------------------

    def _later(self, delay: float, function, *args) -> None:
        """callLater, remembered so that ``shutdown`` can cancel it."""

        def run():
            self._pending.discard(call)
            function(*args)

        call = self.clock.callLater(delay, run)
        self._pending.add(call)

    @staticmethod
    def _cancel(call) -> None:
        if call is not None and call.active():
            call.cancel()

    def shutdown(self) -> defer.Deferred:
        """Stop every timer and close every connection; fires once they are closed."""
        self._cancel_broadcasts()
        self._cancel(self._foreign_call)
        self._foreign_call = None
        for call in list(self._pending):
            self._cancel(call)
        self._pending.clear()
        clients = list(self.clients)
        for client in clients:
            client.transport.abortConnection()
        return defer.gatherResults([client.when_lost() for client in clients])


class SimulatedDongle(service.Service):
    """What a test sees of a simulated dongle, whether it listens (``Dongle``) or dials out.

    Each is a service around its ``factory`` (the dongle itself): these are
    views of the factory, the same for both.
    """

    log = Logger(observer=observer)
    factory: DongleFactory

    @property
    def config(self) -> DongleConfig:
        """The dongle's configuration."""
        return self.factory.config

    @property
    def plant(self) -> Plant:
        """The simulated inverter: ``plant.holding``, ``plant.input_registers()``, ..."""
        return self.factory.plant

    @property
    def requests(self) -> collections.deque:
        """Request frames received from any client, in order (``lxp`` frames; the latest 10 000)."""
        return self.factory.requests

    @property
    def faults(self) -> Faults:
        """The fault injection in force; assign a new ``Faults`` to change it live."""
        return self.factory.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.factory.faults = faults

    @property
    def clients(self) -> list[DongleProtocol]:
        """The connected clients."""
        return self.factory.clients

    def when_connected(self) -> defer.Deferred:
        """A Deferred that fires once a client is connected."""
        return self.factory.when_connected()

    def when_request(self, predicate: Callable[[object], bool] | None = None) -> defer.Deferred:
        """A Deferred firing with the next request frame (matching ``predicate``) once handled."""
        return self.factory.when_request(predicate)

    def broadcast_now(self) -> None:
        """Broadcast the input registers now, off schedule."""
        self.factory.broadcast_now()

    def drop_clients(self) -> defer.Deferred:
        """Close every client connection; fires once they are closed."""
        return self.factory.drop_clients()

    def stop(self) -> defer.Deferred:
        """Stop the service and close every connection."""
        return defer.maybeDeferred(self.stopService)


class Dongle(SimulatedDongle):
    """One simulated dongle as a service: listens on ``endpoint`` and serves its clients.

    ``port`` is the bound TCP port once listening (``when_listening()`` waits
    for it); ``plant``, ``requests`` and ``faults`` are the dongle's.
    """

    def __init__(self, clock: IReactorTime, endpoint, config: DongleConfig | None = None,
                 plant: Plant | None = None):
        config = config or DongleConfig()
        self.name = config.datalog
        self.factory = DongleFactory(clock, config, plant)
        self._endpoint = endpoint
        self._listening_port = None
        self._listen_failure = None
        self._listening_waiters: list[defer.Deferred] = []

    @property
    def port(self) -> int | None:
        """The TCP port it listens on, or None before it listens."""
        if self._listening_port is None:
            return None
        return self._listening_port.getHost().port

    def when_listening(self) -> defer.Deferred[int]:
        """A Deferred that fires with the bound port (or fails if listening failed)."""
        if self._listening_port is not None:
            return defer.succeed(self.port)
        if self._listen_failure is not None:
            return defer.fail(self._listen_failure)
        waiter: defer.Deferred[int] = defer.Deferred()
        self._listening_waiters.append(waiter)
        return waiter

    # -- service ------------------------------------------------------------------------

    def startService(self):
        super().startService()
        self._listen_failure = None
        listening = self._endpoint.listen(self.factory)
        listening.addCallbacks(self._listening, self._listen_failed)

    def _listening(self, listening_port) -> None:
        self._listening_port = listening_port
        address = listening_port.getHost()
        config = self.config
        self.log.info(
            "dongle {datalog} (inverter {inverter}) listening on {host}:{port}; "
            "{broadcast} every {interval} s, heartbeat every {heartbeat} s, speed x{speed}",
            datalog=config.datalog, inverter=config.inverter, host=address.host,
            port=address.port, broadcast=config.format.value, interval=config.interval,
            heartbeat=config.heartbeat, speed=config.speed)
        if config.faults != Faults():
            self.log.info("dongle {datalog}: fault injection: {faults}", datalog=config.datalog,
                          faults=config.faults)
        waiters, self._listening_waiters = self._listening_waiters, []
        for waiter in waiters:
            waiter.callback(address.port)

    def _listen_failed(self, failure) -> None:
        self._listen_failure = failure
        self.log.error("dongle {datalog} cannot listen: {error}", datalog=self.config.datalog,
                       error=failure.getErrorMessage())
        waiters, self._listening_waiters = self._listening_waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def stopService(self):
        super().stopService()
        closing = [self.factory.shutdown()]
        if self._listening_port is not None:
            closing.append(defer.maybeDeferred(self._listening_port.stopListening))
            self._listening_port = None
        return defer.gatherResults(closing).addCallback(lambda _: None)


def start_simulator(reactor, port: int = 0, interface: str = "127.0.0.1", *,
                    plant: Plant | None = None, **settings) -> defer.Deferred[Dongle]:
    """Start a simulated dongle in-process; fires with the running ``Dongle`` once it listens.

    ``settings`` are ``DongleConfig`` fields (``datalog``, ``inverter``,
    ``interval``, ``first_burst_delay``, ``faults=Faults(...)``, ...). Stop it
    with ``await dongle.stop()``.
    """
    config = DongleConfig(**settings)
    dongle = Dongle(reactor, TCP4ServerEndpoint(reactor, port, interface=interface), config, plant)
    dongle.startService()
    return dongle.when_listening().addCallback(lambda _: dongle)
