"""The simulator's logging: its own level filter and frames as one-line summaries.

twistd prints debug events by default, and per-frame byte dumps are too much
for a demo or a benchmark: the simulator logs through ``observer``, whose
level ``set_verbose`` sets.
"""

from __future__ import annotations

import attrs
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

from octolux.lxp.describe import describe

log_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
observer = FilteringLogObserver(globalLogPublisher, [log_levels])


def set_verbose(verbose: bool) -> None:
    """Log every frame's bytes (debug) if ``verbose``; else connections, requests, changes."""
    log_levels.setLogLevelForNamespace("simulator", LogLevel.debug if verbose else LogLevel.info)


@attrs.frozen
class Hex:
    """Bytes rendered as hex only if a log observer actually formats the event."""

    data: bytes

    def __format__(self, spec: str) -> str:
        return self.data.hex(" ")


# describe() keys a log line leaves out: the serials, protocol and address byte (the
# same on every line of a dongle), the copies of the values by register and by name,
# and the exception code (its name is shown).
_NOT_SUMMARISED = frozenset(
    {"kind", "datalog", "inverter", "protocol", "address", "registers", "inputs",
     "exception_code"}
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
class Summary:
    """``summarise(frame)``, worked out only if a log observer actually formats the event."""

    frame: object

    def __format__(self, spec: str) -> str:
        return summarise(self.frame)
