"""The inverter as the rest of the bridge sees it.

An ``Inverter`` keeps one TCP connection to one datalogger, runs one request at
a time against it, and tells its observers what the inverter reports, whoever
asked for it. The connection comes from one of two sources: the inverter dials
the datalogger itself (``ClientService`` with exponential backoff), or, in
server mode, the datalogger dials us and an ``octolux.device.listener.DongleListener``
hands its connection over through the same ``FrameHandler`` methods.

Its serials may be unknown at the start: the datalog serial is then learned
from the first frame, the inverter serial from the first reply or input frame
(asking for input block 1 if none comes soon). Requests wait for the inverter
serial as they wait for a connection.

A dongle sends every reply and broadcast to every client (PROTOCOL.md section
8), so a frame that arrives is first of all news about the inverter: it updates
``latest_inputs`` / ``registers`` and goes to the observers. It answers the one
request on the wire only if it matches on function, register, serials, count
(for reads) and value (for writes), so that a broadcast, another client's reply,
a late reply to an earlier request or an exception meant for someone else never
answers the wrong request: that request keeps waiting for its own reply until
its deadline.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Generator
from typing import Any, Protocol

import attrs
from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from octolux import lxp
from octolux.device.registers import RegisterValues
from octolux.lxp.holding import with_bit
from octolux.lxp.inputs import decode_inputs, split_blocks
from octolux.net.endpoints import FailureReportingEndpoint, failure_phrase
from octolux.net.protocol import LxpFactory, LxpProtocol

READ_HOLD = lxp.DeviceFunction.READ_HOLD
READ_INPUT = lxp.DeviceFunction.READ_INPUT

# A queued request goes on the wire only while this much of its time is left
# (or half the command timeout, if that is shorter): a dongle answers within
# about a second (the inverter's serial bus, then WiFi), so with less left the
# reply could not arrive in time, and a request failed as unanswered might
# still be carried out by the inverter later.
SEND_MARGIN = 2.0  # seconds
# Holding registers 0-239 in the 40-register blocks that old firmware accepts.
HOLDING_BLOCKS = tuple(range(0, 240, 40))
# Frames that change the inverter: none leaves a read-only inverter's queue.
WRITE_REQUESTS = (lxp.WriteSingleRequest, lxp.WriteMultiRequest, lxp.WriteParamRequest)
READ_ONLY_REASON = "read_only is set for this inverter"

# Foreign serials are remembered so that each is reported once; a cap keeps a
# stream of corrupt heartbeats (they carry no CRC) from growing the set.
_MAX_REMEMBERED_SERIALS = 16

# Stands in for a serial not learned yet. Queued requests never go out with it
# (they are readdressed when sent, and wait until then); only the serial
# question does: LuxPower Advanced (guybw/LuxPython_DEV, the most used local
# integration) addresses every request to it when no inverter serial is
# configured, so dongles are known to pass it on. Nothing says which serial
# the reply carries, so this one is never learned from a frame.
_NOT_YET_KNOWN = "0000000000"
# Seconds after connecting without the inverter serial before asking for it:
# broadcasts, which carry it too, may be minutes apart.
SERIAL_QUESTION_DELAY = 5.0
# The serial question reads input registers 80-119 (inputs/3): its reply
# names the inverter in its header and, in registers 115-119, in its values.
SERIAL_QUESTION_BLOCK = 80


def _serial_told_by(frame: lxp.Frame) -> str | None:
    """The inverter serial ``frame`` tells: its header's, else input registers 115-119's.

    None if it tells none: a header carrying the serial question's stand-in
    (an inverter might echo the request's serial) is no serial. Only called
    while the serial is unknown, so decoding the values again costs nothing.
    """
    if frame.inverter != _NOT_YET_KNOWN:
        return frame.inverter
    if type(frame) is lxp.ReadReply and frame.function == READ_INPUT:
        serial = decode_inputs(frame.register, frame.values).get("inverter_serial")
        if isinstance(serial, str) and len(serial) == len(_NOT_YET_KNOWN) \
                and serial != _NOT_YET_KNOWN:
            return serial
    return None


class CommandFailed(Exception):
    """A request to the inverter did not succeed; ``reason`` says why, for the log.

    Reasons (exact texts, ``T`` being the command timeout in seconds as ``%g``):
    ``no reply within T s``, ``not connected within T s``, ``still queued after T s``,
    ``not sent: T2 s of T s left`` (its turn came with too little time left for
    a reply, see ``SEND_MARGIN``; ``T2`` with one decimal), ``exception reply:
    ILLEGAL_VALUE`` (or another ``ExceptionCode`` name, or ``code N``),
    ``inverter serial not learned within T s`` (connected, but no frame has
    told the inverter serial yet), ``connection lost``
    (it was on the wire when the connection dropped), ``stopping`` (the service
    stopped), ``not running`` (asked while the service was not running),
    ``invalid request: ...`` (a register, count, value or bit out of range).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


@attrs.define(eq=False)
class _Command:
    """One queued request: its steps, its caller's Deferred and its deadline.

    ``steps`` is a generator that yields the frames to send and is sent each
    matching reply; its return value is the result. A plain request has one
    step, ``set_bit`` two (read, then write), run back to back.
    """

    description: str
    steps: Generator[lxp.Frame, lxp.Frame, Any]
    deadline: float
    deferred: Deferred = attrs.field(init=False)
    timer: IDelayedCall | None = None
    request: lxp.Frame | None = None  # the frame on the wire, waiting for its reply
    done: bool = False


def _answers(request: lxp.Frame, reply: lxp.Frame) -> bool:
    """Is ``reply`` (same datalog already checked) the inverter's answer to ``request``?"""
    if reply.register != request.register or reply.inverter != request.inverter:
        return False
    kind = type(reply)
    if kind is lxp.ReadReply:
        # A broadcast of the very registers asked for (inputs 0-39) is the data
        # asked for. Another count is someone else's read, or a late reply to an
        # earlier one of ours: taking it would leave our own reply to be taken,
        # later, as the answer to the next request.
        return (
            type(request) is lxp.ReadRequest
            and reply.function == request.function
            and len(reply.values) == request.count
        )
    if kind is lxp.WriteSingleReply:
        # An echo of another value is news (someone else's write, or the late
        # echo of an earlier write of ours), not the answer to this write.
        return type(request) is lxp.WriteSingleRequest and reply.value == request.value
    if kind is lxp.WriteMultiReply:
        # Its ack carries the count written: another count answers another write.
        return type(request) is lxp.WriteMultiRequest and reply.count == len(request.values)
    if kind is lxp.ExceptionReply:
        return reply.function == request.function
    return False


class Inverter(service.Service):
    """One datalogger and the inverter behind it.

    ``name`` (also the service name) starts every log line, so several
    inverters in one process can be told apart.
    """

    log = Logger()

    def __init__(
        self,
        endpoint,  # IStreamClientEndpoint to the datalogger; None: connections are handed in
        datalog: str | None,  # 10-character datalogger serial; None: learn it
        serial: str | None,  # 10-character inverter serial; None: learn it
        *,
        clock,  # IReactorTime
        heartbeat_echo: bool = False,
        no_data_timeout: float = 900.0,  # seconds without a byte before reconnecting
        command_timeout: float = 10.0,  # seconds a request may take, waiting included
        retry_policy=None,  # attempt -> seconds; default backoffPolicy()
        read_only: bool = False,  # refuse every write: none ever reaches the datalogger
        read_holding_on_connect: bool = False,  # read registers 0-239 on every connection
        pacer=None,  # octolux.device.pacing.Pacer shared by a fleet: spreads those reads over time
        name: str = "inverter",
        address: str | None = None,  # "host:port", for log lines before any connection
    ):
        # Checked here: a bad serial would otherwise fail every request later.
        self.datalog = None if datalog is None else lxp.check_serial(datalog, "datalog")
        self.serial = None if serial is None else lxp.check_serial(serial, "serial")
        self.name = name
        self.heartbeat_echo = heartbeat_echo
        self.command_timeout = command_timeout
        self.no_data_timeout = no_data_timeout  # also what a listener applies to its connections
        self._send_margin = min(SEND_MARGIN, command_timeout / 2)
        self.read_only = read_only
        self.read_holding_on_connect = read_holding_on_connect
        self._pacer = pacer
        self._clock: IReactorTime = clock
        self._retry_policy = backoffPolicy() if retry_policy is None else retry_policy

        self.connected = False
        self._unknown_functions: set[int] = set()  # tcp functions logged at info, this connection
        self.latest_inputs: dict[str, Any] = {}
        # Compact: a dict of 240 values costs ~9 KiB, 90 MB for a fleet of 10,000.
        self.registers = RegisterValues()

        self._observers: list[InverterObserver] = []
        self._queue: collections.deque[_Command] = collections.deque()
        self._current: _Command | None = None
        self._protocol: LxpProtocol | None = None
        self._address = address
        self._peer = address or "the datalogger"
        self._connected_at = 0.0
        self._last_loss: str | None = None  # why the last connection or attempt ended
        self._was_connected = False  # did the last connection get as far as connected?
        self._logged_failure: str | None = None  # the reason last logged at info
        self._foreign_datalogs: set[str] = set()
        self._foreign_inverters: set[str] = set()
        self._serial_question: IDelayedCall | None = None

        self._client: ClientService | None = None
        if endpoint is not None:
            factory = LxpFactory(self, clock, no_data_timeout=no_data_timeout, name=name)
            self._client = ClientService(
                FailureReportingEndpoint(endpoint, self._attempt_failed),
                factory,
                retryPolicy=self._retry_delay,
                clock=clock,
            )

    # -- state, for the HTTP API ----------------------------------------------

    connected: bool  # is the TCP connection up right now?
    latest_inputs: dict[str, Any]  # every named input value seen, merged
    registers: RegisterValues  # latest known value of every holding register seen

    def add_observer(self, observer: InverterObserver) -> None:
        """Tell ``observer`` of everything the inverter reports from now on."""
        self._observers.append(observer)

    # -- the service ------------------------------------------------------------

    def startService(self) -> None:
        """Start connecting to the datalogger (and reconnecting, for ever), if we dial it."""
        super().startService()
        if self._client is not None:
            self._client.startService()

    def stopService(self) -> Deferred[None]:
        """Fail every pending request with ``stopping``; fires once the connection is closed."""
        super().stopService()
        pending = [self._current, *self._queue] if self._current else list(self._queue)
        for command in pending:
            self._finish(command, failure=CommandFailed("stopping"))
        self._cancel_serial_question()
        if self._client is not None:
            return self._client.stopService()
        # Server mode: the listener closes the connections it handed over.
        return succeed(None)

    # -- requests: each returns a Deferred; at most one is on the wire at a time;
    # each fails with CommandFailed within command_timeout of the call, and a
    # request that has failed is never sent afterwards.

    def read_hold(self, register: int, count: int = 1) -> Deferred[dict[int, int]]:
        """Read ``count`` holding registers; fires with register -> value."""
        try:
            request = self._read_request(READ_HOLD, register, count)
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        return self._submit(f"read_hold({register}, {count})", self._read_hold_steps(request))

    def read_input(self, register: int, count: int = 40) -> Deferred[dict[int, dict[str, Any]]]:
        """Read input registers; fires with the decoded blocks (as observers get them).

        The blocks are those the reply fully covers, so a read of fewer than 40
        registers, or not aligned on 0, 40, 80, 120, fires with ``{}``; its
        values still reach ``latest_inputs``.
        """
        try:
            request = self._read_request(READ_INPUT, register, count)
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        return self._submit(f"read_input({register}, {count})", self._read_input_steps(request))

    def write_single(self, register: int, value: int) -> Deferred[int]:
        """Write one holding register; fires with the value, once the inverter echoes it."""
        if self.read_only:
            return fail(CommandFailed(READ_ONLY_REASON))
        try:
            request = lxp.WriteSingleRequest(self._datalog, self._serial, register, value)
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        return self._submit(f"write_single({register}, {value})", self._write_steps(request))

    def write_singles(self, register: int, values) -> Deferred[tuple[int, ...]]:
        """Write consecutive holding registers from ``register``, one single write each.

        The writes run back to back (no other request between them), each
        answered by its own echo; the first failure ends it (registers already
        written stay written). Fires with the echoed values. For pairs such as
        a time slot, where single writes are what every inverter accepts.
        """
        if self.read_only:
            return fail(CommandFailed(READ_ONLY_REASON))
        values = tuple(values)
        try:
            requests = [
                lxp.WriteSingleRequest(self._datalog, self._serial, register + offset, value)
                for offset, value in enumerate(values)
            ]
            if not requests:
                raise ValueError("no values to write")
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        description = f"write_singles({register}, {values})"
        return self._submit(description, self._write_singles_steps(requests))

    def write_multi(self, register: int, values) -> Deferred[dict[int, int]]:
        """Write consecutive holding registers in one multi write (the clock: 12, three values).

        Fires with register -> value once the inverter acknowledges the count written.
        """
        if self.read_only:
            return fail(CommandFailed(READ_ONLY_REASON))
        try:
            request = lxp.WriteMultiRequest(self._datalog, self._serial, register, tuple(values))
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        return self._submit(
            f"write_multi({register}, {request.values})", self._write_multi_steps(request)
        )

    def set_bit(self, register: int, bit: int, on: bool) -> Deferred[int]:
        """Read ``register``, set or clear one bit, write it back and wait for its echo.

        Read and write run back to back: no other request comes between them.
        A bit already as asked is not written (these registers live in EEPROM,
        which writes wear). Fires with the new register value.
        """
        if self.read_only:
            return fail(CommandFailed(READ_ONLY_REASON))
        if not isinstance(bit, int) or not 0 <= bit <= 15:
            return fail(CommandFailed(f"invalid request: bit must be 0-15: {bit!r}"))
        try:
            read = self._read_request(READ_HOLD, register, 1)
        except ValueError as error:
            return fail(CommandFailed(f"invalid request: {error}"))
        description = f"set_bit({register}, {bit}, {bool(on)})"
        return self._submit(description, self._set_bit_steps(read, bit, on))

    def _read_request(self, function, register: int, count: int) -> lxp.ReadRequest:
        # A reply carries at most 127 values, so a bigger read could never be answered.
        if not isinstance(count, int) or not 1 <= count <= 127:
            raise ValueError(f"count must be 1-127: {count!r}")
        return lxp.ReadRequest(function, self._datalog, self._serial, register, count)

    @property
    def _datalog(self) -> str:
        """The datalog serial to address a request with (a stand-in until it is learned)."""
        return self.datalog or _NOT_YET_KNOWN

    @property
    def _serial(self) -> str:
        """The inverter serial to address a request with (a stand-in until it is learned)."""
        return self.serial or _NOT_YET_KNOWN

    def _addressed(self, request: lxp.Frame) -> lxp.Frame:
        """``request`` with the serials learned since it was built, if it was built before."""
        if not hasattr(request, "inverter"):  # a dongle parameter: the datalog only
            if request.datalog == self.datalog:
                return request
            return attrs.evolve(request, datalog=self.datalog)
        if request.datalog == self.datalog and request.inverter == self.serial:
            return request
        return attrs.evolve(request, datalog=self.datalog, inverter=self.serial)

    # -- the steps of each request: generators yielding frames, sent replies ----

    @staticmethod
    def _read_hold_steps(request: lxp.ReadRequest):
        reply = yield request
        stop = request.register + request.count
        return {r: v for r, v in reply.registers.items() if r < stop}

    @staticmethod
    def _read_input_steps(request: lxp.ReadRequest):
        reply = yield request
        return split_blocks(
            reply.register, len(reply.values), decode_inputs(reply.register, reply.values)
        )

    @staticmethod
    def _write_steps(request: lxp.WriteSingleRequest):
        echo = yield request  # only the echo of this very value answers it
        return echo.value

    def _set_bit_steps(self, read: lxp.ReadRequest, bit: int, on: bool):
        reply = yield read
        value = with_bit(reply.values[0], bit, on)
        if value == reply.values[0]:
            return value
        echo = yield lxp.WriteSingleRequest(self._datalog, self._serial, read.register, value)
        return echo.value

    @staticmethod
    def _write_singles_steps(requests: list[lxp.WriteSingleRequest]):
        echoed = []
        for request in requests:
            echo = yield request  # only the echo of this very value answers it
            echoed.append(echo.value)
        return tuple(echoed)

    @staticmethod
    def _write_multi_steps(request: lxp.WriteMultiRequest):
        yield request  # only an ack of this very count answers it
        return dict(enumerate(request.values, request.register))

    # -- reading everything -----------------------------------------------------------

    def refresh(self, *, inputs: bool = True) -> Deferred[None]:
        """Read every holding register (0-239) and, if ``inputs``, input blocks 1-3 again.

        One 40-register read at a time, each queued only when the one before
        is done, so a command sent meanwhile waits for one read at most. A
        block the inverter refuses (an exception reply: a model without those
        registers) is logged and skipped; any other failure fails the whole,
        and a lost connection ends it. What is read reaches the observers as
        usual.
        """
        reads = [(self.read_hold, register) for register in HOLDING_BLOCKS]
        if inputs:
            reads += [(self.read_input, register) for register in (0, 40, 80)]
        return ensureDeferred(self._read_all(reads))

    async def _read_all(self, reads) -> None:
        failed = []
        for read, register in reads:
            if self._pacer is not None:
                # Each value read goes out on MQTT: a fleet's reads take turns.
                await self._pacer.take(40)
            try:
                await read(register, 40)
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

        self.refresh(inputs=False).addErrback(failed)

    # -- the queue ----------------------------------------------------------------

    def _submit(self, description: str, steps) -> Deferred:
        if not self.running:
            steps.close()
            return fail(CommandFailed("not running"))
        command = _Command(description, steps, self._clock.seconds() + self.command_timeout)
        command.deferred = Deferred(canceller=lambda _: self._cancel(command))
        command.timer = self._clock.callLater(self.command_timeout, self._expire, command)
        self._queue.append(command)
        self._send_next()
        return command.deferred

    def _send_next(self) -> None:
        """Put the next live request on the wire, if connected and the wire is free.

        Not before the inverter serial is known: the inverter ignores requests
        with a wrong one.
        """
        while (
            self._current is None
            and self._queue
            and self._protocol is not None
            and self.serial is not None
            and self.datalog is not None
        ):
            command = self._queue.popleft()
            if command.done:
                continue
            left = command.deadline - self._clock.seconds()
            if left < self._send_margin:
                # Its reply could not arrive in time (or its timer is due in
                # this very instant): never send it.
                self._finish(command, failure=self._too_late(command, left), send_next=False)
                continue
            self._current = command
            self._advance(command, None)

    def _advance(self, command: _Command, reply: lxp.Frame | None) -> None:
        """Give ``reply`` to the command; send its next frame or finish it."""
        try:
            request = command.steps.send(reply)
        except StopIteration as stop:
            self._finish(command, result=stop.value)
        except CommandFailed as error:
            self._finish(command, failure=error)
        except Exception:
            self._finish(command, failure=Failure())
        else:
            left = command.deadline - self._clock.seconds()
            if reply is not None and left < self._send_margin:
                # A later step (set_bit's write) whose turn came too late.
                self._finish(command, failure=self._too_late(command, left))
                return
            if self.read_only and isinstance(request, WRITE_REQUESTS):
                # The last gate: whatever asked for it, no write leaves a read-only inverter.
                self._finish(command, failure=CommandFailed(READ_ONLY_REASON))
                return
            request = self._addressed(request)
            command.request = request
            self.log.debug(
                "{name}: {command}: sending {request}",
                name=self.name,
                command=command.description,
                request=request,
            )
            self._protocol.send(request)

    def _expire(self, command: _Command) -> None:
        timeout = self.command_timeout
        if command is self._current:
            reason = f"no reply within {timeout:g} s"
        elif self.connected and (self.serial is None or self.datalog is None):
            reason = f"inverter serial not learned within {timeout:g} s"
        elif not self.connected or self._connected_at >= command.deadline:
            # (The second: the connection came just as its time ran out.)
            reason = f"not connected within {timeout:g} s"
        else:
            reason = f"still queued after {timeout:g} s"
        self._finish(command, failure=CommandFailed(reason))

    def _too_late(self, command: _Command, left: float) -> CommandFailed:
        """Why ``command``, whose turn came with ``left`` seconds to go, is not sent."""
        timeout = self.command_timeout
        if self._connected_at > command.deadline - self._send_margin:
            # The connection itself came too late for it.
            return CommandFailed(f"not connected within {timeout:g} s")
        if left <= 0:
            return CommandFailed(f"still queued after {timeout:g} s")
        return CommandFailed(f"not sent: {left:.1f} s of {timeout:g} s left")

    def _cancel(self, command: _Command) -> None:
        # Deferred.cancel errbacks with CancelledError once we return.
        self._settle(command)
        self._send_next()

    def _settle(self, command: _Command) -> None:
        """Take ``command`` off the wire, the queue and the clock."""
        command.done = True
        if command.timer is not None and command.timer.active():
            command.timer.cancel()
        command.timer = None
        command.steps.close()
        if command is self._current:
            self._current = None
        # Expired commands would be skipped at dequeue anyway; removing them
        # keeps the queue from holding dead entries while disconnected.
        with contextlib.suppress(ValueError):
            self._queue.remove(command)

    def _finish(
        self, command: _Command, *, result: Any = None, failure=None, send_next: bool = True
    ) -> None:
        """Settle ``command`` and fire its Deferred; then, normally, start the next one."""
        if command.done:
            return
        self._settle(command)
        if failure is None:
            command.deferred.callback(result)
        else:
            if isinstance(failure, CommandFailed):
                # Debug only: whoever asked logs the outcome (the MQTT bridge does).
                self.log.debug(
                    "{name}: {command} failed: {reason}",
                    name=self.name,
                    command=command.description,
                    reason=failure.reason,
                )
            command.deferred.errback(failure)
        if send_next and self.running:
            self._send_next()

    # -- FrameHandler: called by LxpProtocol ----------------------------------------

    def connection_made(self, protocol: LxpProtocol) -> None:
        """The connection is up: log it, tell the observers, start the queue.

        In server mode a dongle that reconnects may do so before its old
        connection is seen to close: the new one replaces it.
        """
        replaced = self._protocol
        if replaced is not None and replaced is not protocol:
            self._protocol = None
            if self._current is not None:
                self._finish(self._current, failure=CommandFailed("connection lost"),
                             send_next=False)
            self.log.info("{name}: connection from {old} replaced by {new}", name=self.name,
                          old=replaced.peer, new=protocol.peer)
            replaced.abort(f"replaced by a new connection from {protocol.peer}")
        self._protocol = protocol
        self._peer = protocol.peer
        self._unknown_functions = set()
        self._was_connected = True
        self._connected_at = self._clock.seconds()
        self._last_loss = None
        was_connected, self.connected = self.connected, True
        if self._client is None:
            self.log.info("{name}: the datalogger connected from {peer}", name=self.name,
                          peer=protocol.peer)
        else:
            self.log.info("{name}: connected to {peer}", name=self.name, peer=protocol.peer)
        if self.serial is None:
            self._cancel_serial_question()
            self._serial_question = self._clock.callLater(
                SERIAL_QUESTION_DELAY, self._ask_for_serial)
        if not was_connected:
            self._notify("connection_changed", True)
        self._send_next()
        if self.read_holding_on_connect:
            self._read_holding_registers()

    def connection_lost(self, protocol: LxpProtocol, reason: str) -> None:
        """The connection is gone: fail the request on the wire, tell the observers."""
        if protocol is not self._protocol:
            return
        self._protocol = None
        self.connected = False
        self._last_loss = reason
        self._cancel_serial_question()
        if not self.running or self._client is None:
            self.log.info(
                "{name}: disconnected from {peer}: {reason}",
                name=self.name,
                peer=self._peer,
                reason=reason,
            )
        # Otherwise ClientService asks _retry_delay for the delay right away,
        # which logs the loss together with when the next attempt comes.
        if self._current is not None:
            self._finish(self._current, failure=CommandFailed("connection lost"))
        self._notify("connection_changed", False)

    def frame_received(self, frame: lxp.Frame) -> None:
        """Update state, answer the request on the wire if the frame fits, tell the observers.

        The request's Deferred fires before the observers hear of the frame, so
        a command's result goes out before the register news it caused.
        """
        if frame.datalog != self.datalog:
            if self.datalog is not None:
                self._foreign_datalog(frame.datalog)
                return
            self._learned("datalog", frame.datalog)
        kind = type(frame)
        notice = None
        if kind is lxp.ReadReply:
            if frame.function == READ_INPUT:
                named = decode_inputs(frame.register, frame.values)
                self.latest_inputs.update(named)
                blocks = split_blocks(frame.register, len(frame.values), named)
                if blocks:
                    notice = ("inputs_received", blocks)
            else:
                registers = frame.registers
                self.registers.update(registers)
                notice = ("registers_received", registers)
        elif kind is lxp.WriteSingleReply:
            self.registers[frame.register] = frame.value
            notice = ("registers_received", {frame.register: frame.value})
        elif kind is lxp.WriteMultiReply:
            # The ack carries no values: only our own multi write, whose
            # values we sent, tells what the registers now hold.
            request = self._current.request if self._current is not None else None
            if request is None or not _answers(request, frame):
                return
            registers = dict(enumerate(request.values, request.register))
            self.registers.update(registers)
            notice = ("registers_received", registers)
        elif kind is lxp.Heartbeat:
            if self.heartbeat_echo and self._protocol is not None:
                # Rebuilt, not replayed, as other clients do: protocol 2, same datalog.
                self._protocol.send(lxp.Heartbeat(frame.datalog))
            return
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
            return
        elif kind is not lxp.ExceptionReply:
            # Other clients' requests, the cloud's param reads and writes:
            # nothing to update, nothing we asked for.
            return

        if self.serial is None:
            serial = _serial_told_by(frame)
            if serial is not None:
                self._learned("serial", serial)
        elif frame.inverter not in (self.serial, _NOT_YET_KNOWN):
            self._foreign_inverter(frame.inverter)
        command = self._current
        if command is not None and _answers(command.request, frame):
            if kind is lxp.ExceptionReply:
                self._finish(command, failure=CommandFailed(f"exception reply: {frame.reason}"))
            else:
                self._advance(command, frame)
        elif kind is lxp.ExceptionReply:
            self.log.info(
                "{name}: exception reply {reason} for function {function}, register {register}"
                " (not a request of ours)",
                name=self.name,
                reason=frame.reason,
                function=int(frame.function),
                register=frame.register,
            )
        if notice is not None:
            self._notify(*notice)

    # -- serials learned --------------------------------------------------------------

    def _learned(self, key: str, value: str) -> None:
        """Use ``value`` as the datalog or inverter serial from now on; say so, once."""
        setattr(self, key, value)
        what = "datalog (dongle)" if key == "datalog" else "inverter"
        self.log.info(
            "{name}: learned the {what} serial {value!r}: put `{key} = {value}` in this"
            " inverter's [lxp] section of config.ini",
            name=self.name,
            what=what,
            key=key,
            value=value,
        )
        if key == "serial":
            self._cancel_serial_question()
            self._send_next()

    def _ask_for_serial(self) -> None:
        """Ask for input block 1: its reply carries the inverter serial."""
        self._serial_question = None
        if self.serial is not None or self._protocol is None:
            return
        if self.datalog is None:
            # Not a frame yet, so not even the datalog serial to address it with.
            self._serial_question = self._clock.callLater(
                SERIAL_QUESTION_DELAY, self._ask_for_serial)
            return
        self.log.info(
            "{name}: asking for input registers 80-119, which carry the inverter serial,"
            " addressed to inverter {stand_in} (as LuxPower Advanced does without a serial);"
            " if the dongle does not answer, the serial comes with its next input broadcast,"
            " within its broadcast interval (2-5 minutes on most units)",
            name=self.name, stand_in=_NOT_YET_KNOWN)
        self._protocol.send(lxp.ReadRequest(
            READ_INPUT, self.datalog, _NOT_YET_KNOWN, SERIAL_QUESTION_BLOCK, 40))

    def _cancel_serial_question(self) -> None:
        if self._serial_question is not None and self._serial_question.active():
            self._serial_question.cancel()
        self._serial_question = None

    # -- state and observers --------------------------------------------------------

    def _notify(self, method: str, argument) -> None:
        for observer in self._observers:
            try:
                getattr(observer, method)(argument)
            except Exception:
                self.log.failure(
                    "{name}: observer {observer!r} failed in {method}",
                    name=self.name,
                    observer=observer,
                    method=method,
                )

    # -- connection attempts and the log ----------------------------------------------

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

    def _foreign_datalog(self, datalog: str) -> None:
        if self._first_sight(self._foreign_datalogs, datalog):
            self.log.warn(
                "{name}: ignoring frames from datalog {seen!r}, expected {datalog!r}:"
                " check the datalog serial in config.ini",
                name=self.name,
                seen=datalog,
                datalog=self.datalog,
            )

    def _foreign_inverter(self, serial: str) -> None:
        if self._first_sight(self._foreign_inverters, serial):
            self.log.warn(
                "{name}: the inverter reports serial {seen!r}, configured {serial!r}:"
                " requests go unanswered unless the inverter serial in config.ini is right",
                name=self.name,
                seen=serial,
                serial=self.serial,
            )

    @staticmethod
    def _first_sight(seen: set[str], serial: str) -> bool:
        """Remember ``serial``; True the first time (and while there is room to remember)."""
        if serial in seen or len(seen) >= _MAX_REMEMBERED_SERIALS:
            return False
        seen.add(serial)
        return True
