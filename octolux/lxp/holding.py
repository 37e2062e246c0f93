"""Holding registers: names, bit fields, signed values, time slots and the clock."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping

import attrs

from octolux.lxp.inputs import to_signed16
from octolux.lxp.models import firmware_code

# The registers this project reads or writes by name (PROTOCOL.md section 6).
CLOCK = 12  # 12-14, written together with a multi write
FUNCTION_BITS = 21
CHARGE_POWER_PERCENT = 64
DISCHARGE_POWER_PERCENT = 65
AC_CHARGE_POWER_PERCENT = 66
AC_CHARGE_SOC_LIMIT = 67
CHARGE_PRIORITY_POWER_PERCENT = 74
CHARGE_PRIORITY_SOC_LIMIT = 75
FORCED_DISCHARGE_POWER_PERCENT = 82
FORCED_DISCHARGE_SOC_LIMIT = 83
CHARGE_CURRENT_LIMIT = 101  # A
DISCHARGE_CURRENT_LIMIT = 102  # A
DISCHARGE_CUTOFF_SOC = 105
SYSTEM_BITS = 110
SYSTEM_ENABLE = 120  # bit 0 half-hour AC charge, bits 1-3 AC charge type, 4-5 discharge control
CT_POWER_OFFSET = 119
EPS_DISCHARGE_CUTOFF_SOC = 125
AC_CHARGE_START_SOC = 160
AC_CHARGE_END_SOC = 161
# Settings of some models only (``octolux.lxp.models`` says which have them), from
# LuxPower's Modbus protocol document (2025-06-14 edition, OwlBawl/Luxpower-Modbus-RTU).
OUTPUT_PRIORITY = 145  # off-grid models: 0 battery first, 1 PV first, 2 AC first
BATTERY_CAPACITY = 147  # Ah, a battery without BMS communication
BATTERY_NOMINAL_VOLTAGE = 148  # 0.1 V
FUNCTION_BITS_2 = 179  # bit 7: grid peak shaving
GEN_CHARGE_START_VOLTAGE = 194  # 0.1 V
GEN_CHARGE_END_VOLTAGE = 195  # 0.1 V
GEN_CHARGE_START_SOC = 196
GEN_CHARGE_END_SOC = 197
GEN_CHARGE_CURRENT = 198  # A
PEAK_SHAVING_POWER = 206  # 0.1 kW
PEAK_SHAVING_SOC = 207
FUNCTION_BITS_4 = 233  # bit 0: quick charge now
QUICK_CHARGE_MINUTES = 234

NAMES: dict[int, str] = {
    12: "clock_year_month",
    13: "clock_day_hour",
    14: "clock_minute_second",
    FUNCTION_BITS: "function_bits",
    CHARGE_POWER_PERCENT: "charge_power_percent",
    DISCHARGE_POWER_PERCENT: "discharge_power_percent",
    AC_CHARGE_POWER_PERCENT: "ac_charge_power_percent",
    AC_CHARGE_SOC_LIMIT: "ac_charge_soc_limit",
    **{68 + 2 * n: f"ac_charge_slot_{n + 1}_start" for n in range(3)},
    **{69 + 2 * n: f"ac_charge_slot_{n + 1}_end" for n in range(3)},
    CHARGE_PRIORITY_POWER_PERCENT: "charge_priority_power_percent",
    CHARGE_PRIORITY_SOC_LIMIT: "charge_priority_soc_limit",
    **{76 + 2 * n: f"charge_priority_slot_{n + 1}_start" for n in range(3)},
    **{77 + 2 * n: f"charge_priority_slot_{n + 1}_end" for n in range(3)},
    FORCED_DISCHARGE_POWER_PERCENT: "forced_discharge_power_percent",
    FORCED_DISCHARGE_SOC_LIMIT: "forced_discharge_soc_limit",
    **{84 + 2 * n: f"forced_discharge_slot_{n + 1}_start" for n in range(3)},
    **{85 + 2 * n: f"forced_discharge_slot_{n + 1}_end" for n in range(3)},
    CHARGE_CURRENT_LIMIT: "charge_current_limit",
    DISCHARGE_CURRENT_LIMIT: "discharge_current_limit",
    DISCHARGE_CUTOFF_SOC: "discharge_cutoff_soc",
    106: "lead_acid_charge_temp_high",
    107: "lead_acid_charge_temp_low",
    108: "lead_acid_discharge_temp_high",
    109: "lead_acid_discharge_temp_low",
    SYSTEM_BITS: "system_bits",
    CT_POWER_OFFSET: "ct_power_offset",
    EPS_DISCHARGE_CUTOFF_SOC: "eps_discharge_cutoff_soc",
    AC_CHARGE_START_SOC: "ac_charge_start_soc",
    AC_CHARGE_END_SOC: "ac_charge_end_soc",
    OUTPUT_PRIORITY: "output_priority",
    BATTERY_CAPACITY: "battery_capacity",
    BATTERY_NOMINAL_VOLTAGE: "battery_nominal_voltage",
    **{152 + 2 * n: f"ac_first_slot_{n + 1}_start" for n in range(3)},
    **{153 + 2 * n: f"ac_first_slot_{n + 1}_end" for n in range(3)},
    FUNCTION_BITS_2: "function_bits_2",
    GEN_CHARGE_START_VOLTAGE: "gen_charge_start_voltage",
    GEN_CHARGE_END_VOLTAGE: "gen_charge_end_voltage",
    GEN_CHARGE_START_SOC: "gen_charge_start_soc",
    GEN_CHARGE_END_SOC: "gen_charge_end_soc",
    GEN_CHARGE_CURRENT: "gen_charge_current",
    PEAK_SHAVING_POWER: "peak_shaving_power",
    PEAK_SHAVING_SOC: "peak_shaving_soc",
    **{209 + 2 * n: f"peak_shaving_slot_{n + 1}_start" for n in range(2)},
    **{210 + 2 * n: f"peak_shaving_slot_{n + 1}_end" for n in range(2)},
    FUNCTION_BITS_4: "function_bits_4",
    QUICK_CHARGE_MINUTES: "quick_charge_minutes",
}

# Registers holding a signed 16-bit value (temperatures in 0.1 degC, watts).
SIGNED: frozenset[int] = frozenset({106, 107, 108, 109, CT_POWER_OFFSET})

# Registers whose value is a percentage, 0-100.
PERCENT: frozenset[int] = frozenset({
    CHARGE_POWER_PERCENT, DISCHARGE_POWER_PERCENT, AC_CHARGE_POWER_PERCENT,
    AC_CHARGE_SOC_LIMIT, CHARGE_PRIORITY_POWER_PERCENT, CHARGE_PRIORITY_SOC_LIMIT,
    FORCED_DISCHARGE_POWER_PERCENT, FORCED_DISCHARGE_SOC_LIMIT, DISCHARGE_CUTOFF_SOC,
    EPS_DISCHARGE_CUTOFF_SOC, AC_CHARGE_START_SOC, AC_CHARGE_END_SOC,
    GEN_CHARGE_START_SOC, GEN_CHARGE_END_SOC, PEAK_SHAVING_SOC,
})

# The values the inverter accepts in its settable number registers, inclusive, as
# the inverter means them (signed registers in two's complement terms); it answers
# a write outside them with exception 3 (illegal value). From Luxpower's Modbus
# register document: the end-of-discharge SOC is 10-90 (an empty battery would
# stop the inverter), the AC charge start SOC 0-90; every other percentage 0-100.
LIMITS: dict[int, tuple[int, int]] = {
    **dict.fromkeys(PERCENT, (0, 100)),
    DISCHARGE_CUTOFF_SOC: (10, 90),
    EPS_DISCHARGE_CUTOFF_SOC: (0, 90),
    AC_CHARGE_START_SOC: (0, 90),
    **dict.fromkeys((106, 107, 108, 109), (-400, 800)),  # 0.1 degC: -40.0 .. 80.0
    CT_POWER_OFFSET: (-1000, 1000),  # W
    # Battery charge and discharge current limits in whole amps, 0-140: holding
    # registers 101 (ChargeRate) and 102 (DischgRate) of LuxPower's Modbus RTU
    # protocol (the vendor's document as published in OwlBawl/Luxpower-Modbus-RTU,
    # modbus_protocol_updated_on_2025.06.14.md).
    CHARGE_CURRENT_LIMIT: (0, 140),
    DISCHARGE_CURRENT_LIMIT: (0, 140),
    # The same document's ranges for the settings of some models only.
    OUTPUT_PRIORITY: (0, 2),
    BATTERY_CAPACITY: (0, 10000),
    BATTERY_NOMINAL_VOLTAGE: (400, 590),
    GEN_CHARGE_START_VOLTAGE: (384, 520),
    GEN_CHARGE_END_VOLTAGE: (480, 590),
    GEN_CHARGE_START_SOC: (0, 90),
    GEN_CHARGE_END_SOC: (20, 100),
    GEN_CHARGE_CURRENT: (0, 4000),
    PEAK_SHAVING_POWER: (0, 255),
    # QuickChgTime has no range in the document: at most a day of minutes.
    QUICK_CHARGE_MINUTES: (0, 1440),
}

# Time slots: (start register, end register) by schedule, slots 1-3.
TIME_SLOTS: dict[str, tuple[tuple[int, int], ...]] = {
    "ac_charge": ((68, 69), (70, 71), (72, 73)),
    "charge_priority": ((76, 77), (78, 79), (80, 81)),
    "forced_discharge": ((84, 85), (86, 87), (88, 89)),
    "ac_first": ((152, 153), (154, 155), (156, 157)),  # off-grid models
    "peak_shaving": ((209, 210), (211, 212)),
}

# Bit number -> name, for the registers that are bit fields.
BITS: dict[int, dict[str, int]] = {
    FUNCTION_BITS: {
        "eps": 0,
        "ovf_load_derate": 1,
        "drms": 2,
        "lvrt": 3,
        "anti_island": 4,
        "neutral_detect": 5,
        "grid_on_power_soft_start": 6,
        "ac_charge": 7,
        "seamless_eps_switching": 8,
        "normal_or_standby": 9,
        "forced_discharge": 10,
        "charge_priority": 11,
        "iso": 12,
        "gfci": 13,
        "dci": 14,
        "feed_in_grid": 15,
    },
    SYSTEM_BITS: {
        "pv_grid_off": 0,
        "fast_zero_export": 1,
        "micro_grid": 2,
        # ChgLastEn in the same document: PV serves the house and the grid
        # before the battery (Predbat's "freeze export").
        "charge_last": 4,
    },
    FUNCTION_BITS_2: {"grid_peak_shaving": 7},
    FUNCTION_BITS_4: {"quick_charge": 0},
}


def register_name(register: int) -> str:
    """A readable name for a holding register (``register_<n>`` when unnamed)."""
    return NAMES.get(register, f"register_{register}")


def to_signed(register: int, value: int) -> int:
    """The value as the inverter means it: two's complement for the signed registers."""
    return to_signed16(value) if register in SIGNED else value


def decode_bits(register: int, value: int) -> dict[str, bool]:
    """Named booleans of a bit-field register (21 or 110)."""
    return {name: bool(value >> bit & 1) for name, bit in BITS[register].items()}


def with_bit(value: int, bit: int, on: bool) -> int:
    """``value`` with one bit set (``on``) or cleared, every other bit unchanged."""
    if not 0 <= bit <= 15:
        raise ValueError(f"bit must be 0-15: {bit}")
    return value | (1 << bit) if on else value & ~(1 << bit) & 0xFFFF


# Register 120 bits 1-3: what starts and stops AC charging.
AC_CHARGE_TYPES: dict[int, str] = {
    0: "disabled",  # older firmware has no register 120 and charges by time
    1: "time",
    2: "battery_voltage",
    3: "soc",
    4: "battery_voltage_and_time",
    5: "soc_and_time",
}


def ac_charge_type(system_enable: int) -> int:
    """The AC charge type (a key of ``AC_CHARGE_TYPES``) in a register 120 value."""
    return system_enable >> 1 & 0b111


def decode_time(value: int) -> datetime.time:
    """A time-slot register: low byte hour, high byte minute."""
    return datetime.time(value & 0xFF, value >> 8)


def encode_time(time: datetime.time) -> int:
    """The register value of a time-slot boundary (seconds are dropped)."""
    return time.hour | time.minute << 8


def decode_clock(year_month: int, day_hour: int, minute_second: int) -> datetime.datetime:
    """The inverter's clock from registers 12, 13 and 14 (local time, naive)."""
    return datetime.datetime(
        2000 + (year_month & 0xFF), year_month >> 8,
        day_hour & 0xFF, day_hour >> 8,
        minute_second & 0xFF, minute_second >> 8,
    )


def encode_clock(moment: datetime.datetime) -> tuple[int, int, int]:
    """Registers 12, 13 and 14 for ``moment`` (years 2000-2255)."""
    if not 2000 <= moment.year <= 2255:
        raise ValueError(f"the inverter's clock holds years 2000-2255: {moment.year}")
    return (
        (moment.year - 2000) | moment.month << 8,
        moment.day | moment.hour << 8,
        moment.minute | moment.second << 8,
    )


# -- which registers may be written, and with what -------------------------------


@attrs.frozen
class WriteRule:
    """What a writable holding register accepts, as a raw value 0-65535, and that in words."""

    description: str
    accepts: Callable[[int], bool]


def _is_time_of_day(value: int) -> bool:
    return value & 0xFF <= 23 and value >> 8 <= 59


def _within_limits(register: int) -> WriteRule:
    low, high = LIMITS[register]
    if register in SIGNED:
        return WriteRule(f"{low} to {high}, two's complement",
                         lambda value: low <= to_signed16(value) <= high)
    return WriteRule(f"{low}-{high}", lambda value: low <= value <= high)


ANY_VALUE = WriteRule("any value 0-65535", lambda value: True)
TIME_OF_DAY = WriteRule("a time of day: low byte hour 0-23, high byte minute 0-59",
                        _is_time_of_day)

# The registers a client may write one by one (``cmd/set_hold/<register>``
# unless the configuration allows any register): the bit fields, every number
# register with the limits the inverter takes (percentages, SOC limits, the
# lead-acid temperature limits in 0.1 degC, the CT offset, the battery currents)
# and the time slots.
# Not the clock: it is written whole (``CLOCK_RULES``).
SETTABLE: dict[int, WriteRule] = {
    FUNCTION_BITS: ANY_VALUE,
    SYSTEM_BITS: ANY_VALUE,  # newer units use all 16 bits (buzzer, CT ratios, eco mode)
    FUNCTION_BITS_2: ANY_VALUE,
    FUNCTION_BITS_4: ANY_VALUE,
    **{register: _within_limits(register) for register in sorted(LIMITS)},
    **{register: TIME_OF_DAY for slots in TIME_SLOTS.values() for pair in slots
       for register in pair},
}

# The clock, byte by byte (PROTOCOL.md section 6); a write must also make a
# whole valid date and time, which only all three registers together can show.
CLOCK_RULES: dict[int, WriteRule] = {
    12: WriteRule("low byte year - 2000, 17-255, high byte month 1-12",
                  lambda v: v & 0xFF >= 17 and 1 <= v >> 8 <= 12),
    13: WriteRule("low byte day 1-31, high byte hour 0-23",
                  lambda v: 1 <= v & 0xFF <= 31 and v >> 8 <= 23),
    14: WriteRule("low byte minute 0-59, high byte second 0-59",
                  lambda v: v & 0xFF <= 59 and v >> 8 <= 59),
}

# Every register the inverter itself takes a write to, and what it accepts: the
# settable ones, the clock, and register 120 (whose fields the bridge writes
# through no command). Anything else (the model, serial and firmware registers
# 0-10 among them) is refused with ILLEGAL_ADDRESS, as a real inverter refuses
# read-only registers.
WRITABLE: dict[int, WriteRule] = {
    **CLOCK_RULES,
    **SETTABLE,
    SYSTEM_ENABLE: WriteRule(
        "bits 0-8, AC charge type (bits 1-3) 0-5, discharge control (bits 4-5) 0-2",
        lambda value: value < 0x200 and ac_charge_type(value) <= 5 and value >> 4 & 3 < 3,
    ),
}


# -- what the inverter says it is ------------------------------------------------

FIRMWARE_VERSIONS = (9, 10)  # 9: slave CPU (low), comms CPU (high); 10: control CPU (low), ...
# The firmware code (7-8) and what it says of the model: ``octolux.lxp.models``.


def firmware(registers: Mapping[int, int]) -> str | None:
    """The firmware as ``<code>-<comms><control>`` (``BAAA-0A0A``), once registers 7-10 are known.

    The four-letter code and the versions of the communication and control
    processors, in hex; None until the inverter has reported those registers.
    """
    code = firmware_code(registers)
    if code is None or not all(register in registers for register in FIRMWARE_VERSIONS):
        return None
    comms = registers[FIRMWARE_VERSIONS[0]] >> 8
    control = registers[FIRMWARE_VERSIONS[1]] & 0xFF
    return f"{code}-{comms:02X}{control:02X}"
