"""A frame as a plain JSON-ready dict: what the decode tool prints, and what logs show."""

from __future__ import annotations

from typing import Any

import attrs

from octolux.lxp.frames import (
    EXCEPTION_FLAG,
    TRANSLATED_FRAMES,
    ExceptionReply,
    Frame,
    ReadReply,
    WriteMultiRequest,
    WriteSingleReply,
    WriteSingleRequest,
)
from octolux.lxp.inputs import decode_inputs

_REGISTER_VALUES = (ReadReply, WriteMultiRequest, WriteSingleRequest, WriteSingleReply)


def describe(frame: Frame) -> dict[str, Any]:
    """Every field of ``frame`` plus, where it applies, raw registers and named inputs."""
    described: dict[str, Any] = {"kind": type(frame).__name__}
    for name, value in attrs.asdict(frame, recurse=False).items():
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, tuple):
            value = list(value)
        described["device_function" if name == "function" else name] = value
    described["tcp_function"] = int(frame.tcp_function)
    if isinstance(frame, TRANSLATED_FRAMES):
        described["device_function"] = int(frame.function)
    if isinstance(frame, ExceptionReply):
        # As on the wire: the refused function with 0x80 set.
        described["device_function"] = frame.function | EXCEPTION_FLAG
        described["exception_code"] = described.pop("code")
        described["exception"] = frame.reason
    if isinstance(frame, _REGISTER_VALUES):
        values = frame.values if hasattr(frame, "values") else (frame.value,)
        described["registers"] = {
            str(number): value for number, value in enumerate(values, frame.register)
        }
    if isinstance(frame, ReadReply) and frame.function == 4:
        described["inputs"] = decode_inputs(frame.register, frame.values)
    return described
