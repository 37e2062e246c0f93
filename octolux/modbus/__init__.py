"""Modbus, the inverter's own language on its RS485 port, written once: pure, no I/O.

The same register numbers as the dongle carries (``octolux.lxp.inputs`` and
``octolux.lxp.holding`` decode the values), but plain Modbus framing, with
big-endian registers on the wire:

- ``pdu``: the four functions the inverter knows (read holding 0x03, read
  input 0x04, write single 0x06, write multiple 0x10) and exception replies
- ``framing``: Modbus TCP (MBAP header) and RTU (unit, PDU, CRC-16) frames,
  and the stream decoders that find them in bytes, skipping garbage

May import only ``octolux.lxp`` (for its CRC-16/MODBUS and ``BadFrame``).
"""

from octolux.modbus.framing import (
    Message,
    RtuDecoder,
    TcpDecoder,
    encode_rtu,
    encode_tcp,
    silence_seconds,
)
from octolux.modbus.pdu import (
    MAX_READ_COUNT,
    MAX_WRITE_COUNT,
    ExceptionResponse,
    Function,
    ModbusError,
    ReadRequest,
    ReadResponse,
    WriteMultipleRequest,
    WriteMultipleResponse,
    WriteSingle,
    answers,
    decode_request,
    decode_response,
    encode,
)

__all__ = [
    "MAX_READ_COUNT",
    "MAX_WRITE_COUNT",
    "ExceptionResponse",
    "Function",
    "Message",
    "ModbusError",
    "ReadRequest",
    "ReadResponse",
    "RtuDecoder",
    "TcpDecoder",
    "WriteMultipleRequest",
    "WriteMultipleResponse",
    "WriteSingle",
    "answers",
    "decode_request",
    "decode_response",
    "encode",
    "encode_rtu",
    "encode_tcp",
    "silence_seconds",
]
