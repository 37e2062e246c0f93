"""The inverter as the rest of the bridge sees it.

An ``Inverter`` keeps one TCP connection to one datalogger, runs one request at
a time against it, and tells its observers (``InverterObserver``, by typed
calls) what the inverter reports, whoever asked for it. The connection comes
from one of two sources: the inverter dials the datalogger itself (``Dialer``:
``ClientService`` with exponential backoff and its log lines), or, in server
mode, the datalogger dials us and an ``octolux.device.listener.DongleListener``
hands its connection over through the same ``FrameHandler`` methods.

The requests it can be asked are ``InverterRequests``; they run on the
transport-free ``octolux.device.requests.RequestEngine`` (queue, deadlines,
send margin, answer matching). Its serials (``octolux.device.serials.Serials``)
may be configured or learned; frames from another dongle are ignored.
Requests wait for the inverter serial as they wait for a connection.

A dongle sends every reply and broadcast to every client (PROTOCOL.md section
8), so a frame that arrives is first of all news about the inverter: it updates
``latest_inputs`` / ``registers`` and goes to the observers. It answers the one
request on the wire only if the engine's rule says so (``LXP_REPLIES``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from octolux import lxp
from octolux.config.ini import COMMAND_TIMEOUT, HEARTBEAT_ECHO, NO_DATA_TIMEOUT
from octolux.device.batteries import BatterySlots
from octolux.device.model import InverterModel
from octolux.device.registers import RegisterValues
from octolux.device.requests import SEND_MARGIN, CommandFailed, RequestEngine, Steps
from octolux.device.serials import Serials
from octolux.lxp import batteries
from octolux.lxp.holding import with_bit
from octolux.lxp.inputs import decode_inputs, split_blocks
from octolux.net.endpoints import FailureReportingEndpoint, failure_phrase
from octolux.net.protocol import LxpFactory, LxpProtocol

__all__ = ["SEND_MARGIN", "CommandFailed", "Inverter", "InverterObserver", "answer_heartbeat"]

READ_HOLD = lxp.DeviceFunction.READ_HOLD
READ_INPUT = lxp.DeviceFunction.READ_INPUT

# Holding registers 0-239 in the 40-register blocks that old firmware accepts.
HOLDING_BLOCKS = tuple(range(0, 240, 40))
# Frames that change the inverter: none leaves a read-only inverter's queue.
WRITE_REQUESTS = (lxp.WriteSingleRequest, lxp.WriteMultiRequest, lxp.WriteParamRequest)
READ_ONLY_REASON = "read_only is set for this inverter"
# What the request engine is held for while a serial is unknown.
SERIAL_NOT_LEARNED = "inverter serial not learned"


def answer_heartbeat(protocol: LxpProtocol, heartbeat: lxp.Heartbeat) -> None:
    """Answer a dongle's heartbeat as the vendor's server does (without answers it stops sending).

    Rebuilt, not replayed, as other clients do: protocol 2, same datalog.
    """
    protocol.send(lxp.Heartbeat(heartbeat.datalog))


class InverterObserver(Protocol):
    """What an ``Inverter`` tells the rest of the program. Called on the reactor thread.

    An observer that raises is logged and does not affect the inverter or the
    other observers.
    """

    def inputs_received(self, blocks: dict[int, dict[str, Any]]) -> None:
        """Input values arrived: block number (1-4) -> named values of that block.

        Only blocks the frame fully covers are included (a 127-register frame
        gives 1, 2 and 3); see ``octolux.lxp.inputs.decode_input_blocks``.
        Called for broadcasts and for replies to anybody's read; never with an
        empty dict.
        """

    def registers_received(self, registers: dict[int, int]) -> None:
        """Holding register values arrived (read-hold reply or write ack, anybody's)."""

    def connection_changed(self, connected: bool) -> None:
        """The TCP connection to the datalogger came up or went down."""


class Observers:
    """Every observer of one inverter, itself an ``InverterObserver`` that tells each in turn.

    One that raises is logged (naming the inverter, the observer and the call)
    and skipped.
    """

    log = Logger()

    def __init__(self, name: str):
        self.name = name
        self._observers: list[InverterObserver] = []

    def add(self, observer: InverterObserver) -> None:
        """Tell ``observer`` too, after those added before it."""
        self._observers.append(observer)

    def inputs_received(self, blocks: dict[int, dict[str, Any]]) -> None:
        """Tell every observer (see ``InverterObserver``)."""
        for observer in self._observers:
            try:
                observer.inputs_received(blocks)
            except Exception:
                self._failed(observer, "inputs_received")

    def registers_received(self, registers: dict[int, int]) -> None:
        """Tell every observer (see ``InverterObserver``)."""
        for observer in self._observers:
            try:
                observer.registers_received(registers)
            except Exception:
                self._failed(observer, "registers_received")

    def connection_changed(self, connected: bool) -> None:
        """Tell every observer (see ``InverterObserver``)."""
        for observer in self._observers:
            try:
                observer.connection_changed(connected)
            except Exception:
                self._failed(observer, "connection_changed")

    def _failed(self, observer: InverterObserver, method: str) -> None:
        # Called in the except block: log.failure takes the exception from there.
        # (Not a context manager: this runs for every frame, and one costs ~1 us.)
        self.log.failure("{name}: observer {observer!r} failed in {method}",
                         name=self.name, observer=observer, method=method)


# -- the steps of each request: generators yielding frames, sent their answers ----------
# (The frames are built with the serials known then; the engine's prepare step
# addresses them with those known when they are sent.)


def _read_hold_steps(request: lxp.ReadRequest):
    reply = yield request
    stop = request.register + request.count
    return {r: v for r, v in reply.registers.items() if r < stop}


def _read_input_steps(request: lxp.ReadRequest):
    reply = yield request
    return split_blocks(
        reply.register, len(reply.values), decode_inputs(reply.register, reply.values)
    )


def _write_steps(request: lxp.WriteSingleRequest):
    echo = yield request  # only the echo of this very value answers it
    return echo.value


def _set_bit_steps(read: lxp.ReadRequest, bit: int, on: bool):
    reply = yield read
    value = with_bit(reply.values[0], bit, on)
    if value == reply.values[0]:
        return value
    echo = yield lxp.WriteSingleRequest(read.datalog, read.inverter, read.register, value)
    return echo.value


def _write_singles_steps(requests: list[lxp.WriteSingleRequest]):
    echoed = []
    for request in requests:
        echo = yield request  # only the echo of this very value answers it
        echoed.append(echo.value)
    return tuple(echoed)


def _write_multi_steps(request: lxp.WriteMultiRequest):
    yield request  # only an ack of this very count answers it
    return dict(enumerate(request.values, request.register))


class InverterRequests:
    """What an inverter can be asked: holding and input registers read, holding registers written.

    Each method returns a Deferred; at most one request is on the wire at a
    time; each fails with ``CommandFailed`` within the command timeout of the
    call, and a request that has failed is never sent afterwards. The frames
    go through ``requests`` (the ``RequestEngine``), addressed with
    ``serials``; with ``read_only`` every write fails at once.
    """

    requests: RequestEngine
    serials: Serials
    read_only: bool

    def read_hold(self, register: int, count: int = 1) -> Deferred[dict[int, int]]:
        """Read ``count`` holding registers; fires with register -> value."""
        return self._ask(f"read_hold({register}, {count})", lambda: _read_hold_steps(
            self._read_request(READ_HOLD, register, count)))

    def read_input(self, register: int, count: int = 40) -> Deferred[dict[int, dict[str, Any]]]:
        """Read input registers; fires with the decoded blocks (as observers get them).

        The blocks are those the reply fully covers, so a read of fewer than 40
        registers, or not aligned on 0, 40, 80, 120, fires with ``{}``; its
        values still reach ``latest_inputs``.
        """
        return self._ask(f"read_input({register}, {count})", lambda: _read_input_steps(
            self._read_request(READ_INPUT, register, count)))

    def write_single(self, register: int, value: int) -> Deferred[int]:
        """Write one holding register; fires with the value, once the inverter echoes it."""
        return self._ask(f"write_single({register}, {value})", lambda: _write_steps(
            lxp.WriteSingleRequest(*self.serials.addressee, register, value)), writes=True)

    def write_singles(self, register: int, values) -> Deferred[tuple[int, ...]]:
        """Write consecutive holding registers from ``register``, one single write each.

        The writes run back to back (no other request between them), each
        answered by its own echo; the first failure ends it (registers already
        written stay written). Fires with the echoed values. For pairs such as
        a time slot, where single writes are what every inverter accepts.
        """
        values = tuple(values)

        def steps():
            if not values:
                raise ValueError("no values to write")
            return _write_singles_steps([
                lxp.WriteSingleRequest(*self.serials.addressee, register + offset, value)
                for offset, value in enumerate(values)])

        return self._ask(f"write_singles({register}, {values})", steps, writes=True)

    def write_multi(self, register: int, values) -> Deferred[dict[int, int]]:
        """Write consecutive holding registers in one multi write (the clock: 12, three values).

        Fires with register -> value once the inverter acknowledges the count written.
        """
        values = tuple(values)
        return self._ask(f"write_multi({register}, {values})", lambda: _write_multi_steps(
            lxp.WriteMultiRequest(*self.serials.addressee, register, values)), writes=True)

    def set_bit(self, register: int, bit: int, on: bool) -> Deferred[int]:
        """Read ``register``, set or clear one bit, write it back and wait for its echo.

        Read and write run back to back: no other request comes between them.
        A bit already as asked is not written (these registers live in EEPROM,
        which writes wear). Fires with the new register value.
        """
        def steps():
            if not isinstance(bit, int) or not 0 <= bit <= 15:
                raise ValueError(f"bit must be 0-15: {bit!r}")
            return _set_bit_steps(self._read_request(READ_HOLD, register, 1), bit, on)

        return self._ask(f"set_bit({register}, {bit}, {bool(on)})", steps, writes=True)

    def _ask(self, description: str, steps: Callable[[], Steps], *, writes: bool = False):
        """Queue the request ``steps()`` builds, or fail at once: read-only, or invalid."""
        if writes and self.read_only:
            return fail(CommandFailed(READ_ONLY_REASON))
        try:
            built = steps()  # builds (and so checks) its first frames now
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        return self.requests.submit(description, built)

    def _read_request(self, function, register: int, count: int) -> lxp.ReadRequest:
        # A reply carries at most 127 values, so a bigger read could never be answered.
        if not isinstance(count, int) or not 1 <= count <= 127:
            raise ValueError(f"count must be 1-127: {count!r}")
        return lxp.ReadRequest(function, *self.serials.addressee, register, count)


class Dialer:
    """Dials the datalogger for ever (``ClientService`` with backoff), with one log line
    per lost connection or failed attempt that says when the next attempt comes."""

    log = Logger()

    def __init__(
        self,
        endpoint,  # IStreamClientEndpoint to the datalogger
        factory: LxpFactory,
        *,
        clock: IReactorTime,
        retry_policy=None,  # attempt -> seconds; default backoffPolicy()
        name: str = "inverter",
        address: str | None = None,  # "host:port", for log lines before any connection
    ):
        self.name = name
        self._address = address
        self._peer = address or "the datalogger"
        self._retry_policy = backoffPolicy() if retry_policy is None else retry_policy
        self._last_loss: str | None = None  # why the last connection or attempt ended
        self._was_connected = False  # did the last connection get as far as connected?
        self._logged_failure: str | None = None  # the reason last logged at info
        self._client = ClientService(
            FailureReportingEndpoint(endpoint, self._attempt_failed),
            factory,
            retryPolicy=self._retry_delay,
            clock=clock,
        )

    def start(self) -> None:
        """Connect, and reconnect whenever the connection is lost or an attempt fails."""
        self._client.startService()

    def stop(self) -> Deferred[None]:
        """Stop reconnecting and close the connection; fires once it is closed."""
        return self._client.stopService()

    def connected(self, peer: str) -> None:
        """The connection to ``peer`` is up (ClientService resets its backoff)."""
        self._peer = peer
        self._was_connected = True
        self._last_loss = None
        self.log.info("{name}: connected to {peer}", name=self.name, peer=peer)

    def lost(self, reason: str) -> None:
        """The connection is gone. Not logged here: ClientService asks ``_retry_delay``
        for the delay right away, which logs the loss with when the next attempt comes."""
        self._last_loss = reason

    def _attempt_failed(self, failure: Failure) -> None:
        self._was_connected = False
        self._last_loss = failure_phrase(failure)

    def _retry_delay(self, attempt: int) -> float:
        """ClientService's retry policy, plus the one log line for what just went wrong."""
        delay = self._retry_policy(attempt)
        reason = self._last_loss or "unknown reason"
        if self._was_connected:
            self.log.info(
                "{name}: connection to {peer} lost: {reason}, reconnecting in {delay:.1f} s",
                name=self.name,
                peer=self._peer,
                reason=reason,
                delay=delay,
            )
        else:
            # A datalogger that is off for days would otherwise log a line a
            # minute: the first few attempts, a change of reason and every
            # tenth attempt are worth reading; the rest only at debug.
            quiet = attempt > 3 and attempt % 10 and reason == self._logged_failure
            self._logged_failure = reason
            emit = self.log.debug if quiet else self.log.info
            emit(
                "{name}: cannot connect{to}: {reason}, retrying in {delay:.1f} s"
                " (attempt {attempt})",
                name=self.name,
                to=f" to {self._address}" if self._address else "",
                reason=reason,
                delay=delay,
                attempt=attempt,
            )
        self._was_connected = False
        return delay


class Inverter(InverterRequests, service.Service):
    """One datalogger and the inverter behind it: its connection, its state, its observers.

    ``name`` (also the service name) starts every log line, so several
    inverters in one process can be told apart. The requests it can be asked
    are ``InverterRequests``'.
    """

    log = Logger()

    def __init__(
        self,
        endpoint,  # IStreamClientEndpoint to the datalogger; None: connections are handed in
        datalog: str | None,  # 10-character datalogger serial; None: learn it
        serial: str | None,  # 10-character inverter serial; None: learn it
        *,
        clock,  # IReactorTime
        heartbeat_echo: bool = HEARTBEAT_ECHO,
        no_data_timeout: float = NO_DATA_TIMEOUT,  # seconds without a byte before reconnecting
        command_timeout: float = COMMAND_TIMEOUT,  # seconds a request may take, waiting included
        retry_policy=None,  # attempt -> seconds; default backoffPolicy()
        read_only: bool = False,  # refuse every write: none ever reaches the datalogger
        read_holding_on_connect: bool = False,  # read registers 0-239 on every connection
        pacer=None,  # octolux.device.pacing.Pacer shared by a fleet: reads as fast as MQTT drains
        name: str = "inverter",
        address: str | None = None,  # "host:port", for log lines before any connection
    ):
        self.serials = Serials(datalog, serial, clock=clock, learned=self._learned, name=name)
        self.name = name
        self.heartbeat_echo = heartbeat_echo
        self.command_timeout = command_timeout
        self.no_data_timeout = no_data_timeout  # also what a listener applies to its connections
        self.read_only = read_only
        self.read_holding_on_connect = read_holding_on_connect
        self._pacer = pacer
        self.requests = RequestEngine(clock, self._send, timeout=command_timeout,
                                      prepare=self._outgoing, name=name)
        if not self.serials.known:
            self.requests.hold(SERIAL_NOT_LEARNED)

        self.connected = False
        self._unknown_functions: set[int] = set()  # tcp functions logged at info, this connection
        self.latest_inputs: dict[str, Any] = {}
        # Compact: a dict of 240 values costs ~9 KiB, 90 MB for a fleet of 10,000.
        self.registers = RegisterValues()
        self.input_registers = RegisterValues()

        self._observers = Observers(name)
        self.model = InverterModel(name)
        self.batteries = BatterySlots(self)
        self._protocol: LxpProtocol | None = None
        self._dialer: Dialer | None = None
        if endpoint is not None:
            factory = LxpFactory(self, clock, no_data_timeout=no_data_timeout, name=name)
            self._dialer = Dialer(endpoint, factory, clock=clock, retry_policy=retry_policy,
                                  name=name, address=address)

    # -- state, for the HTTP API ----------------------------------------------

    connected: bool  # is the TCP connection up right now?
    latest_inputs: dict[str, Any]  # every named input value seen, merged
    registers: RegisterValues  # latest known value of every holding register seen
    # ... and of every input register seen, raw: also those no inputs/<n> block covers
    input_registers: RegisterValues

    @property
    def datalog(self) -> str | None:
        """The datalog (dongle) serial, None until learned."""
        return self.serials.datalog

    @property
    def serial(self) -> str | None:
        """The inverter serial, None until learned."""
        return self.serials.serial

    @property
    def protocol(self) -> LxpProtocol | None:
        """The connection to the datalogger, None while there is none (its ``decoder`` counts)."""
        return self._protocol

    def add_observer(self, observer: InverterObserver) -> None:
        """Tell ``observer`` of everything the inverter reports from now on."""
        self._observers.add(observer)

    # -- the service ------------------------------------------------------------

    def startService(self) -> None:
        """Start connecting to the datalogger (and reconnecting, for ever), if we dial it."""
        super().startService()
        self.requests.start()
        if self._dialer is not None:
            self._dialer.start()

    def stopService(self) -> Deferred[None]:
        """Fail every pending request with ``stopping``; fires once the connection is closed."""
        super().stopService()
        self.requests.stop()
        self.serials.disconnected()
        if self._dialer is not None:
            return self._dialer.stop()
        # Server mode: the listener closes the connections it handed over.
        return succeed(None)

    # -- reading everything -----------------------------------------------------------

    def refresh(self, *, inputs: bool = True) -> Deferred[None]:
        """Read every holding register (0-239) and, if ``inputs``, input blocks 1-3 again
        and those of the model's own parts (``InverterModel.extra_input_registers``).

        One 40-register read at a time, each queued only when the one before
        is done, so a command sent meanwhile waits for one read at most. A
        block the inverter refuses (an exception reply: a model without those
        registers) is logged and skipped; any other failure fails the whole,
        and a lost connection ends it. What is read reaches the observers as
        usual.
        """
        reads = [(self.read_hold, register) for register in HOLDING_BLOCKS]
        if inputs:
            reads += [(self.read_input, register)
                      for register in (0, 40, 80, *self.model.extra_input_registers())]
        return ensureDeferred(self._read_all(reads))

    async def _read_all(self, reads) -> None:
        failed = []
        for read, register in reads:
            try:
                if self._pacer is None:
                    await read(register, 40)
                else:
                    # Each value read goes out on MQTT: a fleet's reads take turns.
                    await self._pacer.run(40, functools.partial(read, register, 40))
            except CommandFailed as error:
                what = f"{read.__name__}({register}, 40)"
                if error.reason.startswith("exception reply"):
                    self.log.info("{name}: {what}: {reason}, skipped",
                                  name=self.name, what=what, reason=error.reason)
                    continue
                failed.append(f"{what}: {error.reason}")
                if not self.connected:
                    break
        if failed:
            raise CommandFailed("; ".join(failed))

    def _read_holding_registers(self) -> None:
        """On connecting: every holding register, so that the state is known from the start."""
        def failed(failure: Failure) -> None:
            failure.trap(CommandFailed)
            self.log.info("{name}: reading the holding registers on connecting: {reason}",
                          name=self.name, reason=failure.value.reason)

        def then_the_models_own(_) -> Deferred[None]:
            # The holding registers said which model it is: its input blocks beyond 3.
            reads = [(self.read_input, register)
                     for register in self.model.extra_input_registers()]
            return ensureDeferred(self._read_all(reads))

        self.refresh(inputs=False).addCallback(then_the_models_own).addErrback(failed)

    # -- the wire, for the request engine ----------------------------------------------

    def _send(self, frame: lxp.Frame) -> None:
        self._protocol.send(frame)

    def _outgoing(self, request: lxp.Frame) -> lxp.Frame:
        """The request as it goes on the wire: addressed with the serials known now."""
        if self.read_only and isinstance(request, WRITE_REQUESTS):
            # The last gate: whatever asked for it, no write leaves a read-only inverter.
            raise CommandFailed(READ_ONLY_REASON)
        return self.serials.address(request)

    def _learned(self, key: str) -> None:
        """A serial was learned: once both are known, requests may go out."""
        if self.serials.known:
            self.requests.release()

    # -- FrameHandler: called by LxpProtocol ----------------------------------------

    def connection_made(self, protocol: LxpProtocol) -> None:
        """The connection is up: log it, tell the observers, start the queue.

        In server mode a dongle that reconnects may do so before its old
        connection is seen to close: the new one replaces it.
        """
        replaced = self._protocol
        if replaced is not None and replaced is not protocol:
            self._protocol = None
            self.requests.disconnected()
            self.log.info("{name}: connection from {old} replaced by {new}", name=self.name,
                          old=replaced.peer, new=protocol.peer)
            replaced.abort(f"replaced by a new connection from {protocol.peer}")
        self._protocol = protocol
        self._unknown_functions = set()
        self.batteries.connected()
        was_connected, self.connected = self.connected, True
        if self._dialer is None:
            self.log.info("{name}: the datalogger connected from {peer}", name=self.name,
                          peer=protocol.peer)
        else:
            self._dialer.connected(protocol.peer)
        self.serials.connected(protocol.send)
        if not was_connected:
            self._observers.connection_changed(True)
        self.requests.connected()
        if self.read_holding_on_connect:
            self._read_holding_registers()

    def connection_lost(self, protocol: LxpProtocol, reason: str) -> None:
        """The connection is gone: fail the request on the wire, tell the observers."""
        if protocol is not self._protocol:
            return
        self._protocol = None
        self.connected = False
        self.serials.disconnected()
        if self._dialer is not None:
            self._dialer.lost(reason)
        if not self.running or self._dialer is None:
            self.log.info("{name}: disconnected from {peer}: {reason}", name=self.name,
                          peer=protocol.peer, reason=reason)
        self.requests.disconnected()
        self._observers.connection_changed(False)

    def frame_received(self, frame: lxp.Frame) -> None:
        """Update state, answer the request on the wire if the frame fits, tell the observers.

        The request's Deferred fires before the observers hear of the frame, so
        a command's result goes out before the register news it caused.
        """
        if not self.serials.admit(frame):
            return
        kind = type(frame)
        if kind is lxp.ReadReply and frame.function == READ_INPUT:
            self.input_registers.store(frame.register, frame.values)
            if frame.register >= batteries.FIRST_REGISTER:
                self._answer(frame)
                self.batteries.frame_received(frame)
                return
            named = decode_inputs(frame.register, frame.values)
            self.latest_inputs.update(named)
            blocks = split_blocks(frame.register, len(frame.values), named)
            self._answer(frame)
            if blocks:
                self._observers.inputs_received(blocks)
            self.batteries.inputs_received(named)
            return
        if kind is lxp.ReadReply:
            registers = frame.registers
        elif kind is lxp.WriteSingleReply:
            registers = {frame.register: frame.value}
        elif kind is lxp.WriteMultiReply:
            # The ack carries no values: only our own multi write, whose
            # values we sent, tells what the registers now hold.
            request = self.requests.answered_by(frame)
            if request is None:
                return
            registers = dict(enumerate(request.values, request.register))
        elif kind is lxp.ExceptionReply:
            self._answer(frame)
            return
        else:
            self._other_frame(frame)
            return
        self.registers.update(registers)
        self.model.registers_received(registers, self.registers)
        self._answer(frame)
        self._observers.registers_received(registers)

    def _answer(self, frame: lxp.Frame) -> None:
        """A reply or an input frame: check its serial, and answer the request on the wire."""
        self.serials.check_inverter(frame)
        if not self.requests.reply_received(frame) and type(frame) is lxp.ExceptionReply:
            self.log.info(
                "{name}: exception reply {reason} for function {function}, register {register}"
                " (not a request of ours)",
                name=self.name,
                reason=frame.reason,
                function=int(frame.function),
                register=frame.register,
            )

    def _other_frame(self, frame: lxp.Frame) -> None:
        """A frame that is no news of the inverter's registers: a heartbeat, or none of ours."""
        kind = type(frame)
        if kind is lxp.Heartbeat:
            if self.heartbeat_echo and self._protocol is not None:
                answer_heartbeat(self._protocol, frame)
        elif kind is lxp.UnknownFrame:
            # Once per function and connection at info: a dongle repeating a
            # new kind of frame (or corrupting its function byte) must not
            # flood the log, as bad frames may not.
            first = frame.tcp_function not in self._unknown_functions
            self._unknown_functions.add(frame.tcp_function)
            (self.log.info if first else self.log.debug)(
                "{name}: ignored a frame with unknown tcp function {function} ({length} bytes)"
                "{again}",
                name=self.name,
                function=frame.tcp_function,
                length=len(frame.payload),
                again="" if first else " (again)",
            )
        # Otherwise other clients' requests, the cloud's param reads and writes:
        # nothing to update, nothing we asked for.
