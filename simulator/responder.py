"""What the simulated dongle says: a request frame in, the frames a real dongle sends out.

Pure: no Twisted, no sockets, no clock. ``Responder`` answers the requests
addressed to its dongle from the ``Plant`` behind it (reads, writes, the
dongle's own parameters) and makes the frames a dongle sends of its own accord
(input broadcasts, the traffic another client would cause). It says what
happened in ``Answer.notes`` for the log; when to send what, and to whom, is
``simulator.dongle``'s business.
"""

from __future__ import annotations

import enum

import attrs

from octolux import lxp
from octolux.lxp import batteries, holding
from octolux.lxp.inputs import BLOCK_SIZE
from simulator.models import DongleKind
from simulator.plant import Plant
from simulator.registers import Change, RegisterError, UnknownRegister, ValueOutOfRange

# The inverter serial a client without one sends (LuxPower Advanced's default).
ANY_INVERTER = "0000000000"

ALL_INPUTS_COUNT = 127  # the newer firmware's single broadcast: registers 0-126
MAX_READ = 40
BURST_BLOCKS = (0, 40, 80)
PUSH_STARTS = (0, 127, 254)  # where a BJ or DG dongle's 127-register pushes start
HOLDING_PUSH_COUNT = 80  # a BJ or DG dongle pushes holding 0-79 to a client as it connects
BATTERY_AREA = 5000  # input registers from here are the battery modules' (5002-5121)

FOREIGN_KINDS = (
    "hold_reply",
    "input_reply",
    "write_echo",
    "write_param_reply",
    "write_param_request",
    "unknown_input_block",
    "exception_reply",
)


class BroadcastFormat(enum.Enum):
    """How input registers are broadcast."""

    BURSTS = "bursts"  # three 40-register frames (0, 40, 80), protocol 2
    ALL127 = "all127"  # one 127-register frame from 0, protocol 5 (newer firmware)


@attrs.frozen
class Answer:
    """What a request gets: the frames to send, in order, and what it did, for the log."""

    frames: tuple = ()
    changes: tuple[Change, ...] = ()  # the holding registers a write stored (old may equal new)
    notes: tuple[str, ...] = ()  # what happened, in words
    interval: float | None = None  # the new broadcast interval, when parameter 0 was written

    @property
    def changed(self) -> tuple[Change, ...]:
        """The changes that changed a value."""
        return tuple(change for change in self.changes if change.old != change.new)


def check_input_range(register: int, count: int, input_count: int = 160) -> None:
    """Raise RegisterError unless input registers ``register .. +count`` can be read at once.

    Readable: any run within one 40-register block of the ``input_count``
    registers, or 127 registers from 0 (from 127 and 254 too, on a model with
    that many).
    """
    if count == ALL_INPUTS_COUNT and register in PUSH_STARTS:
        if register + count > input_count and register:
            raise UnknownRegister(register, f"input registers are 0-{input_count - 1}")
        return
    if not 1 <= count <= MAX_READ:
        raise ValueOutOfRange(register, f"cannot read {count} input registers at once")
    if register + count > input_count:
        raise UnknownRegister(register, f"input registers are 0-{input_count - 1}")
    if register // BLOCK_SIZE != (register + count - 1) // BLOCK_SIZE:
        raise UnknownRegister(register, "a read must not cross a 40-register block")


@attrs.define
class Responder:
    """The dongle's and its inverter's answers, from the plant: frames in, frames out.

    ``interval`` is the dongle's parameter 0, the seconds between input
    broadcasts, which a client may read and write.
    """

    datalog: str
    inverter: str
    plant: Plant
    format: BroadcastFormat = BroadcastFormat.BURSTS
    interval: float = 120.0
    dongle: DongleKind = DongleKind.BA
    battery_reads: int = 0  # reads of the battery area answered: they rotate its modules

    @property
    def heartbeat_protocol(self) -> int:
        """5 for newer firmware and dongles (the 127-register format), 2 otherwise."""
        return 5 if self.format is BroadcastFormat.ALL127 or self.dongle.pushes else 2

    @property
    def _address(self) -> int:
        return self.dongle.reply_address

    def _protocol(self, count: int) -> int:
        """A reply's protocol: 5 from a BJ or DG dongle, or for 127 registers in that format."""
        if self.dongle.pushes or (count == ALL_INPUTS_COUNT
                                  and self.format is BroadcastFormat.ALL127):
            return 5
        return 2

    def heartbeat(self) -> lxp.Heartbeat:
        """The heartbeat this dongle sends."""
        return lxp.Heartbeat(self.datalog, protocol=self.heartbeat_protocol)

    def addressed_to_us(self, request) -> bool:
        """True if a request names this dongle and this inverter (or any inverter)."""
        if request.datalog != self.datalog:
            return False
        inverter = getattr(request, "inverter", self.inverter)
        # 0000000000 as well: LuxPower Advanced sends every request to it when it
        # has no inverter serial, and works, so real dongles answer it. Other
        # serials are ignored (PROTOCOL.md section 2). The reply names the
        # inverter, as every reply does.
        return inverter in (self.inverter, ANY_INVERTER)

    def respond(self, request) -> Answer:
        """The answer to a request addressed to this dongle; a write changes the plant.

        The plant must have been run up to now first.
        """
        if isinstance(request, lxp.ReadRequest):
            return self._read(request)
        if isinstance(request, lxp.WriteSingleRequest):
            return self._write(request, (request.value,))
        if isinstance(request, lxp.WriteMultiRequest):
            return self._write(request, request.values)
        if isinstance(request, lxp.ReadParamRequest):
            return self._read_param(request)
        if isinstance(request, lxp.WriteParamRequest):
            return self._write_param(request)
        raise TypeError(f"not a request: {request!r}")

    def refuse(self, request, code: int) -> lxp.ExceptionReply:
        """An exception reply to a register request."""
        return lxp.ExceptionReply(request.function, self.datalog, self.inverter,
                                  request.register, code, protocol=self._protocol(0),
                                  address=self._address)

    def _read(self, request) -> Answer:
        register, count = request.register, request.count
        try:
            if request.function == lxp.DeviceFunction.READ_INPUT and register >= BATTERY_AREA:
                values = self._battery_read(register, count)
            elif request.function == lxp.DeviceFunction.READ_INPUT:
                check_input_range(register, count, self.plant.model.input_count)
                values = self._input_registers()[register : register + count]
            else:
                if not (1 <= count <= MAX_READ or count == ALL_INPUTS_COUNT):
                    raise ValueOutOfRange(register, f"cannot read {count} registers at once")
                values = self.plant.read_holding(register, count)
        except RegisterError as error:
            return Answer((self.refuse(request, error.code),),
                          notes=(f"refusing the read: {error}",))
        reply = lxp.ReadReply(request.function, self.datalog, self.inverter, register,
                              tuple(values), protocol=self._protocol(count),
                              address=self._address)
        return Answer((reply,))

    def _write(self, request, values) -> Answer:
        try:
            changes = self.plant.write_holding(request.register, values)
        except RegisterError as error:
            return Answer((self.refuse(request, error.code),),
                          notes=(f"refusing the write: {error}",))
        notes = tuple(
            f"holding register {change.register} ({holding.register_name(change.register)}) "
            f"changed {change.old} -> {change.new}"
            for change in changes if change.old != change.new
        ) or ("write left the registers unchanged",)
        if isinstance(request, lxp.WriteSingleRequest):
            reply = lxp.WriteSingleReply(self.datalog, self.inverter, request.register,
                                         request.value, protocol=self._protocol(1),
                                         address=self._address)
        else:
            reply = lxp.WriteMultiReply(self.datalog, self.inverter, request.register,
                                        len(values), protocol=self._protocol(len(values)),
                                        address=self._address)
        return Answer((reply,), changes=tuple(changes), notes=notes)

    def _read_param(self, request) -> Answer:
        if request.register == 0:
            value = lxp.param_value(max(1, min(0xFFFF, round(self.interval))))
            notes = ()
        else:
            # Other parameters are not simulated: an empty value says so without lying.
            value = b""
            notes = (f"parameter {request.register} is not simulated",)
        return Answer((lxp.ReadParamReply(self.datalog, request.register, value),), notes=notes)

    def _write_param(self, request) -> Answer:
        seconds = request.number
        if request.register != 0 or not 1 <= len(request.value) <= 2 or seconds == 0:
            return Answer(
                (lxp.WriteParamReply(self.datalog, request.register, 1),),
                notes=(f"refusing write param {request.register} = {request.value.hex()}",),
            )
        old, self.interval = self.interval, float(seconds)
        return Answer(
            (lxp.WriteParamReply(self.datalog, request.register, 0),),
            notes=(f"parameter 0 (broadcast interval) changed {old} -> {self.interval} s",),
            interval=self.interval,
        )

    # -- frames of its own accord ---------------------------------------------------

    def _battery_read(self, register: int, count: int) -> tuple[int, ...]:
        """Input registers of the battery area (5000-5121): only with batteries simulated.

        Each read that covers slot 0 moves the modules on by 4, as the firmware
        rotates more than 4 modules through its 4 slots.
        """
        if not self.plant.batteries:
            raise UnknownRegister(register, "no battery modules report here")
        if not 1 <= count <= ALL_INPUTS_COUNT:
            raise ValueOutOfRange(register, f"cannot read {count} input registers at once")
        if register + count > batteries.LAST_REGISTER + 1:
            raise UnknownRegister(register, f"battery registers end at {batteries.LAST_REGISTER}")
        area = (0,) * (batteries.FIRST_REGISTER - BATTERY_AREA) + self.plant.battery_registers(
            self.battery_reads * batteries.SLOTS)
        if register <= batteries.FIRST_REGISTER < register + count:
            self.battery_reads += 1
        return area[register - BATTERY_AREA : register - BATTERY_AREA + count]

    def _input_registers(self) -> tuple[int, ...]:
        return self.plant.input_registers()

    def broadcast(self) -> list:
        """The input broadcast now: three 40-register frames, or one of 127 registers.

        From a BJ or DG dongle: 127-register frames from 0, 127 and 254, as many
        as the model has registers for (the last one shorter if need be).
        """
        registers = self._input_registers()
        if self.dongle.pushes:
            return [
                self._input_frame(start, registers[start : start + ALL_INPUTS_COUNT], 5)
                for start in PUSH_STARTS if start < len(registers)
            ]
        if self.format is BroadcastFormat.ALL127:
            return [self._input_frame(0, registers[:ALL_INPUTS_COUNT], 5)]
        return [
            self._input_frame(register, registers[register : register + BLOCK_SIZE], 2)
            for register in BURST_BLOCKS
        ]

    def _input_frame(self, register: int, values, protocol_number: int) -> lxp.ReadReply:
        return lxp.ReadReply(lxp.DeviceFunction.READ_INPUT, self.datalog, self.inverter,
                             register, tuple(values), protocol=protocol_number,
                             address=self._address)

    def connect_push(self) -> list:
        """What the dongle sends a client as it connects: holding 0-79 from BJ and DG dongles."""
        if not self.dongle.pushes:
            return []
        return [lxp.ReadReply(lxp.DeviceFunction.READ_HOLD, self.datalog, self.inverter, 0,
                              self.plant.read_holding(0, HOLDING_PUSH_COUNT), protocol=5,
                              address=self._address)]

    def foreign_frame(self, index: int):
        """The ``index``-th frame of traffic another client (cloud, app) would cause.

        Cycles through ``FOREIGN_KINDS``. Register values in it are the plant's
        real ones, so a bridge that publishes them publishes the truth.
        """
        kind = FOREIGN_KINDS[index % len(FOREIGN_KINDS)]
        datalog, inverter = self.datalog, self.inverter
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
            return self._input_frame(self.plant.model.input_count, (0,) * BLOCK_SIZE, 2)
        return lxp.ExceptionReply(lxp.DeviceFunction.READ_HOLD, datalog, inverter, 240,
                                  lxp.ExceptionCode.ILLEGAL_ADDRESS)
