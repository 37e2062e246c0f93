"""LXP frames: one attrs class per frame kind, ``build`` to bytes and ``parse`` back.

Every frame starts with the 18-byte outer header (PROTOCOL.md section 1).
Translated-data frames (tcp function 194) wrap a Modbus-like frame with a CRC.

Whether such a frame is a request or a reply is not written in it: the
address byte is 0 in requests and 1 in most replies, but 0 in the replies of
BJ and DG dongles and EG4 inverters (PROTOCOL.md section 2), and a protocol 1
reply carrying one value has the very shape of a request. So ``parse`` takes
the ``Direction`` the caller knows (a client hears only the dongle; the
dongle hears only clients), and the address byte is kept in the frame as it
was sent.
"""

from __future__ import annotations

import enum
import struct
from typing import Union

import attrs

from octolux.lxp.crc import crc16_modbus

PREFIX = b"\xa1\x1a"
HEADER_LENGTH = 6  # prefix, protocol, frame length: what the length field does not count
OUTER_HEADER_LENGTH = 18  # ... plus the 01 byte, tcp function and datalog serial
SERIAL_LENGTH = 10

# What a frame built here carries in its address byte; a parsed frame keeps
# the byte it came with, whatever it was.
ADDRESS_CLIENT = 0
ADDRESS_INVERTER = 1
EXCEPTION_FLAG = 0x80


class Direction(enum.Enum):
    """Which end of a dongle connection sent a frame: what tells a request from a reply."""

    TO_DONGLE = "to the dongle"  # a client's (or the vendor cloud's) requests
    FROM_DONGLE = "from the dongle"  # replies, broadcasts, pushes, heartbeats


class TcpFunction(enum.IntEnum):
    """What the outer frame carries."""

    HEARTBEAT = 193
    TRANSLATED_DATA = 194
    READ_PARAM = 195
    WRITE_PARAM = 196


class DeviceFunction(enum.IntEnum):
    """Modbus function of a translated-data frame."""

    READ_HOLD = 3
    READ_INPUT = 4
    WRITE_SINGLE = 6
    WRITE_MULTI = 16


class ExceptionCode(enum.IntEnum):
    """Error codes of an exception reply."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_ADDRESS = 2
    ILLEGAL_VALUE = 3
    FAILURE = 4
    BUSY = 6


class FrameError(ValueError):
    """Bytes that are not a valid frame; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def param_value(number: int) -> bytes:
    """A number as a dongle parameter carries it (param 0, the interval): u16, low byte first."""
    return number.to_bytes(2, "little")


def param_number(value: bytes) -> int:
    """A dongle parameter's bytes read as a little-endian unsigned integer."""
    return int.from_bytes(value, "little")


# -- validators ---------------------------------------------------------------


def check_serial(value, what: str = "serial") -> str:
    """``value`` if it is a datalog or inverter serial: 10 characters of 8-bit text.

    Else ValueError, naming ``what`` (a field, an option) and the value.
    """
    if type(value) is not str or len(value) != SERIAL_LENGTH or max(value) > "\xff":
        raise ValueError(f"{what} must be {SERIAL_LENGTH} characters of 8-bit text: {value!r}")
    return value


def _serial(instance, attribute, value):
    check_serial(value, attribute.name)


def _u16(instance, attribute, value):
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must be an integer 0-65535: {value!r}")


def _u8(instance, attribute, value):
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{attribute.name} must be an integer 0-255: {value!r}")


def _u16s(count: int) -> struct.Struct:
    return _U16_ARRAYS.get(count) or _U16_ARRAYS.setdefault(count, struct.Struct(f"<{count}H"))


_U16_ARRAYS: dict[int, struct.Struct] = {}


def _register_values(instance, attribute, value):
    """A tuple of 1-127 integers 0-65535 (a protocol 1 reply: exactly one)."""
    if type(value) is not tuple or not 0 < len(value) <= 127:
        raise ValueError(f"{attribute.name} must be a tuple of 1 to 127 values: {value!r}")
    if instance.protocol == 1 and len(value) != 1 and type(instance) is ReadReply:
        raise ValueError("a protocol 1 read reply carries exactly one value")
    # struct checks every item in C; a loop in Python would cost as much as
    # the rest of parsing a frame.
    try:
        _u16s(len(value)).pack(*value)
    except struct.error:
        raise ValueError(f"{attribute.name} must hold integers 0-65535: {value!r}") from None


def _read_function(instance, attribute, value):
    if value is not DeviceFunction.READ_HOLD and value is not DeviceFunction.READ_INPUT:
        raise ValueError(f"{attribute.name} must be READ_HOLD or READ_INPUT: {value!r}")


def _address(default: int):
    """The address byte's field: as received (0 or 1 either way round), or ``default`` if built."""
    return attrs.field(default=default, validator=_u8)


_bytes = attrs.validators.instance_of(bytes)


def _one_byte(instance, attribute, value):
    if type(value) is not bytes or len(value) != 1:
        raise ValueError(f"{attribute.name} must be one byte: {value!r}")


_DEVICE_FUNCTIONS = DeviceFunction._value2member_map_


def _function(value: int) -> DeviceFunction:
    # A dict lookup: calling the enum class is slow, and this runs per frame.
    try:
        return _DEVICE_FUNCTIONS[value]
    except (KeyError, TypeError):
        raise ValueError(f"not a device function: {value!r}") from None


# -- frame classes ------------------------------------------------------------


@attrs.frozen
class Heartbeat:
    """The datalogger's keep-alive, about once a minute; some setups must echo it."""

    datalog: str = attrs.field(validator=_serial)
    protocol: int = attrs.field(default=2, validator=_u16)
    # One byte, 00 on every captured heartbeat: a heartbeat has no CRC, so its
    # fixed length is all that tells a real one from a corrupt one.
    trailer: bytes = attrs.field(default=b"\x00", validator=_one_byte)

    tcp_function = TcpFunction.HEARTBEAT


@attrs.frozen
class ReadRequest:
    """A client asks for ``count`` holding or input registers from ``register``."""

    function: DeviceFunction = attrs.field(converter=_function, validator=_read_function)
    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    count: int = attrs.field(validator=_u16)
    protocol: int = attrs.field(default=1, validator=_u16)
    address: int = _address(ADDRESS_CLIENT)

    tcp_function = TcpFunction.TRANSLATED_DATA


@attrs.frozen
class ReadReply:
    """Register values from the inverter: a reply to a read, or an input broadcast."""

    function: DeviceFunction = attrs.field(converter=_function, validator=_read_function)
    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    # Protocol 1 replies carry one bare value, others a byte count (u8).
    values: tuple[int, ...] = attrs.field(validator=_register_values)
    protocol: int = attrs.field(default=2, validator=_u16)
    address: int = _address(ADDRESS_INVERTER)

    tcp_function = TcpFunction.TRANSLATED_DATA

    @property
    def registers(self) -> dict[int, int]:
        """Register number -> raw value."""
        return dict(enumerate(self.values, self.register))


@attrs.frozen
class WriteSingleRequest:
    """A client sets one holding register."""

    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    value: int = attrs.field(validator=_u16)
    protocol: int = attrs.field(default=1, validator=_u16)
    address: int = _address(ADDRESS_CLIENT)

    tcp_function = TcpFunction.TRANSLATED_DATA
    function = DeviceFunction.WRITE_SINGLE


@attrs.frozen
class WriteSingleReply:
    """The inverter's acknowledgement of a single write: the register and its new value."""

    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    value: int = attrs.field(validator=_u16)
    protocol: int = attrs.field(default=2, validator=_u16)
    address: int = _address(ADDRESS_INVERTER)

    tcp_function = TcpFunction.TRANSLATED_DATA
    function = DeviceFunction.WRITE_SINGLE


@attrs.frozen
class WriteMultiRequest:
    """A client sets consecutive holding registers (in practice the clock, 12-14)."""

    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    values: tuple[int, ...] = attrs.field(validator=_register_values)
    # Peers disagree (lxp-bridge sends 2, pylxpweb 1); the captured frame has 2.
    protocol: int = attrs.field(default=2, validator=_u16)
    address: int = _address(ADDRESS_CLIENT)

    tcp_function = TcpFunction.TRANSLATED_DATA
    function = DeviceFunction.WRITE_MULTI


@attrs.frozen
class WriteMultiReply:
    """The inverter's acknowledgement of a multi write: start register and count."""

    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    count: int = attrs.field(validator=_u16)
    protocol: int = attrs.field(default=2, validator=_u16)
    address: int = _address(ADDRESS_INVERTER)

    tcp_function = TcpFunction.TRANSLATED_DATA
    function = DeviceFunction.WRITE_MULTI


@attrs.frozen
class ExceptionReply:
    """The inverter refused a request: ``function`` is the refused one (0x80 cleared)."""

    function: DeviceFunction = attrs.field(converter=_function)
    datalog: str = attrs.field(validator=_serial)
    inverter: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    code: int = attrs.field(validator=_u8)
    protocol: int = attrs.field(default=2, validator=_u16)
    address: int = _address(ADDRESS_INVERTER)

    tcp_function = TcpFunction.TRANSLATED_DATA

    @property
    def reason(self) -> str:
        """The code's name, e.g. ``ILLEGAL_VALUE``, or ``code 9`` for an unknown one."""
        try:
            return ExceptionCode(self.code).name
        except ValueError:
            return f"code {self.code}"


@attrs.frozen
class ReadParamRequest:
    """A client reads a parameter of the datalogger itself (0: broadcast interval)."""

    datalog: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    protocol: int = attrs.field(default=2, validator=_u16)

    tcp_function = TcpFunction.READ_PARAM


@attrs.frozen
class ReadParamReply:
    """The datalogger's value of a parameter, as raw bytes."""

    datalog: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    value: bytes = attrs.field(validator=_bytes)
    protocol: int = attrs.field(default=2, validator=_u16)

    tcp_function = TcpFunction.READ_PARAM

    @property
    def number(self) -> int:
        """The value read as a little-endian unsigned integer."""
        return param_number(self.value)


@attrs.frozen
class WriteParamRequest:
    """A client (or the vendor cloud) sets a parameter of the datalogger."""

    datalog: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    value: bytes = attrs.field(validator=_bytes)
    protocol: int = attrs.field(default=2, validator=_u16)

    tcp_function = TcpFunction.WRITE_PARAM

    @property
    def number(self) -> int:
        """The value read as a little-endian unsigned integer."""
        return param_number(self.value)


@attrs.frozen
class WriteParamReply:
    """The datalogger's answer to a parameter write; ``status`` 0 is taken as success.

    Its layout is poorly understood (PROTOCOL.md section 7): register u16 then one byte.
    """

    datalog: str = attrs.field(validator=_serial)
    register: int = attrs.field(validator=_u16)
    status: int = attrs.field(validator=_u8)
    protocol: int = attrs.field(default=2, validator=_u16)

    tcp_function = TcpFunction.WRITE_PARAM


@attrs.frozen
class UnknownFrame:
    """A well-formed outer frame whose payload this module does not understand.

    Kept whole so that it can be logged and rebuilt byte for byte, rather than
    costing the connection (the vendor cloud sends such traffic).
    """

    tcp_function: int = attrs.field(validator=_u8)
    datalog: str = attrs.field(validator=_serial)
    payload: bytes = attrs.field(validator=_bytes)
    protocol: int = attrs.field(default=2, validator=_u16)


Frame = Union[  # noqa: UP007 - a runtime alias, readable in isinstance checks
    Heartbeat,
    ReadRequest,
    ReadReply,
    WriteSingleRequest,
    WriteSingleReply,
    WriteMultiRequest,
    WriteMultiReply,
    ExceptionReply,
    ReadParamRequest,
    ReadParamReply,
    WriteParamRequest,
    WriteParamReply,
    UnknownFrame,
]

TRANSLATED_FRAMES = (
    ReadRequest,
    ReadReply,
    WriteSingleRequest,
    WriteSingleReply,
    WriteMultiRequest,
    WriteMultiReply,
    ExceptionReply,
)

REQUESTS = (ReadRequest, WriteSingleRequest, WriteMultiRequest, ReadParamRequest, WriteParamRequest)


def _unvalidated(cls):
    """A constructor of ``cls`` for ``parse`` alone: fields set as given, in field order.

    It skips the validators and converters. ``parse`` has checked every field
    before it builds a frame, and checking again cost a fifth of decoding one.
    Whoever else builds a frame goes through ``__init__`` and is validated.
    """
    setters = tuple(getattr(cls, field.name).__set__ for field in attrs.fields(cls))
    new = object.__new__

    def construct(*values):
        frame = new(cls)
        for set_field, value in zip(setters, values):  # noqa: B905 - parse passes them all
            set_field(frame, value)
        return frame

    return construct


_parsed_heartbeat = _unvalidated(Heartbeat)
_parsed_read_request = _unvalidated(ReadRequest)
_parsed_read_reply = _unvalidated(ReadReply)
_parsed_write_single_request = _unvalidated(WriteSingleRequest)
_parsed_write_single_reply = _unvalidated(WriteSingleReply)
_parsed_write_multi_request = _unvalidated(WriteMultiRequest)
_parsed_write_multi_reply = _unvalidated(WriteMultiReply)
_parsed_exception_reply = _unvalidated(ExceptionReply)
_parsed_read_param_request = _unvalidated(ReadParamRequest)
_parsed_read_param_reply = _unvalidated(ReadParamReply)
_parsed_write_param_request = _unvalidated(WriteParamRequest)
_parsed_write_param_reply = _unvalidated(WriteParamReply)
_parsed_unknown_frame = _unvalidated(UnknownFrame)


# -- building -----------------------------------------------------------------


def _outer(protocol: int, tcp_function: int, datalog: str, payload: bytes) -> bytes:
    header = struct.pack(
        "<2sHHBB", PREFIX, protocol, len(payload) + OUTER_HEADER_LENGTH - HEADER_LENGTH, 1,
        tcp_function,
    )
    return header + datalog.encode("latin-1") + payload


def _translated(frame, function: int, value_section: bytes) -> bytes:
    data = (
        struct.pack("<BB", frame.address, function)
        + frame.inverter.encode("latin-1")
        + struct.pack("<H", frame.register)
        + value_section
    )
    data += struct.pack("<H", crc16_modbus(data))
    payload = struct.pack("<H", len(data)) + data
    return _outer(frame.protocol, TcpFunction.TRANSLATED_DATA, frame.datalog, payload)


def _values(values: tuple[int, ...]) -> bytes:
    return _u16s(len(values)).pack(*values)


def build(frame: Frame) -> bytes:
    """Encode ``frame`` as the bytes that go on the wire."""
    kind = type(frame)
    if kind is Heartbeat:
        return _outer(frame.protocol, TcpFunction.HEARTBEAT, frame.datalog, frame.trailer)
    if kind is ReadRequest:
        return _translated(frame, frame.function, struct.pack("<H", frame.count))
    if kind is ReadReply:
        if frame.protocol == 1:
            section = _values(frame.values)
        else:
            section = bytes([2 * len(frame.values)]) + _values(frame.values)
        return _translated(frame, frame.function, section)
    if kind is WriteSingleRequest:
        return _translated(frame, frame.function, struct.pack("<H", frame.value))
    if kind is WriteSingleReply:
        return _translated(frame, frame.function, struct.pack("<H", frame.value))
    if kind is WriteMultiRequest:
        count = len(frame.values)
        section = struct.pack("<HB", count, 2 * count) + _values(frame.values)
        return _translated(frame, frame.function, section)
    if kind is WriteMultiReply:
        return _translated(frame, frame.function, struct.pack("<H", frame.count))
    if kind is ExceptionReply:
        function = frame.function | EXCEPTION_FLAG
        return _translated(frame, function, bytes([frame.code]))
    if kind is ReadParamRequest:
        payload = struct.pack("<H", frame.register)
        return _outer(frame.protocol, TcpFunction.READ_PARAM, frame.datalog, payload)
    if kind in (ReadParamReply, WriteParamRequest):
        payload = struct.pack("<HH", frame.register, len(frame.value)) + frame.value
        return _outer(frame.protocol, frame.tcp_function, frame.datalog, payload)
    if kind is WriteParamReply:
        payload = struct.pack("<HB", frame.register, frame.status)
        return _outer(frame.protocol, TcpFunction.WRITE_PARAM, frame.datalog, payload)
    if kind is UnknownFrame:
        return _outer(frame.protocol, frame.tcp_function, frame.datalog, frame.payload)
    raise TypeError(f"not a frame: {frame!r}")


# -- parsing ------------------------------------------------------------------

_FRAMED_HEADER = struct.Struct("<H3xB10s")  # protocol, (length, 01), tcp function, datalog
_TRANSLATED_HEAD = struct.Struct("<HBB10sH")  # data length, address, function, inverter, register
_U16 = struct.Struct("<H")


# Module-level names for what every frame is compared with: looking up an
# enum member on its class costs more than the comparison.
_HEARTBEAT = TcpFunction.HEARTBEAT
_TRANSLATED_DATA = TcpFunction.TRANSLATED_DATA
_READ_PARAM = TcpFunction.READ_PARAM
_WRITE_PARAM = TcpFunction.WRITE_PARAM
_READS = frozenset({DeviceFunction.READ_HOLD, DeviceFunction.READ_INPUT})
_WRITE_SINGLE = DeviceFunction.WRITE_SINGLE
_WRITE_MULTI = DeviceFunction.WRITE_MULTI
_FROM_DONGLE = Direction.FROM_DONGLE
_TO_DONGLE = Direction.TO_DONGLE

# Frames without a CRC (heartbeats, params) can prove their length only by
# fitting their kind's layout: a heartbeat is 19 bytes; a read-param request
# 20, a write-param reply 21, and the others carry a value length that must
# account for the rest of the frame.
HEARTBEAT_LENGTH = OUTER_HEADER_LENGTH + 1
_SHORTEST_TRANSLATED = OUTER_HEADER_LENGTH + 18  # data length, address .. register, CRC
_FIXED_PARAM_LENGTHS = {
    _READ_PARAM: OUTER_HEADER_LENGTH + 2,  # request: register
    _WRITE_PARAM: OUTER_HEADER_LENGTH + 3,  # reply: register, status
}
_PARAM_VALUE_OFFSET = OUTER_HEADER_LENGTH + 4  # register, value length, then the value


def frame_length(data, offset: int = 0) -> int:
    """The whole length of the frame at ``data[offset:]`` as its header says (6+ bytes needed).

    The length field (bytes 4-5) counts all but the prefix, protocol and itself.
    """
    return _U16.unpack_from(data, offset + 4)[0] + HEADER_LENGTH


def length_misfit(data, offset: int = 0, end: int | None = None) -> str | None:
    """Why the frame at ``data[offset:]`` cannot be as long as its length field says, or None.

    Only bytes before ``end`` are read, and at least the 8-byte header must be
    there: a stream framer asks before the rest has arrived. A reason, once
    given, stands whatever bytes follow. Frames of unknown function always fit.
    """
    if end is None:
        end = len(data)
    total = frame_length(data, offset)
    function = data[offset + 7]
    if function == _TRANSLATED_DATA:
        if total < _SHORTEST_TRANSLATED:
            return "translated data frame too short"
        if (
            end - offset >= OUTER_HEADER_LENGTH + 2
            and _U16.unpack_from(data, offset + OUTER_HEADER_LENGTH)[0]
            != total - OUTER_HEADER_LENGTH - 2
        ):
            return "data length field does not match the frame"
    elif function == _HEARTBEAT:
        if total != HEARTBEAT_LENGTH:
            return f"heartbeat not {HEARTBEAT_LENGTH} bytes"
    elif function in _FIXED_PARAM_LENGTHS:
        if total == _FIXED_PARAM_LENGTHS[function]:
            return None
        if total < _PARAM_VALUE_OFFSET:
            return "param frame fits no param layout"
        if (
            end - offset >= _PARAM_VALUE_OFFSET
            and _U16.unpack_from(data, offset + OUTER_HEADER_LENGTH + 2)[0]
            != total - _PARAM_VALUE_OFFSET
        ):
            return "param value length does not match the frame"
    return None


def parse(data: bytes, direction: Direction) -> Frame:
    """Decode one whole frame sent in ``direction``; raise ``FrameError`` if it is not valid.

    ``direction`` decides request or reply for translated data: from the dongle
    every one is a reply, a broadcast or a push, whatever its address byte.
    """
    if direction is not _FROM_DONGLE and direction is not _TO_DONGLE:
        raise TypeError(f"not a Direction: {direction!r}")
    if len(data) < OUTER_HEADER_LENGTH:
        raise FrameError("too short for a frame header")
    if data[:2] != PREFIX:
        raise FrameError("no A1 1A prefix")
    if frame_length(data) != len(data):
        raise FrameError("frame length field does not match the frame")
    misfit = length_misfit(data)
    if misfit is not None:
        raise FrameError(misfit)
    return parse_framed(data, direction)


def parse_framed(data: bytes, direction: Direction) -> Frame:
    """``parse`` for a frame whose header ``FrameDecoder`` has checked, as ``parse`` does.

    The prefix is there, the frame is as long as its length field says and
    ``length_misfit`` finds nothing wrong; what is left to check (the CRC, the
    payload) raises ``FrameError``.
    """
    protocol, tcp_function, datalog_bytes = _FRAMED_HEADER.unpack_from(data, 2)
    datalog = datalog_bytes.decode("latin-1")
    if tcp_function == _TRANSLATED_DATA:
        return _parse_translated(data, protocol, datalog, direction)
    payload = data[OUTER_HEADER_LENGTH:]
    if tcp_function == _HEARTBEAT:
        return _parsed_heartbeat(datalog, protocol, payload)
    # Param frames tell request from reply by their layout, which differs
    # (length_misfit has checked that one fits), not by who sent them: the
    # vendor cloud's parameter writes may reach a client too (PROTOCOL.md
    # section 7), and must arrive as what they are.
    if tcp_function == _READ_PARAM:
        if len(payload) == 2:
            return _parsed_read_param_request(datalog, _U16.unpack(payload)[0], protocol)
        register = _U16.unpack_from(payload)[0]
        return _parsed_read_param_reply(datalog, register, payload[4:], protocol)
    if tcp_function == _WRITE_PARAM:
        if len(payload) == 3:
            register, status = struct.unpack("<HB", payload)
            return _parsed_write_param_reply(datalog, register, status, protocol)
        register = _U16.unpack_from(payload)[0]
        return _parsed_write_param_request(datalog, register, payload[4:], protocol)
    return _parsed_unknown_frame(tcp_function, datalog, payload, protocol)


def _parse_translated(data: bytes, protocol: int, datalog: str, direction: Direction) -> Frame:
    # length_misfit has checked both length fields.
    _, address, function, inverter_bytes, register = _TRANSLATED_HEAD.unpack_from(
        data, OUTER_HEADER_LENGTH
    )
    (crc,) = _U16.unpack_from(data, len(data) - 2)
    if crc16_modbus(data, OUTER_HEADER_LENGTH + 2, len(data) - 2) != crc:
        raise FrameError("bad CRC")
    inverter = inverter_bytes.decode("latin-1")
    section = data[OUTER_HEADER_LENGTH + 16 : -2]
    # The address byte is kept, not trusted: who sent the frame says what it is.
    if direction is _FROM_DONGLE:
        return _parse_reply(function, protocol, datalog, inverter, register, section, address)
    if direction is _TO_DONGLE:
        return _parse_request(function, protocol, datalog, inverter, register, section, address)
    raise TypeError(f"not a Direction: {direction!r}")


def _parse_request(function, protocol, datalog, inverter, register, section, address) -> Frame:
    if function in _READS:
        if len(section) != 2:
            raise FrameError("read request must carry a 2-byte count")
        (count,) = _U16.unpack(section)
        return _parsed_read_request(
            _DEVICE_FUNCTIONS[function], datalog, inverter, register, count, protocol, address
        )
    if function == _WRITE_SINGLE:
        if len(section) != 2:
            raise FrameError("single write must carry a 2-byte value")
        (value,) = _U16.unpack(section)
        return _parsed_write_single_request(datalog, inverter, register, value, protocol, address)
    if function == _WRITE_MULTI:
        if len(section) < 3:
            raise FrameError("multi write too short")
        count, byte_count = struct.unpack_from("<HB", section)
        if byte_count != 2 * count or len(section) != 3 + byte_count or count == 0:
            raise FrameError("multi write counts do not match its values")
        values = _u16s(count).unpack_from(section, 3)
        return _parsed_write_multi_request(datalog, inverter, register, values, protocol, address)
    raise FrameError(f"unknown device function {function} in a request")


def _parse_reply(function, protocol, datalog, inverter, register, section, address) -> Frame:
    if function in _READS:
        read_function = _DEVICE_FUNCTIONS[function]
        if protocol == 1:
            if len(section) != 2:
                raise FrameError("protocol 1 read reply must carry one value")
            values = _U16.unpack(section)
            return _parsed_read_reply(
                read_function, datalog, inverter, register, values, protocol, address
            )
        if not section or section[0] != len(section) - 1 or section[0] % 2:
            raise FrameError("read reply byte count does not match its values")
        count = section[0] // 2
        if not 0 < count <= 127:
            raise FrameError("read reply must carry 1 to 127 values")
        values = _u16s(count).unpack_from(section, 1)
        return _parsed_read_reply(
            read_function, datalog, inverter, register, values, protocol, address
        )
    if function == _WRITE_SINGLE:
        if len(section) != 2:
            raise FrameError("single write reply must carry a 2-byte value")
        (value,) = _U16.unpack(section)
        return _parsed_write_single_reply(datalog, inverter, register, value, protocol, address)
    if function == _WRITE_MULTI:
        if len(section) != 2:
            raise FrameError("multi write reply must carry a 2-byte count")
        (count,) = _U16.unpack(section)
        return _parsed_write_multi_reply(datalog, inverter, register, count, protocol, address)
    base = function & ~EXCEPTION_FLAG
    if function & EXCEPTION_FLAG and base in _DEVICE_FUNCTIONS:
        if len(section) != 1:
            raise FrameError("exception reply must carry a 1-byte code")
        return _parsed_exception_reply(
            _DEVICE_FUNCTIONS[base], datalog, inverter, register, section[0], protocol, address
        )
    raise FrameError(f"unknown device function {function} in a reply")
