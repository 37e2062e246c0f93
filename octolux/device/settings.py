"""Every named setting of the inverter: one table for commands, the settings JSON and the docs.

Pure: nothing here does I/O. ``SETTINGS`` says, for each setting, which
holding registers (and which bit) hold it, its range and unit, and whether a
command may change it. ``decode_settings`` turns register values into the
``settings`` JSON object; the payload parsers (time slots, the clock) live
here too, beside their formatters, so that what ``cmd/<name>`` accepts and
what ``settings.<name>`` shows are the same text.

The register numbers, bit names and the time and clock codecs come from
``octolux.lxp.holding``: this module only names and describes them.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping

import attrs

from octolux.lxp import holding, models
from octolux.lxp.inputs import from_signed16, to_signed16

KINDS = ("bit", "percent", "number", "time_slot", "time", "clock")

# A time slot that starts and ends at midnight is off (the vendor's app shows it so).
SLOT_OFF = "00:00-00:00"
_TIME_SLOT = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})\Z")
_TIME = re.compile(r"([0-9]{2}):([0-9]{2})\Z")
_CLOCK = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}\Z")


def _kind(instance, attribute, value):
    if value not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}: {value!r}")


@attrs.frozen
class Setting:
    """One named setting: where it lives, what it may hold and what it means.

    ``registers`` are holding registers: one for a bit, a percent, a number or
    a time (one end of a time slot), (start, end) for a time slot, (12, 13, 14)
    for the clock. ``minimum`` and ``maximum`` bound percents and numbers (as
    the inverter means them: signed where ``signed``). ``writable`` settings
    are also commands of the same name. A setting with a ``feature`` exists on
    the models that have that part only (``octolux.lxp.models``).
    """

    name: str
    kind: str = attrs.field(validator=_kind)
    registers: tuple[int, ...]
    description: str
    bit: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""
    writable: bool = True
    signed: bool = False
    feature: str | None = None

    def decode(self, registers: Mapping[int, int]) -> bool | int | str | None:
        """This setting's value from register values (all of ``self.registers`` present).

        None when the registers hold something that is not a valid value (a
        time slot at 25:00, a clock in month 0): a fresh inverter can.
        """
        values = [registers[register] for register in self.registers]
        kind = self.kind
        if kind == "bit":
            return bool(values[0] >> self.bit & 1)
        if kind in ("percent", "number"):
            return to_signed16(values[0]) if self.signed else values[0]
        try:
            if kind == "time_slot":
                return format_time_slot(holding.decode_time(values[0]),
                                        holding.decode_time(values[1]))
            if kind == "time":
                return format_time(holding.decode_time(values[0]))
            return format_clock(holding.decode_clock(*values))
        except ValueError:
            return None

    @property
    def where(self) -> str:
        """Its registers in words: ``register 21 bit 7``, ``registers 68, 69``."""
        if self.bit is not None:
            return f"register {self.registers[0]} bit {self.bit}"
        if len(self.registers) == 1:
            signed = ", signed" if self.signed else ""
            return f"register {self.registers[0]}{signed}"
        return "registers " + ", ".join(str(register) for register in self.registers)

    def check(self, value: int) -> None:
        """ValueError unless ``value`` is in this percent or number setting's range."""
        if not self.minimum <= value <= self.maximum:
            unit = f" {self.unit}" if self.unit and self.unit != "%" else ""
            raise ValueError(f"{self.name} must be {self.minimum}-{self.maximum}{unit}: {value}")

    def raw(self, value: int) -> int:
        """The register value of a percent or number (two's complement when signed)."""
        return from_signed16(value) if self.signed else value


# -- the table ------------------------------------------------------------------

def _bit(register: int, name: str, description: str, *, writable: bool = True) -> Setting:
    return Setting(name, "bit", (register,), description, bit=holding.BITS[register][name],
                   writable=writable)


def _grid_protection(name: str, what: str) -> Setting:
    # Grid-code settings an installer makes; not a command (set_hold can, if allowed).
    return _bit(holding.FUNCTION_BITS, name, f"{what}; read only here", writable=False)


def _limited(name: str, kind: str, register: int, description: str, unit: str) -> Setting:
    # The range and the sign come from the register map, as for cmd/set_hold.
    low, high = holding.LIMITS[register]
    return Setting(name, kind, (register,), description, minimum=low, maximum=high, unit=unit,
                   signed=register in holding.SIGNED)


def _percent(name: str, register: int, description: str) -> Setting:
    return _limited(name, "percent", register, description, "%")


def _slot(schedule: str, number: int, what: str, feature: str | None = None) -> Setting:
    start, end = holding.TIME_SLOTS[schedule][number - 1]
    return Setting(f"{schedule}_slot_{number}", "time_slot", (start, end),
                   f"{what}, time slot {number}", feature=feature)


def _of(feature: str, setting: Setting) -> Setting:
    """``setting`` on the models with ``feature`` only."""
    return attrs.evolve(setting, feature=feature)


def _slot_ends(schedule: str, number: int, what: str) -> tuple[Setting, Setting]:
    # Each end of a slot on its own, for whoever sets one at a time (Home
    # Assistant's start and end selects, which Predbat drives).
    start, end = holding.TIME_SLOTS[schedule][number - 1]
    return (Setting(f"{schedule}_slot_{number}_start", "time", (start,),
                    f"{what}, time slot {number}, start (written alone)"),
            Setting(f"{schedule}_slot_{number}_end", "time", (end,),
                    f"{what}, time slot {number}, end (written alone)"))


_SETTINGS: tuple[Setting, ...] = (
    # -- register 21, the function bits ---------------------------------------
    _bit(holding.FUNCTION_BITS, "eps", "EPS (backup output) when the grid fails"),
    _grid_protection("ovf_load_derate", "over-frequency load derating"),
    _grid_protection("drms", "DRMS (demand response) input"),
    _grid_protection("lvrt", "low-voltage ride-through"),
    _grid_protection("anti_island", "anti-islanding protection"),
    _grid_protection("neutral_detect", "neutral detection"),
    _grid_protection("grid_on_power_soft_start", "soft start of grid-on power"),
    _bit(holding.FUNCTION_BITS, "ac_charge", "AC charge: charge the battery from the grid"),
    _bit(holding.FUNCTION_BITS, "seamless_eps_switching", "seamless switching to EPS"),
    _bit(holding.FUNCTION_BITS, "normal_or_standby",
         "inverter on (true) or in standby (false)"),
    _bit(holding.FUNCTION_BITS, "forced_discharge",
         "forced discharge: export from the battery in its time slots"),
    _bit(holding.FUNCTION_BITS, "charge_priority",
         "charge priority: PV charges the battery before the house in its time slots"),
    _grid_protection("iso", "insulation (ISO) check"),
    _grid_protection("gfci", "ground-fault (GFCI) check"),
    _grid_protection("dci", "DC injection (DCI) check"),
    _bit(holding.FUNCTION_BITS, "feed_in_grid", "export to the grid allowed"),
    # -- register 110, system bits --------------------------------------------
    _bit(holding.SYSTEM_BITS, "pv_grid_off", "PV keeps running when the grid is off"),
    _bit(holding.SYSTEM_BITS, "fast_zero_export", "fast zero export"),
    _bit(holding.SYSTEM_BITS, "micro_grid", "micro-grid mode"),
    _bit(holding.SYSTEM_BITS, "charge_last",
         "charge last: PV serves the house and the grid before the battery"),
    # -- rates and state-of-charge limits ---------------------------------------
    _percent("charge_pct", holding.CHARGE_POWER_PERCENT, "Charge power rate"),
    _percent("discharge_pct", holding.DISCHARGE_POWER_PERCENT, "Discharge power rate"),
    _percent("ac_charge_pct", holding.AC_CHARGE_POWER_PERCENT, "AC (grid) charge power rate"),
    _percent("charge_amount_pct", holding.AC_CHARGE_SOC_LIMIT,
             "AC charge up to this state of charge"),
    _percent("charge_priority_pct", holding.CHARGE_PRIORITY_POWER_PERCENT,
             "Charge priority power rate"),
    _percent("charge_priority_soc", holding.CHARGE_PRIORITY_SOC_LIMIT,
             "Charge priority up to this state of charge"),
    _percent("forced_discharge_pct", holding.FORCED_DISCHARGE_POWER_PERCENT,
             "Forced discharge power rate"),
    _percent("forced_discharge_soc", holding.FORCED_DISCHARGE_SOC_LIMIT,
             "Forced discharge down to this state of charge"),
    _percent("discharge_cutoff_soc", holding.DISCHARGE_CUTOFF_SOC,
             "On grid, stop discharging at this state of charge"),
    _percent("eps_cutoff_soc", holding.EPS_DISCHARGE_CUTOFF_SOC,
             "Off grid (EPS), stop discharging at this state of charge"),
    _percent("ac_charge_start_soc", holding.AC_CHARGE_START_SOC,
             "AC charge starts below this state of charge"),
    _percent("ac_charge_end_soc", holding.AC_CHARGE_END_SOC,
             "AC charge ends at this state of charge"),
    _limited("ct_power_offset", "number", holding.CT_POWER_OFFSET,
             "CT power offset, added to the grid meter reading", "W"),
    _limited("charge_current_limit", "number", holding.CHARGE_CURRENT_LIMIT,
             "Battery charge current limit", "A"),
    _limited("discharge_current_limit", "number", holding.DISCHARGE_CURRENT_LIMIT,
             "Battery discharge current limit", "A"),
    # -- time slots -------------------------------------------------------------
    *(_slot("ac_charge", n, "AC charge") for n in (1, 2, 3)),
    *(_slot("charge_priority", n, "Charge priority") for n in (1, 2, 3)),
    *(_slot("forced_discharge", n, "Forced discharge") for n in (1, 2, 3)),
    *(setting for n in (1, 2, 3) for setting in _slot_ends("ac_charge", n, "AC charge")),
    *(setting for n in (1, 2, 3)
      for setting in _slot_ends("charge_priority", n, "Charge priority")),
    *(setting for n in (1, 2, 3)
      for setting in _slot_ends("forced_discharge", n, "Forced discharge")),
    # -- settings of some models (octolux.lxp.models.FEATURES) ------------------------
    _of("off_grid", _limited("output_priority", "number", holding.OUTPUT_PRIORITY,
                             "Output priority: 0 battery first, 1 PV first, 2 AC first", "")),
    _of("off_grid", _limited("battery_capacity", "number", holding.BATTERY_CAPACITY,
                             "Battery capacity, for a battery without BMS communication",
                             "Ah")),
    _of("off_grid", _limited("battery_nominal_voltage", "number",
                             holding.BATTERY_NOMINAL_VOLTAGE,
                             "Battery nominal voltage (480: 48.0 V)", "0.1 V")),
    *(_slot("ac_first", n, "AC first (the load from the grid)", "off_grid") for n in (1, 2, 3)),
    _of("generator", _limited("gen_charge_start_voltage", "number",
                              holding.GEN_CHARGE_START_VOLTAGE,
                              "Generator charging starts below this battery voltage",
                              "0.1 V")),
    _of("generator", _limited("gen_charge_end_voltage", "number",
                              holding.GEN_CHARGE_END_VOLTAGE,
                              "Generator charging ends at this battery voltage", "0.1 V")),
    _of("generator", _percent("gen_charge_start_soc", holding.GEN_CHARGE_START_SOC,
                              "Generator charging starts below this state of charge")),
    _of("generator", _percent("gen_charge_end_soc", holding.GEN_CHARGE_END_SOC,
                              "Generator charging ends at this state of charge")),
    _of("generator", _limited("gen_charge_current", "number", holding.GEN_CHARGE_CURRENT,
                              "Generator charge current limit", "A")),
    _of("peak_shaving", _bit(holding.FUNCTION_BITS_2, "grid_peak_shaving",
                             "grid peak shaving: the battery covers imports above the limit")),
    _of("peak_shaving", _limited("peak_shaving_power", "number", holding.PEAK_SHAVING_POWER,
                                 "Grid peak shaving limit", "0.1 kW")),
    _of("peak_shaving", _percent("peak_shaving_soc", holding.PEAK_SHAVING_SOC,
                                 "Grid peak shaving down to this state of charge")),
    *(_slot("peak_shaving", n, "Grid peak shaving", "peak_shaving") for n in (1, 2)),
    _of("quick_charge", _bit(holding.FUNCTION_BITS_4, "quick_charge",
                             "quick charge: charge the battery now, for quick_charge_minutes")),
    _of("quick_charge", _limited("quick_charge_minutes", "number", holding.QUICK_CHARGE_MINUTES,
                                 "Quick charge duration", "min")),
    # -- the clock ----------------------------------------------------------------
    Setting("clock", "clock", (holding.CLOCK, holding.CLOCK + 1, holding.CLOCK + 2),
            "The inverter's clock, local time, written in one go"),
)

SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _SETTINGS}

# Every holding register a setting is read from: a change to one of these
# changes the ``settings`` JSON.
SETTING_REGISTERS: frozenset[int] = frozenset(
    register for setting in _SETTINGS for register in setting.registers
)


def model_of(registers: Mapping[int, int]) -> models.Model:
    """The model the holding registers name, or ``COMMON`` until (or unless) they do."""
    return models.identify(registers) if models.known(registers) else models.COMMON


def decode_settings(registers: Mapping[int, int]) -> dict[str, bool | int | str | None]:
    """Every setting whose registers are all in ``registers``, by name, in table order.

    Only the settings of the model the registers name (one with a ``feature``
    exists on the models that have that part).
    """
    model = model_of(registers)
    return {
        name: setting.decode(registers)
        for name, setting in SETTINGS.items()
        if model.has(setting.feature)
        and all(register in registers for register in setting.registers)
    }


# -- time slots and the clock as text ------------------------------------------------


def format_time_slot(start: datetime.time, end: datetime.time) -> str:
    """``HH:MM-HH:MM``, the form ``settings`` shows and ``cmd/<schedule>_slot_<n>`` takes."""
    return f"{format_time(start)}-{format_time(end)}"


def parse_time_slot(text: str) -> tuple[datetime.time, datetime.time]:
    """(start, end) from ``HH:MM-HH:MM`` (two digits each, 00:00-23:59); ValueError otherwise."""
    match = _TIME_SLOT.match(text)
    if match is None:
        raise ValueError(f"not a time slot HH:MM-HH:MM: {text!r}")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    return _time_of_day(start_hour, start_minute), _time_of_day(end_hour, end_minute)


def format_time(time: datetime.time) -> str:
    """``HH:MM``: one end of a time slot, as ``settings`` shows it and its command takes it."""
    return f"{time:%H:%M}"


def parse_time(text: str) -> datetime.time:
    """A time of day ``HH:MM`` (two digits each, 00:00-23:59); ValueError otherwise."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"not a time HH:MM: {text!r}")
    hour, minute = (int(part) for part in match.groups())
    return _time_of_day(hour, minute)


def _time_of_day(hour: int, minute: int) -> datetime.time:
    if hour > 23 or minute > 59:
        raise ValueError(f"not a time of day: {hour:02}:{minute:02}")
    return datetime.time(hour, minute)


def format_clock(moment: datetime.datetime) -> str:
    """ISO 8601 without a zone (the inverter keeps local time): ``2026-11-30T12:34:56``."""
    return moment.replace(microsecond=0).isoformat()


def parse_clock(text: str) -> datetime.datetime:
    """A local time ``YYYY-MM-DDTHH:MM:SS`` (or a space for the T) the inverter can hold."""
    if not _CLOCK.match(text):
        raise ValueError(f"not a date and time YYYY-MM-DDTHH:MM:SS: {text!r}")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a valid date and time: {text!r}") from None
    holding.encode_clock(moment)  # years 2000-2255 only
    return moment


# -- registers that cmd/set_hold may write -----------------------------------------------


# The rules live with the register map (``holding.SETTABLE``), shared with the
# simulator's inverter; this is the name the docs and commands read them by.
WRITABLE_REGISTERS: dict[int, holding.WriteRule] = holding.SETTABLE


def check_register_write(register: int, value: int, *, any_register: bool = False) -> None:
    """ValueError (saying why) unless ``cmd/set_hold`` may write ``value`` to ``register``.

    With ``any_register`` every register 0-65535 takes any value 0-65535: the
    inverter itself is then the only check.
    """
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"a register holds 0-65535: {value}")
    if any_register:
        return
    rule = WRITABLE_REGISTERS.get(register)
    if rule is None:
        raise ValueError(
            f"register {register} is not known to be writable (set_hold_any_register allows it)"
        )
    if not rule.accepts(value):
        raise ValueError(f"register {register} takes {rule.description}: {value}")
