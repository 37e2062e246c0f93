"""Modbus PDUs (function code and data, no address, no checksum) of the four functions.

Registers are big-endian on the wire, as the Modbus specification says (the
dongle's LXP frames carry them little-endian). A write of one register is
answered by an echo of the same PDU, so ``WriteSingle`` is both the request
and its reply.
"""

from __future__ import annotations

import enum
import struct

import attrs

# The Modbus specification's limits: a read reply's byte count is one byte
# (250 at most), a write-multiple request's values fit the 253-byte PDU.
MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123
EXCEPTION_FLAG = 0x80


class Function(enum.IntEnum):
    """The function codes the inverter answers."""

    READ_HOLDING = 0x03
    READ_INPUT = 0x04
    WRITE_SINGLE = 0x06
    WRITE_MULTIPLE = 0x10


READS = (Function.READ_HOLDING, Function.READ_INPUT)


class ModbusError(ValueError):
    """Bytes that are not a valid PDU (or frame); ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _u16(instance, attribute, value):
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must be an integer 0-65535: {value!r}")


def _registers(instance, attribute, value):
    if not all(type(v) is int and 0 <= v <= 0xFFFF for v in value):
        raise ValueError(f"{attribute.name} must be integers 0-65535: {value!r}")


def _read_function(instance, attribute, value):
    if value not in READS:
        raise ValueError(f"function must be a read (3 or 4): {value!r}")


def _count(maximum: int):
    def check(instance, attribute, value):
        if type(value) is not int or not 1 <= value <= maximum:
            raise ValueError(f"{attribute.name} must be 1-{maximum}: {value!r}")
    return check


def _length(maximum: int):
    def check(instance, attribute, value):
        if not 1 <= len(value) <= maximum:
            raise ValueError(f"{attribute.name}: 1-{maximum} registers, not {len(value)}")
    return check


@attrs.frozen
class ReadRequest:
    """Read ``count`` holding (0x03) or input (0x04) registers from ``address``."""

    function: Function = attrs.field(converter=Function, validator=_read_function)
    address: int = attrs.field(validator=_u16)
    count: int = attrs.field(validator=_count(MAX_READ_COUNT))


@attrs.frozen
class ReadResponse:
    """The values a read asked for; the reply does not repeat the address."""

    function: Function = attrs.field(converter=Function, validator=_read_function)
    values: tuple[int, ...] = attrs.field(
        converter=tuple, validator=[_registers, _length(MAX_READ_COUNT)])


@attrs.frozen
class WriteSingle:
    """Write one holding register (0x06); the inverter answers with the same PDU."""

    address: int = attrs.field(validator=_u16)
    value: int = attrs.field(validator=_u16)

    function = Function.WRITE_SINGLE


@attrs.frozen
class WriteMultipleRequest:
    """Write consecutive holding registers from ``address`` (0x10)."""

    address: int = attrs.field(validator=_u16)
    values: tuple[int, ...] = attrs.field(
        converter=tuple, validator=[_registers, _length(MAX_WRITE_COUNT)])

    function = Function.WRITE_MULTIPLE


@attrs.frozen
class WriteMultipleResponse:
    """The acknowledgement of a multiple write: where, and how many registers."""

    address: int = attrs.field(validator=_u16)
    count: int = attrs.field(validator=_count(MAX_WRITE_COUNT))

    function = Function.WRITE_MULTIPLE


@attrs.frozen
class ExceptionResponse:
    """The inverter refused ``function`` with ``code`` (2: illegal address, 3: illegal value)."""

    function: int = attrs.field()
    code: int = attrs.field()

    @function.validator
    def _check_function(self, attribute, value):
        if not isinstance(value, int) or not 1 <= value < EXCEPTION_FLAG:
            raise ValueError(f"function must be 1-127: {value!r}")

    @code.validator
    def _check_code(self, attribute, value):
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise ValueError(f"code must be 0-255: {value!r}")


Request = ReadRequest | WriteSingle | WriteMultipleRequest
Response = ReadResponse | WriteSingle | WriteMultipleResponse | ExceptionResponse

_ADDRESS_AND_WORD = struct.Struct(">BHH")
_WORDS: dict[int, struct.Struct] = {}


def _words(count: int) -> struct.Struct:
    return _WORDS.get(count) or _WORDS.setdefault(count, struct.Struct(f">{count}H"))


def encode(pdu: Request | Response) -> bytes:
    """The bytes of ``pdu``, function code first."""
    kind = type(pdu)
    if kind is ReadRequest:
        return _ADDRESS_AND_WORD.pack(pdu.function, pdu.address, pdu.count)
    if kind is ReadResponse:
        count = len(pdu.values)
        return bytes((pdu.function, 2 * count)) + _words(count).pack(*pdu.values)
    if kind is WriteSingle:
        return _ADDRESS_AND_WORD.pack(pdu.function, pdu.address, pdu.value)
    if kind is WriteMultipleRequest:
        count = len(pdu.values)
        return (_ADDRESS_AND_WORD.pack(pdu.function, pdu.address, count)
                + bytes((2 * count,)) + _words(count).pack(*pdu.values))
    if kind is WriteMultipleResponse:
        return _ADDRESS_AND_WORD.pack(pdu.function, pdu.address, pdu.count)
    if kind is ExceptionResponse:
        return bytes((pdu.function | EXCEPTION_FLAG, pdu.code))
    raise TypeError(f"not a Modbus PDU: {pdu!r}")


def _fixed(data: bytes, length: int, what: str) -> tuple[int, int]:
    """The address and word of a fixed five-byte PDU."""
    if len(data) != length:
        raise ModbusError(f"{what}: {len(data)} bytes, not {length}")
    _, address, word = _ADDRESS_AND_WORD.unpack(data)
    return address, word


def _built(cls, *args):
    """``cls(*args)``, with a value out of range reported as ModbusError."""
    try:
        return cls(*args)
    except ValueError as error:
        raise ModbusError(str(error)) from None


def decode_request(data: bytes) -> Request:
    """A request PDU (what a server receives); ModbusError if it is none of the four."""
    if not data:
        raise ModbusError("empty PDU")
    function = data[0]
    if function in READS:
        address, count = _fixed(data, 5, "read request")
        return _built(ReadRequest, function, address, count)
    if function == Function.WRITE_SINGLE:
        return _built(WriteSingle, *_fixed(data, 5, "write request"))
    if function == Function.WRITE_MULTIPLE:
        if len(data) < 6:
            raise ModbusError(f"write multiple request: {len(data)} bytes, too short")
        address, count = _fixed(data[:5], 5, "write multiple request")
        if data[5] != 2 * count or len(data) != 6 + 2 * count:
            raise ModbusError(
                f"write multiple request: byte count {data[5]} for {count} registers")
        return _built(WriteMultipleRequest, address, _words(count).unpack_from(data, 6))
    raise ModbusError(f"unknown function {function}")


def decode_response(data: bytes) -> Response:
    """A response PDU (what a client receives); ModbusError if it is none of the four."""
    if not data:
        raise ModbusError("empty PDU")
    function = data[0]
    if function & EXCEPTION_FLAG:
        if len(data) != 2:
            raise ModbusError(f"exception response: {len(data)} bytes, not 2")
        return _built(ExceptionResponse, function & ~EXCEPTION_FLAG, data[1])
    if function in READS:
        if len(data) < 2 or data[1] != len(data) - 2 or data[1] % 2 or not data[1]:
            raise ModbusError(f"read response: byte count does not fit {len(data)} bytes")
        return _built(ReadResponse, function, _words(data[1] // 2).unpack_from(data, 2))
    if function == Function.WRITE_SINGLE:
        return _built(WriteSingle, *_fixed(data, 5, "write response"))
    if function == Function.WRITE_MULTIPLE:
        return _built(WriteMultipleResponse, *_fixed(data, 5, "write multiple response"))
    raise ModbusError(f"unknown function {function}")


def answers(request: Request, response: Response) -> bool:
    """Is ``response`` the answer to ``request``?

    RTU carries no transaction number: a late reply to an earlier request, or
    a reply meant for another master on the bus, must not answer this one.
    A read's reply must have the count asked for, a write's echo the same
    address and value (or count).
    """
    kind = type(response)
    if kind is ExceptionResponse:
        return response.function == request.function
    if kind is ReadResponse:
        return (type(request) is ReadRequest and response.function == request.function
                and len(response.values) == request.count)
    if kind is WriteSingle:
        return response == request
    if kind is WriteMultipleResponse:
        return (type(request) is WriteMultipleRequest and response.address == request.address
                and response.count == len(request.values))
    return False
