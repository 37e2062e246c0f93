"""A simulated WiFi datalogger ("dongle") and its inverter: the Twisted side of the simulator.

Behaves like the real thing (PROTOCOL.md section 8): heartbeats on every
connection; input broadcasts, and replies to any client's request, go to every
connected client; requests for another datalog or inverter serial are ignored
(except inverter serial 0000000000, see ``ANY_INVERTER``).
Every byte is encoded and decoded by ``octolux.lxp``; the numbers come from a
``simulator.plant.Plant``.

Three layers:

- ``DongleProtocol``: one TCP client. Bytes in -> frames (``lxp.FrameDecoder``),
  frames out -> bytes (``lxp.build``), and the per-connection faults.
- ``DongleFactory``: the dongle itself. Its plant, the broadcast schedule, the
  answers to requests, the request log, the fault settings.
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
import enum
import os
import random
from collections.abc import Callable

import attrs
from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

from octolux import lxp
from octolux.lxp import holding
from octolux.lxp.describe import describe
from octolux.lxp.frames import PREFIX, REQUESTS
from octolux.lxp.inputs import BLOCK_SIZE
from octolux.net.badframes import BadFrameLog
from simulator.plant import (
    DEFAULT_INVERTER_SERIAL,
    INPUT_REGISTER_COUNT,
    Plant,
    RegisterError,
    UnknownRegister,
    ValueOutOfRange,
)
from simulator.state import StateFileError, read_saved, write_state

DEFAULT_DATALOG_SERIAL = "SIMDL00001"
# The inverter serial a client without one sends (LuxPower Advanced's default).
ANY_INVERTER = "0000000000"

ALL_INPUTS_COUNT = 127  # the newer firmware's single broadcast: registers 0-126
MAX_READ = 40
BURST_BLOCKS = (0, 40, 80)
GARBAGE_BYTES = bytes(b for b in range(256) if b != PREFIX[0])
# The request log keeps the latest this many: enough for any test, bounded for a
# ``twistd lxp-simulator`` that runs for months.
REQUEST_LOG_LENGTH = 10_000

# The simulator's own level filter: twistd prints debug events by default, and
# per-frame byte dumps are too much for a demo or a benchmark. `--verbose`
# (``set_verbose(True)``) lets them through.
log_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [log_levels])


def set_verbose(verbose: bool) -> None:
    """Log every frame's bytes (debug) if ``verbose``; else connections, requests, changes."""
    log_levels.setLogLevelForNamespace("simulator", LogLevel.debug if verbose else LogLevel.info)


@attrs.frozen
class _Hex:
    """Bytes rendered as hex only if a log observer actually formats the event."""

    data: bytes

    def __format__(self, spec: str) -> str:
        return self.data.hex(" ")


# describe() keys a log line leaves out: the serials and protocol (the same on every
# line of a dongle), the copies of the values by register and by name, and the
# exception code (its name is shown).
_NOT_SUMMARISED = frozenset(
    {"kind", "datalog", "inverter", "protocol", "registers", "inputs", "exception_code"}
)


def summarise(frame) -> str:
    """A frame as one log line, from ``lxp.describe``: kind and fields, serials left out.

    e.g. ``WriteSingleRequest register=65 value=42`` (tests/test_e2e_process.py reads that).
    """
    described = describe(frame)
    fields = attrs.fields_dict(type(frame))
    parts = [described["kind"]]
    for name, value in described.items():
        if name in _NOT_SUMMARISED:
            continue
        if name == "device_function":
            if "function" not in fields:
                continue  # the kind says it
            value = frame.function.name
        elif name == "tcp_function" and name not in fields:
            continue  # the kind says it
        elif isinstance(value, list) and len(value) > 8:
            value = f"<{len(value)} values>"
        parts.append(f"{name}={value}")
    return " ".join(parts)


@attrs.frozen
class _Summary:
    """``summarise(frame)``, worked out only if a log observer actually formats the event."""

    frame: object

    def __format__(self, spec: str) -> str:
        return summarise(self.frame)


# -- configuration --------------------------------------------------------------


def _probability(instance, attribute, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability, 0-1: {value!r}")


def _non_negative(instance, attribute, value):
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must not be negative: {value!r}")


def _positive(instance, attribute, value):
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive: {value!r}")


def _serial(instance, attribute, value):
    lxp.check_serial(value, attribute.name)


@attrs.frozen
class Faults:
    """Fault injection, all off by default. Replace a dongle's ``faults`` to change them live.

    ``drop_every`` and ``max_clients`` apply to connections made after a change.
    """

    drop_every: float | None = attrs.field(default=None, validator=_positive)
    """Close each connection this many seconds after it was made."""
    garbage: float = attrs.field(default=0.0, validator=_probability)
    """Probability of a few garbage bytes (never an ``A1``) before a frame."""
    corrupt_crc: float = attrs.field(default=0.0, validator=_probability)
    """Probability of a wrong CRC on a translated-data frame."""
    split: int = attrs.field(default=0, validator=_non_negative)
    """Send frames in random segments of 1..split bytes, one per reactor turn (0: whole)."""
    reply_delay: float = attrs.field(default=0.0, validator=_non_negative)
    """Seconds between a request and its reply."""
    mute: bool = False
    """Answer no request (heartbeats and broadcasts go on)."""
    silent_after: float | None = attrs.field(default=None, validator=_non_negative)
    """Go silent on each connection this many seconds after it was made: it stays open
    but nothing is sent and requests are ignored (a dongle that hangs)."""
    exception_rate: float = attrs.field(default=0.0, validator=_probability)
    """Probability of answering a register request with a BUSY exception reply."""
    max_clients: int | None = attrs.field(default=None, validator=_positive)
    """Close connections beyond this many clients at once."""
    foreign_traffic: float | None = attrs.field(default=None, validator=_positive)
    """Every this many seconds, send a frame another client caused (cloud or app traffic)."""
    grid_down: bool = False
    """A power cut: the inverter runs off grid, on EPS if register 21 bit 0 allows."""


class BroadcastFormat(enum.Enum):
    """How input registers are broadcast."""

    BURSTS = "bursts"  # three 40-register frames (0, 40, 80), protocol 2
    ALL127 = "all127"  # one 127-register frame from 0, protocol 5 (newer firmware)


@attrs.frozen
class DongleConfig:
    """Everything that makes one simulated dongle (see ``twistd lxp-simulator --help``)."""

    datalog: str = attrs.field(default=DEFAULT_DATALOG_SERIAL, validator=_serial)
    inverter: str = attrs.field(default=DEFAULT_INVERTER_SERIAL, validator=_serial)
    interval: float = attrs.field(default=120.0, validator=_positive)
    burst_gap: float = attrs.field(default=1.0, validator=_non_negative)
    heartbeat: float = attrs.field(default=60.0, validator=_positive)
    first_burst_delay: float = attrs.field(default=1.0, validator=_non_negative)
    format: BroadcastFormat = attrs.field(default=BroadcastFormat.BURSTS, converter=BroadcastFormat)
    speed: float = attrs.field(default=1.0, validator=_positive)
    seed: int | None = None
    start: datetime.datetime | None = None  # simulated start time; None: the wall clock at start
    clock_offset: float = 0.0  # seconds the inverter's clock is ahead of the simulated time
    state_path: str | None = attrs.field(
        default=None, converter=attrs.converters.optional(os.fspath)
    )
    faults: Faults = Faults()


# -- one client -----------------------------------------------------------------


class DongleProtocol(protocol.Protocol):
    """One TCP client of a simulated dongle: frames in and out, heartbeats, connection faults."""

    log = Logger(observer=_observer)
    factory: DongleFactory

    def __init__(self):
        self.peer = "unknown"
        self.connected_at = 0.0
        self.refused = False
        self._decoder = lxp.FrameDecoder()
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
        self.log.debug("from {peer}: {data}", peer=self.peer, data=_Hex(data))
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
        faults = self.factory.faults
        chance = self.factory.fault_random
        data = lxp.build(frame)
        if (
            faults.corrupt_crc
            and frame.tcp_function == lxp.TcpFunction.TRANSLATED_DATA
            and chance.random() < faults.corrupt_crc
        ):
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
            self.log.debug("corrupting the CRC of {frame} to {peer}", frame=_Summary(frame),
                           peer=self.peer)
        if faults.garbage and chance.random() < faults.garbage:
            noise = bytes(chance.choice(GARBAGE_BYTES) for _ in range(chance.randint(1, 16)))
            data = noise + data
        self.log.debug("to {peer}: {frame}: {data}", peer=self.peer, frame=_Summary(frame),
                       data=_Hex(data))
        self._write(data, faults.split)

    def _write(self, data: bytes, split: int) -> None:
        if not split and not self._outbox:
            self.transport.write(data)
            return
        # Everything queues behind earlier segments, or frames would overtake each other.
        if split:
            chance = self.factory.fault_random
            while data:
                size = chance.randint(1, split)
                self._outbox.append(data[:size])
                data = data[size:]
        else:
            self._outbox.append(data)
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
        self.send_frame(lxp.Heartbeat(self.factory.config.datalog,
                                      protocol=self.factory.heartbeat_protocol))

    def _drop(self) -> None:
        self._drop_call = None
        self.log.info("dropping the connection to {peer} (fault injection: drop every {seconds} s)",
                      peer=self.peer, seconds=self.factory.faults.drop_every)
        self.transport.loseConnection()


# -- the dongle -------------------------------------------------------------------


FOREIGN_KINDS = (
    "hold_reply",
    "input_reply",
    "write_echo",
    "write_param_reply",
    "write_param_request",
    "unknown_input_block",
    "exception_reply",
)


class DongleFactory(protocol.Factory):
    """One simulated dongle and its inverter: answers requests, broadcasts inputs, logs requests.

    ``requests`` holds every request frame received from any client, in order,
    including the ones it ignored (wrong serials, mute, silent excepted): the
    latest ``REQUEST_LOG_LENGTH`` of them.
    """

    protocol = DongleProtocol
    noisy = False  # we log connections ourselves, with the dongle's serial
    log = Logger(observer=_observer)

    def __init__(self, clock: IReactorTime, config: DongleConfig | None = None,
                 plant: Plant | None = None):
        config = config or DongleConfig()
        self.clock = clock
        self.config = config
        if plant is None:
            start = config.start or datetime.datetime.now().replace(microsecond=0)
            plant = Plant(start=start, seed=config.seed, inverter_serial=config.inverter,
                          clock_offset=datetime.timedelta(seconds=config.clock_offset))
        self.plant = plant
        self.interval = config.interval
        self.requests: collections.deque = collections.deque(maxlen=REQUEST_LOG_LENGTH)
        self.clients: list[DongleProtocol] = []
        self.fault_random = random.Random(config.seed)
        self._faults = config.faults
        self._synced_at = clock.seconds()
        if config.faults.grid_down:
            self.plant.set_grid(False)
        self._broadcast_call = None
        self._foreign_call = None
        self._foreign_sent = 0
        self._pending: set = set()
        self._request_waiters: list[tuple[Callable, defer.Deferred]] = []
        self._connection_waiters: list[defer.Deferred] = []
        if config.state_path is not None:
            self._restore_state(config.state_path)

    # -- settings ---------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The fault injection in force; assign a new ``Faults`` to change it live."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self.log.info("dongle {datalog}: faults now {faults}", datalog=self.config.datalog,
                      faults=faults)
        if self.plant.grid_up == faults.grid_down:
            self.sync_plant()  # the power cut starts (or ends) now, not at the last step
            self.plant.set_grid(not faults.grid_down)
        self._schedule_foreign_traffic()

    @property
    def heartbeat_protocol(self) -> int:
        """5 for newer firmware (the 127-register format), 2 otherwise."""
        return 5 if self.config.format is BroadcastFormat.ALL127 else 2

    # -- clients ------------------------------------------------------------------

    def client_connected(self, client: DongleProtocol) -> bool:
        """Take on a new client; False if it is refused (``Faults.max_clients``)."""
        limit = self._faults.max_clients
        if limit is not None and len(self.clients) >= limit:
            self.log.info("dongle {datalog}: refusing {peer}: {count} clients already "
                          "(fault injection: max {limit})", datalog=self.config.datalog,
                          peer=client.peer, count=len(self.clients), limit=limit)
            return False
        self.clients.append(client)
        self.log.info("dongle {datalog}: client {peer} connected ({count} connected)",
                      datalog=self.config.datalog, peer=client.peer, count=len(self.clients))
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
            self.log.info("ignoring {frame} from {peer}: not a request", frame=_Summary(frame),
                          peer=client.peer)

    def when_request(self, predicate: Callable[[object], bool] | None = None) -> defer.Deferred:
        """A Deferred firing with the next request frame (matching ``predicate``) once handled."""
        waiter: defer.Deferred = defer.Deferred()
        self._request_waiters.append((predicate or (lambda frame: True), waiter))
        return waiter

    def _request_received(self, client: DongleProtocol, request) -> None:
        self.requests.append(request)
        self.log.info("dongle {datalog}: request from {peer}: {request}",
                      datalog=self.config.datalog, peer=client.peer, request=_Summary(request))
        if not self._addressed_to_us(request):
            self.log.info(
                "dongle {datalog}: ignoring it: addressed to datalog {to_datalog} "
                "inverter {to_inverter}", datalog=self.config.datalog,
                to_datalog=request.datalog, to_inverter=getattr(request, "inverter", "-"))
        elif self._faults.mute:
            self.log.info("dongle {datalog}: not replying (fault injection: mute)",
                          datalog=self.config.datalog)
        else:
            self.sync_plant()
            reply = self._injected_exception(request) or self.answer(request)
            if self._faults.reply_delay:
                self._later(self._faults.reply_delay, self.send_to_all, reply)
            else:
                self.send_to_all(reply)
        remaining = []
        for predicate, waiter in self._request_waiters:
            if predicate(request):
                waiter.callback(request)
            else:
                remaining.append((predicate, waiter))
        self._request_waiters = remaining

    def _addressed_to_us(self, request) -> bool:
        if request.datalog != self.config.datalog:
            return False
        inverter = getattr(request, "inverter", self.config.inverter)
        # 0000000000 as well: LuxPower Advanced sends every request to it when it
        # has no inverter serial, and works, so real dongles answer it. Other
        # serials are ignored (PROTOCOL.md section 2). The reply names the
        # inverter, as every reply does.
        return inverter in (self.config.inverter, ANY_INVERTER)

    def _injected_exception(self, request):
        rate = self._faults.exception_rate
        if rate and hasattr(request, "inverter") and self.fault_random.random() < rate:
            self.log.info("dongle {datalog}: answering BUSY (fault injection)",
                          datalog=self.config.datalog)
            return self._refuse(request, lxp.ExceptionCode.BUSY)
        return None

    def answer(self, request):
        """The reply to a request addressed to this dongle; a write changes the plant."""
        if isinstance(request, lxp.ReadRequest):
            return self._answer_read(request)
        if isinstance(request, lxp.WriteSingleRequest):
            return self._answer_write(request, (request.value,))
        if isinstance(request, lxp.WriteMultiRequest):
            return self._answer_write(request, request.values)
        if isinstance(request, lxp.ReadParamRequest):
            return self._answer_read_param(request)
        if isinstance(request, lxp.WriteParamRequest):
            return self._answer_write_param(request)
        raise TypeError(f"not a request: {request!r}")

    def _refuse(self, request, code: int):
        return lxp.ExceptionReply(request.function, self.config.datalog, self.config.inverter,
                                  request.register, code)

    def _answer_read(self, request):
        register, count = request.register, request.count
        try:
            if request.function == lxp.DeviceFunction.READ_INPUT:
                check_input_range(register, count)
                values = self.plant.input_registers()[register : register + count]
            else:
                if not (1 <= count <= MAX_READ or count == ALL_INPUTS_COUNT):
                    raise ValueOutOfRange(register, f"cannot read {count} registers at once")
                values = self.plant.read_holding(register, count)
        except RegisterError as error:
            self.log.info("dongle {datalog}: refusing the read: {error}",
                          datalog=self.config.datalog, error=str(error))
            return self._refuse(request, error.code)
        protocol_number = 2
        if count == ALL_INPUTS_COUNT and self.config.format is BroadcastFormat.ALL127:
            protocol_number = 5
        return lxp.ReadReply(request.function, self.config.datalog, self.config.inverter,
                             register, tuple(values), protocol=protocol_number)

    def _answer_write(self, request, values):
        try:
            changes = self.plant.write_holding(request.register, values)
        except RegisterError as error:
            self.log.info("dongle {datalog}: refusing the write: {error}",
                          datalog=self.config.datalog, error=str(error))
            return self._refuse(request, error.code)
        changed = [change for change in changes if change.old != change.new]
        for change in changed:
            self.log.info(
                "dongle {datalog}: holding register {register} ({name}) changed {old} -> {new}",
                datalog=self.config.datalog, register=change.register,
                name=holding.register_name(change.register), old=change.old, new=change.new)
        if not changed:
            self.log.info("dongle {datalog}: write left the registers unchanged",
                          datalog=self.config.datalog)
        elif self.config.state_path is not None:
            self.save_state()
        if isinstance(request, lxp.WriteSingleRequest):
            return lxp.WriteSingleReply(self.config.datalog, self.config.inverter,
                                        request.register, request.value)
        return lxp.WriteMultiReply(self.config.datalog, self.config.inverter, request.register,
                                   len(values))

    def _answer_read_param(self, request):
        if request.register == 0:
            value = lxp.param_value(max(1, min(0xFFFF, round(self.interval))))
        else:
            # Other parameters are not simulated: an empty value says so without lying.
            self.log.info("dongle {datalog}: parameter {register} is not simulated",
                          datalog=self.config.datalog, register=request.register)
            value = b""
        return lxp.ReadParamReply(self.config.datalog, request.register, value)

    def _answer_write_param(self, request):
        seconds = request.number
        if request.register != 0 or not 1 <= len(request.value) <= 2 or seconds == 0:
            self.log.info("dongle {datalog}: refusing write param {register} = {value}",
                          datalog=self.config.datalog, register=request.register,
                          value=request.value.hex())
            return lxp.WriteParamReply(self.config.datalog, request.register, 1)
        old, self.interval = self.interval, float(seconds)
        self.log.info("dongle {datalog}: parameter 0 (broadcast interval) changed {old} -> {new} s",
                      datalog=self.config.datalog, old=old, new=self.interval)
        if self._broadcast_call is not None:
            self._schedule_broadcasts(self.interval)
        return lxp.WriteParamReply(self.config.datalog, request.register, 0)

    # -- the plant ----------------------------------------------------------------

    def sync_plant(self) -> None:
        """Run the plant up to now: simulated time is real time times ``speed``."""
        now = self.clock.seconds()
        elapsed, self._synced_at = now - self._synced_at, now
        if elapsed > 0:
            self.plant.advance(elapsed * self.config.speed)

    def save_state(self) -> None:
        """Write the holding registers to the state file (errors are logged, not raised)."""
        path = self.config.state_path
        try:
            write_state(path, self.plant.holding.writable(), self.config.datalog,
                        self.config.inverter, self.plant.clock_offset.total_seconds())
        except OSError as error:
            self.log.error("dongle {datalog}: cannot save state to {path}: {error}",
                           datalog=self.config.datalog, path=path, error=str(error))

    def _restore_state(self, path: str) -> None:
        saved = read_saved(path)
        if saved is None:
            self.log.info("dongle {datalog}: no state file {path} yet: starting from defaults",
                          datalog=self.config.datalog, path=path)
            return
        try:
            changes = self.plant.holding.load(saved.holding)
        except RegisterError as error:
            raise StateFileError(f"state file {path!r}: {error}") from None
        if saved.clock_offset is not None:
            # The saved clock wins over --clock-offset: it is where the inverter's clock is.
            self.plant.set_clock_offset(datetime.timedelta(seconds=saved.clock_offset))
        self.log.info("dongle {datalog}: restored {count} holding registers and the clock "
                      "({offset:+.0f} s) from {path}", datalog=self.config.datalog,
                      count=len(changes), offset=self.plant.clock_offset.total_seconds(),
                      path=path)

    # -- broadcasts -----------------------------------------------------------------

    def broadcast_now(self) -> None:
        """Broadcast the input registers now: a burst of three frames or one 127-register frame."""
        self.sync_plant()
        registers = self.plant.input_registers()
        self.log.debug("dongle {datalog}: broadcasting inputs to {count} clients",
                       datalog=self.config.datalog, count=len(self.clients))
        if self.config.format is BroadcastFormat.ALL127:
            self.send_to_all(self._input_frame(0, registers[:ALL_INPUTS_COUNT], 5))
            return
        for index, register in enumerate(BURST_BLOCKS):
            frame = self._input_frame(register, registers[register : register + BLOCK_SIZE], 2)
            if index == 0:
                self.send_to_all(frame)
            else:
                self._later(index * self.config.burst_gap, self.send_to_all, frame)

    def _input_frame(self, register: int, values, protocol_number: int):
        return lxp.ReadReply(lxp.DeviceFunction.READ_INPUT, self.config.datalog,
                             self.config.inverter, register, tuple(values),
                             protocol=protocol_number)

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
        every = self._faults.foreign_traffic
        if every is None or not self.clients:
            self._cancel(self._foreign_call)
            self._foreign_call = None
        elif self._foreign_call is None:
            self._foreign_call = self.clock.callLater(every, self._foreign_due)

    def _foreign_due(self) -> None:
        self._foreign_call = None
        frame = self.foreign_frame(self._foreign_sent)
        self._foreign_sent += 1
        self.log.info("dongle {datalog}: sending foreign traffic (fault injection): {frame}",
                      datalog=self.config.datalog, frame=_Summary(frame))
        self.send_to_all(frame)
        self._schedule_foreign_traffic()

    def foreign_frame(self, index: int):
        """The ``index``-th frame of traffic another client (cloud, app) would cause.

        Cycles through ``FOREIGN_KINDS``. Register values in it are the plant's
        real ones, so a bridge that publishes them publishes the truth.
        """
        self.sync_plant()
        kind = FOREIGN_KINDS[index % len(FOREIGN_KINDS)]
        datalog, inverter = self.config.datalog, self.config.inverter
        if kind == "hold_reply":
            return lxp.ReadReply(lxp.DeviceFunction.READ_HOLD, datalog, inverter, 0,
                                 self.plant.read_holding(0, BLOCK_SIZE))
        if kind == "input_reply":
            registers = self.plant.input_registers()
            return self._input_frame(40, registers[40:80], 2)
        if kind == "write_echo":
            register = holding.CHARGE_POWER_PERCENT
            return lxp.WriteSingleReply(datalog, inverter, register, self.plant.holding[register])
        if kind == "write_param_reply":
            return lxp.WriteParamReply(datalog, 7, 0)
        if kind == "write_param_request":
            return lxp.WriteParamRequest(datalog, 7, b"\x00\x00")
        if kind == "unknown_input_block":
            return self._input_frame(INPUT_REGISTER_COUNT, (0,) * BLOCK_SIZE, 2)
        return lxp.ExceptionReply(lxp.DeviceFunction.READ_HOLD, datalog, inverter, 240,
                                  lxp.ExceptionCode.ILLEGAL_ADDRESS)

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


def check_input_range(register: int, count: int) -> None:
    """Raise RegisterError unless input registers ``register .. +count`` can be read at once.

    Readable: any run within one 40-register block of 0-159, or 127 registers from 0.
    """
    if register == 0 and count == ALL_INPUTS_COUNT:
        return
    if not 1 <= count <= MAX_READ:
        raise ValueOutOfRange(register, f"cannot read {count} input registers at once")
    if register + count > INPUT_REGISTER_COUNT:
        raise UnknownRegister(register, f"input registers are 0-{INPUT_REGISTER_COUNT - 1}")
    if register // BLOCK_SIZE != (register + count - 1) // BLOCK_SIZE:
        raise UnknownRegister(register, "a read must not cross a 40-register block")


# -- the service and the in-process helper ----------------------------------------


class SimulatedDongle(service.Service):
    """What a test sees of a simulated dongle, whether it listens (``Dongle``) or dials out.

    Each is a service around its ``factory`` (the dongle itself): these are
    views of the factory, the same for both.
    """

    log = Logger(observer=_observer)
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
