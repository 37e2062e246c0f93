"""The MQTT contract without MQTT: topic names, payload parsing and the command table.

Pure: nothing here does I/O (``sync_time`` reads the local clock when it
runs). ``Topics`` is the only place a topic string is built; ``COMMANDS`` maps
each ``cmd/<name>`` to how its payload is read and what it asks of the
inverter: MQ.md's commands, the original tool's extra ones, and one for every
writable setting of ``octolux.device.settings.SETTINGS``.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from twisted.internet.defer import fail

from octolux.config.words import TRUE_WORDS
from octolux.device.requests import CommandFailed
from octolux.device.settings import (
    SETTINGS,
    SLOT_OFF,
    Setting,
    check_register_write,
    model_of,
    parse_clock,
    parse_time,
    parse_time_slot,
)
from octolux.lxp import holding, inputs

MAX_PAYLOAD = 64  # bytes; no valid payload comes near this


class PayloadError(ValueError):
    """A command payload that must not reach the inverter; the message says why."""


@contextlib.contextmanager
def _payload_errors() -> Iterator[None]:
    """The settings' checks raise ValueError; for a payload that is a PayloadError, same words."""
    try:
        yield
    except ValueError as error:
        raise PayloadError(str(error)) from None


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

    ``run(inverter, value)`` returns the inverter request's Deferred. A command
    with an ``argument`` takes one more topic level (``cmd/set_hold/<register>``)
    and is parsed with ``parse(payload, argument, any_register=...)``.
    """

    name: str
    parse: Callable[..., Any]
    run: Callable[[Any, Any], Any]
    description: str
    payload: str  # what the payload is, for docs/mqtt.md
    argument: str | None = None  # what the extra topic level is, if the command has one


def _set_bit(register: int, bit: int) -> Callable[[Any, bool], Any]:
    return lambda inverter, on: inverter.set_bit(register, bit, on)


def _write(register: int) -> Callable[[Any, int], Any]:
    return lambda inverter, value: inverter.write_single(register, value)


def _read_hold(inverter: Any, register: int) -> Any:
    return inverter.read_hold(register)


def _read_input(inverter: Any, block: int) -> Any:
    span = inputs.block_range(block)
    return inverter.read_input(span.start, len(span))


# -- the commands of the settings table -------------------------------------------


def _setting_command(setting: Setting) -> Command:
    """The command that sets ``setting``, with the payload it takes.

    The command of a setting some models only have fails on the others (the
    model as the inverter's holding registers name it), with nothing written.
    """
    command = _command_of(setting)
    feature = setting.feature
    if feature is None:
        return command
    run = command.run

    def on_models_with_it(inverter: Any, value: Any) -> Any:
        model = model_of(inverter.registers)
        if not model.has(feature):
            return fail(CommandFailed(f"{setting.name} is not a setting of this model"
                                      f" ({model.name}: no {feature})"))
        return run(inverter, value)

    return attrs.evolve(command, run=on_models_with_it)


def _command_of(setting: Setting) -> Command:
    """The command that sets ``setting``, with the payload it takes (any model)."""
    kind = setting.kind
    register = setting.registers[0]
    description = f"{setting.description} ({setting.where})"
    if kind == "bit":
        return Command(setting.name, parse_bool, _set_bit(register, setting.bit),
                       description, "boolean")
    if kind in ("percent", "number"):
        read = parse_percent if kind == "percent" else _parse_signed

        def parse_number(payload: bytes) -> int:
            value = read(payload)
            with _payload_errors():
                setting.check(value)
            return setting.raw(value)

        unit = f" {setting.unit}" if setting.unit and kind == "number" else ""
        return Command(setting.name, parse_number, _write(register), description,
                       f"integer {setting.minimum} to {setting.maximum}{unit}")
    if kind == "time_slot":
        start, end = setting.registers

        def write_slot(inverter: Any, slot: tuple[datetime.time, datetime.time]) -> Any:
            values = (holding.encode_time(slot[0]), holding.encode_time(slot[1]))
            return inverter.write_singles(start, values)

        return Command(setting.name, parse_time_slot_payload, write_slot, description,
                       f"`HH:MM-HH:MM` (`{SLOT_OFF}`: off)")
    if kind == "time":

        def write_time(inverter: Any, time: datetime.time) -> Any:
            return inverter.write_single(register, holding.encode_time(time))

        return Command(setting.name, parse_time_payload, write_time, description, "`HH:MM`")
    # the clock
    return Command(setting.name, parse_clock_payload, _set_clock, description,
                   "`YYYY-MM-DDTHH:MM:SS`, local time")


def _parse_signed(payload: bytes) -> int:
    text = _text(payload)
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 6:
        raise PayloadError(f"not a whole number: {text!r}")
    return int(text)


def parse_time_slot_payload(payload: bytes) -> tuple[datetime.time, datetime.time]:
    """A time slot ``HH:MM-HH:MM``: (start, end)."""
    with _payload_errors():
        return parse_time_slot(_text(payload))


def parse_time_payload(payload: bytes) -> datetime.time:
    """One end of a time slot, ``HH:MM``."""
    with _payload_errors():
        return parse_time(_text(payload))


def parse_clock_payload(payload: bytes) -> datetime.datetime:
    """A local date and time ``YYYY-MM-DDTHH:MM:SS`` for the inverter's clock."""
    with _payload_errors():
        return parse_clock(_text(payload))


def _set_clock(inverter: Any, moment: datetime.datetime) -> Any:
    return inverter.write_multi(holding.CLOCK, holding.encode_clock(moment))


# -- commands of their own ----------------------------------------------------------------


def parse_now(payload: bytes) -> str:
    """``now``, the one payload ``cmd/sync_time`` takes."""
    text = _text(payload)
    if text.lower() != "now":
        raise PayloadError(f"sync_time takes the payload 'now': {text!r}")
    return "now"


def _sync_time(inverter: Any, _now: str) -> Any:
    # The bridge's local time when the command runs: the inverter keeps local time.
    return _set_clock(inverter, datetime.datetime.now())


def parse_anything(payload: bytes) -> str:
    """Any non-empty text (``cmd/refresh``)."""
    return _text(payload)


def _refresh(inverter: Any, _anything: str) -> Any:
    return inverter.refresh()


def parse_set_hold(payload: bytes, argument: str, *, any_register: bool = False) -> tuple[int, int]:
    """(register, value) of ``cmd/set_hold/<register>``: a register known to be writable.

    Any register when ``any_register`` (``[lxp] set_hold_any_register = yes``).
    """
    if not (argument.isascii() and argument.isdigit()) or int(argument) > 0xFFFF:
        raise PayloadError(f"not a register number: {argument!r}")
    register = int(argument)
    value = _parse_int(payload, 0, 0xFFFF, "value")
    with _payload_errors():
        check_register_write(register, value, any_register=any_register)
    return register, value


def _set_hold(inverter: Any, register_value: tuple[int, int]) -> Any:
    return inverter.write_single(*register_value)


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        *(_setting_command(setting) for setting in SETTINGS.values() if setting.writable),
        Command("set_hold", parse_set_hold, _set_hold,
                "write one holding register: any register known to be writable, with its"
                " range (every register with `[lxp] set_hold_any_register = yes`); its value"
                " comes out on hold/<register>",
                "integer 0-65535", argument="register"),
        Command("sync_time", parse_now, _sync_time,
                "set the inverter's clock to the bridge's local time (registers 12-14, one"
                " write)", "`now`"),
        Command("read_hold", parse_register, _read_hold,
                "read one holding register; its value comes out on hold/<register>",
                "register number"),
        Command("read_input", parse_block, _read_input,
                "read one input block; it comes out on inputs/<block>", "block number 1-6"),
        Command("refresh", parse_anything, _refresh,
                "read every holding register (0-239) and input blocks 1-3 again (and 4-6"
                " where the model has them); each comes out on hold/<register>,"
                " inputs/<block> and settings", "any text"),
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

    @property
    def connection(self) -> str:
        """``online``/``offline``: this inverter's datalogger link, retained."""
        return f"{self.base}/connection"

    def inputs(self, block: int) -> str:
        """Input block ``block`` as JSON."""
        return f"{self.base}/inputs/{block}"

    def hold(self, register: int) -> str:
        """The value of one holding register (retained)."""
        return f"{self.base}/hold/{register}"

    def battery(self, serial: str) -> str:
        """One battery module's data as JSON (retained), by its serial number.

        MQTT's wildcards and level separator in a serial become ``_``.
        """
        safe = serial.translate({ord(c): "_" for c in "+#/"})
        return f"{self.base}/battery/{safe}"

    @property
    def settings(self) -> str:
        """Every named setting as one JSON object (retained)."""
        return f"{self.base}/settings"

    @property
    def plan(self) -> str:
        """The battery automation's plan as JSON (retained)."""
        return f"{self.base}/plan"

    def command(self, name: str) -> str:
        """Where command ``name`` is received."""
        return f"{self.base}/cmd/{name}"

    @property
    def commands(self) -> str:
        """The subscription filter covering every command (``set_hold/<register>`` included)."""
        return self.command("#")

    def result(self, name: str) -> str:
        """``OK``/``FAIL`` for command ``name``."""
        return f"{self.base}/result/{name}"

    def command_name(self, topic: str) -> str | None:
        """``name`` for a topic ``<base>/cmd/<name>``, None for any other topic.

        ``name`` may have levels of its own (``set_hold/21``); never an empty one.
        """
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head):]
        if not name or "" in name.split("/"):
            return None
        return name


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
