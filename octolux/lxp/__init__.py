"""The LXP wire protocol, written once for the bridge and the simulator alike.

Pure Python: no Twisted, no MQTT, no I/O.

- ``frames``: the frame classes, ``build`` and ``parse`` (in a ``Direction``)
- ``framer``: a TCP stream -> whole frames, resynchronising on garbage
- ``inputs``: input registers -> the named values published on MQTT
- ``holding``: holding register names, bit fields, clock and time slots,
  which registers a client may write and with what
- ``models``: what registers 7-8 and 19 say the inverter is, and what it has
- ``batteries``: per-battery data, input registers 5002-5121
- ``crc``: CRC-16/MODBUS
"""

from octolux.lxp.framer import BadFrame, FrameDecoder
from octolux.lxp.frames import (
    DeviceFunction,
    Direction,
    ExceptionCode,
    ExceptionReply,
    Frame,
    FrameError,
    Heartbeat,
    ReadParamReply,
    ReadParamRequest,
    ReadReply,
    ReadRequest,
    TcpFunction,
    UnknownFrame,
    WriteMultiReply,
    WriteMultiRequest,
    WriteParamReply,
    WriteParamRequest,
    WriteSingleReply,
    WriteSingleRequest,
    build,
    check_serial,
    param_value,
    parse,
)

__all__ = [
    "BadFrame",
    "DeviceFunction",
    "Direction",
    "ExceptionCode",
    "ExceptionReply",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Heartbeat",
    "ReadParamReply",
    "ReadParamRequest",
    "ReadReply",
    "ReadRequest",
    "TcpFunction",
    "UnknownFrame",
    "WriteMultiReply",
    "WriteMultiRequest",
    "WriteParamReply",
    "WriteParamRequest",
    "WriteSingleReply",
    "WriteSingleRequest",
    "build",
    "check_serial",
    "param_value",
    "parse",
]
