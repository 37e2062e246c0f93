"""The MQTT contract without MQTT: topic names, payload parsing and the command table.

Pure: nothing here does I/O. ``Topics`` is the only place a topic string is
built; ``COMMANDS`` maps each ``cmd/<name>`` to how its payload is read and
what it asks of the inverter (MQ.md, plus the original tool's extra commands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from octolux.lxp import holding, inputs

# MQ.md: "true for any of 1, t, true, y, yes, on (case-insensitive); anything else is false".
TRUE_WORDS = frozenset({"1", "t", "true", "y", "yes", "on"})
# Their opposites, for config.ini, where anything else is a mistake rather than false.
FALSE_WORDS = frozenset({"0", "f", "false", "n", "no", "off"})
MAX_PAYLOAD = 64  # bytes; no valid payload comes near this


class PayloadError(ValueError):
    """A command payload that must not reach the inverter; the message says why."""


def _text(payload: bytes) -> str:
    """The payload as stripped text, or PayloadError for empty, binary or oversized payloads."""
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"payload too long ({len(payload)} bytes)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    text = text.strip()
    if not text:
        raise PayloadError("empty payload")
    if not text.isprintable():
        raise PayloadError("payload has control characters")
    return text


def parse_bool(payload: bytes) -> bool:
    """MQ.md's boolean: true for 1/t/true/y/yes/on (any case), false for any other text."""
    return _text(payload).lower() in TRUE_WORDS


def _parse_int(payload: bytes, low: int, high: int, what: str) -> int:
    text = _text(payload)
    # int() alone would also take '+5', '1_0' and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise PayloadError(f"not a whole number: {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise PayloadError(f"{what} must be {low}-{high}: {value}")
    return value


def parse_percent(payload: bytes) -> int:
    """An integer percentage, 0-100."""
    return _parse_int(payload, 0, 100, "percentage")


def parse_register(payload: bytes) -> int:
    """A holding register number, 0-65535."""
    return _parse_int(payload, 0, 0xFFFF, "register")


def parse_block(payload: bytes) -> int:
    """An input block number as in ``inputs/<n>``: 1-4."""
    return _parse_int(payload, min(inputs.BLOCKS), max(inputs.BLOCKS), "block")


@attrs.frozen
class Command:
    """One ``cmd/<name>``: how to read its payload and what to ask of the inverter.

    ``run(inverter, value)`` returns the inverter request's Deferred.
    """

    name: str
    parse: Callable[[bytes], Any]
    run: Callable[[Any, Any], Any]
    description: str


def _set_bit(register: int, bit: int) -> Callable[[Any, bool], Any]:
    return lambda inverter, on: inverter.set_bit(register, bit, on)


def _write(register: int) -> Callable[[Any, int], Any]:
    return lambda inverter, value: inverter.write_single(register, value)


def _read_hold(inverter: Any, register: int) -> Any:
    return inverter.read_hold(register)


def _read_input(inverter: Any, block: int) -> Any:
    span = inputs.block_range(block)
    return inverter.read_input(span.start, len(span))


_FUNCTION_BITS = holding.BITS[holding.FUNCTION_BITS]

COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command("ac_charge", parse_bool,
                _set_bit(holding.FUNCTION_BITS, _FUNCTION_BITS["ac_charge"]),
                "enable or disable AC charging (register 21 bit 7)"),
        Command("forced_discharge", parse_bool,
                _set_bit(holding.FUNCTION_BITS, _FUNCTION_BITS["forced_discharge"]),
                "enable or disable forced discharge (register 21 bit 10)"),
        Command("charge_priority", parse_bool,
                _set_bit(holding.FUNCTION_BITS, _FUNCTION_BITS["charge_priority"]),
                "enable or disable charge priority (register 21 bit 11)"),
        Command("charge_pct", parse_percent, _write(holding.CHARGE_POWER_PERCENT),
                "charge power rate, 0-100 % (register 64)"),
        Command("discharge_pct", parse_percent, _write(holding.DISCHARGE_POWER_PERCENT),
                "discharge power rate, 0-100 % (register 65)"),
        Command("charge_amount_pct", parse_percent, _write(holding.AC_CHARGE_SOC_LIMIT),
                "AC charge up to this state of charge, 0-100 % (register 67)"),
        Command("read_hold", parse_register, _read_hold,
                "read one holding register; its value comes out on hold/<register>"),
        Command("read_input", parse_block, _read_input,
                "read one input block; it comes out on inputs/<block>"),
    )
}


@attrs.frozen
class Topics:
    """Every topic string of one inverter, built from the prefix (and its name, if several)."""

    prefix: str = "octolux"
    inverter: str | None = None  # set only when the bridge serves more than one inverter

    @property
    def base(self) -> str:
        """The prefix of this inverter's topics."""
        return self.prefix if self.inverter is None else f"{self.prefix}/{self.inverter}"

    @property
    def status(self) -> str:
        """``online``/``offline`` of the bridge itself, retained (one per bridge)."""
        return f"{self.prefix}/status"

    def inputs(self, block: int) -> str:
        """Input block ``block`` as JSON."""
        return f"{self.base}/inputs/{block}"

    def hold(self, register: int) -> str:
        """The value of one holding register."""
        return f"{self.base}/hold/{register}"

    def command(self, name: str) -> str:
        """Where command ``name`` is received."""
        return f"{self.base}/cmd/{name}"

    @property
    def commands(self) -> str:
        """The subscription filter covering every command."""
        return self.command("+")

    def result(self, name: str) -> str:
        """``OK``/``FAIL`` for command ``name``."""
        return f"{self.base}/result/{name}"

    def command_name(self, topic: str) -> str | None:
        """``name`` for a topic ``<base>/cmd/<name>``, None for any other topic."""
        head = f"{self.base}/cmd/"
        if topic.startswith(head) and "/" not in topic[len(head):] and topic != head:
            return topic[len(head):]
        return None


def describe_payload(payload: bytes) -> str:
    """The payload for a log line, quoted: a short text repr, else a short bytes repr.

    Quoted so that a payload like ``50 -> OK`` cannot pass for the log line's own words.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text and text.isprintable() and len(text) <= MAX_PAYLOAD:
        return repr(text)
    shown = repr(payload[:MAX_PAYLOAD])
    return shown + ("..." if len(payload) > MAX_PAYLOAD else "")
