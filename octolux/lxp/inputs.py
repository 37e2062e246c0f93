"""Input registers: raw register values -> named, scaled, signed values, and back.

Decoding goes by register number, not by frame shape, so three 40-register
bursts and one 127-register frame give the same names and numbers. The keys
of MQ.md are the user's contract; the table below is the one place they are
written (the MQTT docs are generated from it).

``encode_inputs`` is the inverse, for the simulator: named values -> raw
registers, from the same table.

Published blocks: ``inputs/1`` holds registers 0-39, ``/2`` 40-79, ``/3``
80-119, ``/4`` 120-159, ``/5`` 160-199 and ``/6`` 200-239. A field that only
some models have names its ``feature`` (``octolux.lxp.models.FEATURES``);
registers and meanings of 113-232 are from LuxPower's Modbus protocol document
(the 2025-06-14 edition, in the repository OwlBawl/Luxpower-Modbus-RTU).
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Mapping, Sequence

import attrs

BLOCK_SIZE = 40
REGISTER_COUNT = 240  # six blocks: 0-39, 40-79, ..., 200-239


class Kind(enum.Enum):
    """How a field's raw registers become its value."""

    UNSIGNED = "u16"
    SIGNED = "i16"
    UNSIGNED_32 = "u32"  # two registers, low word first
    LOW_BYTE = "low byte"
    HIGH_BYTE = "high byte"
    POWER_FACTOR = "power factor"  # 1000 < x < 2000 means (1000 - x) / 1000
    TEXT = "ascii"  # two characters a register, low byte first
    SUM = "sum"  # of u16 registers
    SUM_32 = "sum of u32"  # of u32 register pairs
    DIFFERENCE = "difference"  # first register minus second
    BALANCE = "balance"  # the first half of the registers added, the second half subtracted
    STATUS_TEXT = "status text"  # STATUS_TEXTS of a u16 register
    FAULT_NAMES = "fault names"  # FAULT_NAMES of the bits set in a u32 register pair
    WARNING_NAMES = "warning names"  # WARNING_NAMES of the bits set in a u32 register pair
    BITS = "bits"  # ``width`` bits of a u16 register from bit ``shift`` on


@attrs.frozen
class InputField:
    """One published key: where its value comes from and what it means."""

    key: str
    registers: tuple[int, ...]
    kind: Kind
    divisor: int
    unit: str
    description: str
    feature: str | None = None  # the part of some models it needs (models.FEATURES); None: all
    shift: int = 0  # Kind.BITS: the lowest bit
    width: int = 16  # Kind.BITS: how many bits

    @property
    def block(self) -> int:
        """The ``inputs/<n>`` topic this key is published under."""
        return self.registers[0] // BLOCK_SIZE + 1

    @property
    def span(self) -> range:
        """Every register the value is read from."""
        if self.kind in _32_BIT_KINDS:
            return range(self.registers[0], self.registers[-1] + 2)
        if self.kind is Kind.TEXT:
            return range(self.registers[0], self.registers[-1] + 1)
        return range(min(self.registers), max(self.registers) + 1)


_32_BIT_KINDS = frozenset({Kind.UNSIGNED_32, Kind.SUM_32, Kind.FAULT_NAMES, Kind.WARNING_NAMES})

# The operating state (input register 0) in words, as the vendor's documents
# name the states; a value not here is shown as "unknown (N)".
STATUS_TEXTS: dict[int, str] = {
    0x00: "standby",
    0x02: "firmware updating",
    0x04: "PV on-grid",
    0x08: "PV charging",
    0x0C: "PV charging, on-grid",
    0x10: "battery on-grid",
    0x11: "bypass",
    0x14: "PV and battery on-grid",
    0x19: "PV charging, bypass",
    0x20: "AC charging",
    0x28: "PV and AC charging",
    0x40: "battery off-grid",
    0x80: "PV off-grid",
    0x88: "PV charging, off-grid",
    0xC0: "PV and battery off-grid",
}

# Fault bits (input registers 60-61) and warning bits (62-63): the code the
# inverter's display and the vendor's app show, and what it means.
FAULT_NAMES: tuple[str, ...] = (
    "E000 internal communication fault 1",
    "E001 model fault",
    "E002 battery on MOS fault",
    "E003 CT fault",
    "E004 reserved",
    "E005 reserved",
    "E006 reserved",
    "E007 reserved",
    "E008 parallel system CAN communication error",
    "E009 parallel system master lost",
    "E010 parallel system has several masters",
    "E011 parallel system AC input inconsistent",
    "E012 UPS short circuit",
    "E013 reverse current on the UPS output",
    "E014 bus short circuit",
    "E015 phase error in a three-phase system",
    "E016 relay check fault",
    "E017 internal communication fault 2",
    "E018 internal communication fault 3",
    "E019 bus voltage high",
    "E020 EPS connection fault",
    "E021 PV voltage high",
    "E022 over-current protection",
    "E023 neutral fault",
    "E024 PV short circuit",
    "E025 radiator temperature out of range",
    "E026 internal fault",
    "E027 main and redundant CPU samples disagree",
    "E028 reserved",
    "E029 reserved",
    "E030 reserved",
    "E031 internal communication fault 4",
)
WARNING_NAMES: tuple[str, ...] = (
    "W000 battery communication failure",
    "W001 AFCI communication failure",
    "W002 AFCI high",
    "W003 meter communication failure",
    "W004 battery forbids both charge and discharge",
    "W005 auto test failed",
    "W006 reserved",
    "W007 LCD communication failure",
    "W008 firmware version mismatch",
    "W009 fan stuck",
    "W010 reserved",
    "W011 parallel number out of range",
    "W012 battery on MOS",
    "W013 over-temperature",
    "W014 reserved",
    "W015 battery connected in reverse",
    "W016 grid power outage",
    "W017 grid voltage out of range",
    "W018 grid frequency out of range",
    "W019 reserved",
    "W020 PV insulation low",
    "W021 leakage current high",
    "W022 DC injection high",
    "W023 PV short circuit",
    "W024 reserved",
    "W025 battery voltage high",
    "W026 battery voltage low",
    "W027 battery open circuit",
    "W028 EPS overload",
    "W029 EPS voltage high",
    "W030 meter connected in reverse",
    "W031 DC voltage high",
)


def _field(key, registers, unit, description, divisor=1, kind=Kind.UNSIGNED, feature=None):
    if isinstance(registers, int):
        registers = (registers,)
    return InputField(key, tuple(registers), kind, divisor, unit, description, feature)


def _kwh_u32(key, register, what, feature=None):
    return _field(key, register, "kWh", f"{what}, all time", 10, Kind.UNSIGNED_32, feature)


def _bits(key, register, shift, width, description, feature):
    return InputField(key, (register,), Kind.BITS, 1, "", description, feature, shift, width)


def _legs(key, register, unit, what, divisor=1, feature="split_phase"):
    """Two fields, leg 1 and leg 2, in consecutive registers (US split-phase models)."""
    return tuple(
        _field(f"{key}_l{leg}", register + leg - 1, unit, f"{what}, leg {leg}", divisor,
               feature=feature)
        for leg in (1, 2)
    )


_STATUS_TEXT = (
    "Operating state: 0 idle, 16 discharging, 32 charging; other values are "
    "other states (4 PV on-grid, 12, 20, 40, 64 off-grid, ...)"
)

FIELDS: tuple[InputField, ...] = (
    # -- inputs/1: registers 0-39 ---------------------------------------------
    _field("status", 0, "", _STATUS_TEXT),
    _field("status_text", 0, "", "Operating state in words (\"unknown (N)\" for another code)",
           1, Kind.STATUS_TEXT),
    _field("v_pv_1", 1, "V", "PV string 1 voltage", 10),
    _field("v_pv_2", 2, "V", "PV string 2 voltage", 10),
    _field("v_pv_3", 3, "V", "PV string 3 voltage", 10),
    _field("v_bat", 4, "V", "Battery voltage", 10),
    _field("soc", 5, "%", "Battery state of charge", 1, Kind.LOW_BYTE),
    _field("soh", 5, "%", "Battery state of health", 1, Kind.HIGH_BYTE),
    _field("internal_fault", 6, "", "Internal fault code (raw)"),
    _field("p_pv_1", 7, "W", "PV string 1 power"),
    _field("p_pv_2", 8, "W", "PV string 2 power"),
    _field("p_pv_3", 9, "W", "PV string 3 power"),
    _field("p_pv", (7, 8, 9), "W", "PV power, all strings", 1, Kind.SUM),
    _field("p_charge", 10, "W", "Battery charge power"),
    _field("p_discharge", 11, "W", "Battery discharge power"),
    _field(
        "p_battery", (10, 11), "W", "Battery power: p_charge - p_discharge (positive: charging)",
        1, Kind.DIFFERENCE,
    ),
    _field("v_acr", 12, "V", "Grid voltage, phase R", 10),
    _field("v_acs", 13, "V", "Grid voltage, phase S (floats on single phase)", 10),
    _field("v_act", 14, "V", "Grid voltage, phase T (floats on single phase)", 10),
    _field("f_ac", 15, "Hz", "Grid frequency", 100),
    _field("p_inv", 16, "W", "Inverter output power"),
    _field("p_rec", 17, "W", "Rectifier power: charging from the grid"),
    _field("pf", 19, "", "Power factor", 1000, Kind.POWER_FACTOR),
    _field("v_eps", 20, "V", "EPS (backup) voltage, phase R", 10),
    _field("v_eps_s", 21, "V", "EPS voltage, phase S", 10),
    _field("v_eps_t", 22, "V", "EPS voltage, phase T", 10),
    _field("f_eps", 23, "Hz", "EPS frequency", 100),
    _field("p_eps", 24, "W", "EPS active power"),
    _field("s_eps", 25, "VA", "EPS apparent power"),
    _field("p_to_grid", 26, "W", "Power exported to the grid"),
    _field("p_to_user", 27, "W", "Power imported from the grid"),
    _field(
        "p_grid", (27, 26), "W", "Grid power: p_to_user - p_to_grid (positive: importing)",
        1, Kind.DIFFERENCE,
    ),
    # The AC side's balance: what comes in (the grid, the inverter's output)
    # less what goes elsewhere (the rectifier charging the battery, export).
    # The same sum as the "Home Consumption (Live)" sensor of the LuxPower
    # Home Assistant integration (LuxPower-Advanced, sensor.py).
    _field(
        "p_load", (27, 16, 17, 26), "W",
        "House consumption: p_to_user + p_inv - p_rec - p_to_grid",
        1, Kind.BALANCE,
    ),
    _field("e_pv_1_day", 28, "kWh", "PV string 1 energy, today", 10),
    _field("e_pv_2_day", 29, "kWh", "PV string 2 energy, today", 10),
    _field("e_pv_3_day", 30, "kWh", "PV string 3 energy, today", 10),
    _field("e_pv_day", (28, 29, 30), "kWh", "PV energy, all strings, today", 10, Kind.SUM),
    _field("e_inv_day", 31, "kWh", "Inverter output energy, today", 10),
    _field("e_rec_day", 32, "kWh", "Rectifier (AC charge) energy, today", 10),
    _field("e_chg_day", 33, "kWh", "Battery charge energy, today", 10),
    _field("e_dischg_day", 34, "kWh", "Battery discharge energy, today", 10),
    _field("e_eps_day", 35, "kWh", "EPS energy, today", 10),
    _field("e_to_grid_day", 36, "kWh", "Energy exported, today", 10),
    _field("e_to_user_day", 37, "kWh", "Energy imported, today", 10),
    # p_load's balance over today's counters: what Predbat reads as the day's load.
    _field(
        "e_load_day", (37, 31, 32, 36), "kWh",
        "House consumption, today: e_to_user_day + e_inv_day - e_rec_day - e_to_grid_day",
        10, Kind.BALANCE,
    ),
    _field("v_bus_1", 38, "V", "Internal bus 1 voltage", 10),
    _field("v_bus_2", 39, "V", "Internal bus 2 voltage", 10),
    # -- inputs/2: registers 40-79 --------------------------------------------
    _kwh_u32("e_pv_1_all", 40, "PV string 1 energy"),
    _kwh_u32("e_pv_2_all", 42, "PV string 2 energy"),
    _kwh_u32("e_pv_3_all", 44, "PV string 3 energy"),
    _field("e_pv_all", (40, 42, 44), "kWh", "PV energy, all strings, all time", 10, Kind.SUM_32),
    _kwh_u32("e_inv_all", 46, "Inverter output energy"),
    _kwh_u32("e_rec_all", 48, "Rectifier (AC charge) energy"),
    _kwh_u32("e_chg_all", 50, "Battery charge energy"),
    _kwh_u32("e_dischg_all", 52, "Battery discharge energy"),
    _kwh_u32("e_eps_all", 54, "EPS energy"),
    _kwh_u32("e_to_grid_all", 56, "Energy exported"),
    _kwh_u32("e_to_user_all", 58, "Energy imported"),
    _field("fault_code", 60, "", "Fault bits (E000-E031)", 1, Kind.UNSIGNED_32),
    _field("warning_code", 62, "", "Warning bits (W000-W031)", 1, Kind.UNSIGNED_32),
    _field("fault_codes", 60, "", "Active faults, by name (a list; empty: none)", 1,
           Kind.FAULT_NAMES),
    _field("warning_codes", 62, "", "Active warnings, by name (a list; empty: none)", 1,
           Kind.WARNING_NAMES),
    _field("t_inner", 64, "°C", "Internal temperature", 1, Kind.SIGNED),
    _field("t_rad_1", 65, "°C", "Radiator 1 temperature", 1, Kind.SIGNED),
    _field("t_rad_2", 66, "°C", "Radiator 2 temperature", 1, Kind.SIGNED),
    _field("t_bat", 67, "°C", "Battery temperature", 1, Kind.SIGNED),
    _field("runtime", 69, "s", "Running time, cumulative", 1, Kind.UNSIGNED_32),
    # -- inputs/3: registers 80-119 -------------------------------------------
    # /100 as in the founding spec's example (105.0 A); one peer uses /10 on
    # the 127-register frame, but decoding by register gives one answer.
    _field("max_chg_curr", 81, "A", "BMS maximum charge current", 100),
    _field("max_dischg_curr", 82, "A", "BMS maximum discharge current", 100),
    _field("charge_volt_ref", 83, "V", "BMS charge voltage reference", 10),
    _field("dischg_cut_volt", 84, "V", "BMS discharge cut-off voltage", 10),
    *(
        _field(f"bat_status_{n}", 85 + n, "", f"BMS status word {n} (not well understood)")
        for n in range(10)
    ),
    _field("bat_status_inv", 95, "", "Battery status seen by the inverter (not well understood)"),
    _field("bat_count", 96, "", "Number of battery modules"),
    _field("bat_capacity", 97, "Ah", "Battery capacity"),
    # Signed; the scale is disputed (0.01 A in a vendor document, 0.1 A
    # observed in practice): we follow practice.
    _field("bat_current", 98, "A", "Battery current (negative: discharging)", 10, Kind.SIGNED),
    _field("bms_event_1", 99, "", "BMS fault code (raw)"),
    _field("bms_event_2", 100, "", "BMS warning code (raw)"),
    _field("max_cell_voltage", 101, "V", "Highest cell voltage", 1000),
    _field("min_cell_voltage", 102, "V", "Lowest cell voltage", 1000),
    _field("max_cell_temp", 103, "°C", "Highest cell temperature", 10, Kind.SIGNED),
    _field("min_cell_temp", 104, "°C", "Lowest cell temperature", 10, Kind.SIGNED),
    _field("bms_fw_update_state", 105, "", "BMS firmware update state (raw)"),
    _field("bat_cycle_count", 106, "", "Battery charge cycles"),
    _field("v_bat_inv", 107, "V", "Battery voltage measured by the inverter", 10),
    _bits("parallel_role", 113, 0, 2, "Parallel role: 1 master, 2 slave (0: not parallel)",
          "parallel"),
    _bits("parallel_phase", 113, 2, 2, "Parallel phase: 1 R, 2 S, 3 T", "parallel"),
    _bits("parallel_count", 113, 8, 8, "Inverters in the parallel system", "parallel"),
    _field("inverter_serial", range(115, 120), "", "Inverter serial number", 1, Kind.TEXT),
    # -- inputs/4: registers 120-159, model-specific ---------------------------
    _field("v_gen", 121, "V", "Generator voltage", 10, feature="generator"),
    _field("f_gen", 122, "Hz", "Generator frequency", 100, feature="generator"),
    _field("p_gen", 123, "W", "Generator power (uptime on some models)", feature="generator"),
    _field("e_gen_day", 124, "kWh", "Generator energy, today", 10, feature="generator"),
    _kwh_u32("e_gen_all", 125, "Generator energy", "generator"),
    _field("v_eps_l1", 127, "V", "EPS voltage, leg 1 (split phase)", 10, feature="split_phase"),
    _field("v_eps_l2", 128, "V", "EPS voltage, leg 2 (split phase)", 10, feature="split_phase"),
    *_legs("p_eps", 129, "W", "EPS active power"),
    *_legs("s_eps", 131, "VA", "EPS apparent power"),
    _field("e_eps_l1_day", 133, "kWh", "EPS energy, leg 1, today", 10, feature="split_phase"),
    _field("e_eps_l2_day", 134, "kWh", "EPS energy, leg 2, today", 10, feature="split_phase"),
    _kwh_u32("e_eps_l1_all", 135, "EPS energy, leg 1", "split_phase"),
    _kwh_u32("e_eps_l2_all", 137, "EPS energy, leg 2", "split_phase"),
    *(_field(f"afci_current_{n}", 139 + n, "mA", f"AFCI current, channel {n}", feature="afci")
      for n in range(1, 5)),
    _field("afci_flags", 144, "", "AFCI flags: bits 0-3 arc alarm, 4-7 self-test failed, "
           "channels 1-4", feature="afci"),
    *(_field(f"afci_arc_{n}", 144 + n, "", f"AFCI arc, channel {n}", feature="afci")
      for n in range(1, 5)),
    *(_field(f"afci_arc_max_{n}", 148 + n, "", f"AFCI highest arc, channel {n}", feature="afci")
      for n in range(1, 5)),
    _field("p_ac_couple", 153, "W", "Power of the AC-coupled inverter", feature="ac_couple"),
    # -- inputs/5: registers 160-199 ------------------------------------------------
    _field("p_load_meter", 170, "W", "Load power the inverter measures (on grid)",
           feature="load"),
    _field("e_load_meter_day", 171, "kWh", "Load energy the inverter measures, today", 10,
           feature="load"),
    _kwh_u32("e_load_meter_all", 172, "Load energy the inverter measures", "load"),
    *_legs("v_grid", 193, "V", "Grid voltage", 10),
    *_legs("v_gen", 195, "V", "Generator voltage", 10),
    *_legs("p_inv", 197, "W", "Inverter output power"),
    _field("p_rec_l1", 199, "W", "Rectifier power, leg 1", feature="split_phase"),
    # -- inputs/6: registers 200-239 ------------------------------------------------
    _field("p_rec_l2", 200, "W", "Rectifier power, leg 2", feature="split_phase"),
    *_legs("p_to_grid", 201, "W", "Power exported"),
    *_legs("p_to_user", 203, "W", "Power imported"),
    _field("quick_charge_remaining", 210, "s", "Quick charge: seconds left",
           feature="quick_charge"),
    *(_field(f"v_pv_{n}", 213 + n, "V", f"PV string {n} voltage", 10, feature="pv456")
      for n in (4, 5, 6)),
    *(_field(f"p_pv_{n}", 216 + n, "W", f"PV string {n} power", feature="pv456")
      for n in (4, 5, 6)),
    *(field
      for n, register in ((4, 223), (5, 226), (6, 229))
      for field in (
          _field(f"e_pv_{n}_day", register, "kWh", f"PV string {n} energy, today", 10,
                 feature="pv456"),
          _kwh_u32(f"e_pv_{n}_all", register + 1, f"PV string {n} energy", "pv456"),
      )),
    _field("p_smart_load", 232, "W", "Smart load port power", feature="smart_load"),
)

FIELDS_BY_KEY: dict[str, InputField] = {field.key: field for field in FIELDS}
BLOCKS: tuple[int, ...] = tuple(sorted({field.block for field in FIELDS}))


def block_range(block: int) -> range:
    """The registers of ``inputs/<block>``."""
    first = (block - 1) * BLOCK_SIZE
    return range(first, first + BLOCK_SIZE)


def covered_blocks(register: int, count: int) -> tuple[int, ...]:
    """The blocks that a frame of ``count`` registers from ``register`` fully carries."""
    return tuple(
        block
        for block in BLOCKS
        if register <= block_range(block).start and block_range(block).stop <= register + count
    )


def to_signed16(value: int) -> int:
    """A raw register value (0-65535) read as two's complement: 0xFFFB is -5."""
    return (value ^ 0x8000) - 0x8000


def from_signed16(value: int) -> int:
    """The raw register value (0-65535) of a signed 16-bit ``value``: -5 is 0xFFFB."""
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError(f"{value!r} does not fit a signed 16-bit register (-32768 to 32767)")
    return value & 0xFFFF


def _power_factor(value: int) -> int:
    # 1000 < x < 2000 encodes a negative (leading) power factor.
    return 1000 - value if 1000 < value < 2000 else value


def _status_text(value: int) -> str:
    return STATUS_TEXTS.get(value, f"unknown ({value})")


def _bit_names(bits: int, names: tuple[str, ...]) -> list[str]:
    return [name for bit, name in enumerate(names) if bits >> bit & 1]


def _text(values: Sequence[int], offsets: tuple[int, ...]) -> str:
    raw = b"".join(values[i].to_bytes(2, "little") for i in offsets)
    return raw.decode("latin-1").rstrip("\x00 ")


def _expression(field: InputField, offsets: tuple[int, ...]) -> str:
    """Python source computing ``field`` from the register tuple ``v``."""
    first = offsets[0]
    kind = field.kind
    if kind is Kind.TEXT:
        return f"_text(v, {offsets!r})"
    if kind is Kind.UNSIGNED:
        raw = f"v[{first}]"
    elif kind is Kind.SIGNED:
        raw = f"to_signed16(v[{first}])"
    elif kind is Kind.UNSIGNED_32:
        raw = f"(v[{first}] | v[{first + 1}] << 16)"
    elif kind is Kind.LOW_BYTE:
        raw = f"(v[{first}] & 0xFF)"
    elif kind is Kind.HIGH_BYTE:
        raw = f"(v[{first}] >> 8)"
    elif kind is Kind.SUM:
        raw = "(" + " + ".join(f"v[{i}]" for i in offsets) + ")"
    elif kind is Kind.SUM_32:
        raw = "(" + " + ".join(f"(v[{i}] | v[{i + 1}] << 16)" for i in offsets) + ")"
    elif kind is Kind.DIFFERENCE:
        raw = f"(v[{first}] - v[{offsets[1]}])"
    elif kind is Kind.BALANCE:
        half = len(offsets) // 2
        added = " + ".join(f"v[{i}]" for i in offsets[:half])
        subtracted = "".join(f" - v[{i}]" for i in offsets[half:])
        raw = f"({added}{subtracted})"
    elif kind is Kind.STATUS_TEXT:
        return f"_status_text(v[{first}])"
    elif kind is Kind.FAULT_NAMES:
        return f"_bit_names(v[{first}] | v[{first + 1}] << 16, FAULT_NAMES)"
    elif kind is Kind.WARNING_NAMES:
        return f"_bit_names(v[{first}] | v[{first + 1}] << 16, WARNING_NAMES)"
    elif kind is Kind.BITS:
        raw = f"(v[{first}] >> {field.shift} & {(1 << field.width) - 1})"
    else:  # Kind.POWER_FACTOR
        raw = f"_power_factor(v[{first}])"
    return f"{raw} / {field.divisor}" if field.divisor != 1 else raw


@functools.lru_cache(maxsize=64)
def _decoder(register: int, count: int,
             fields: tuple[InputField, ...] | None = None) -> Callable[[Sequence[int]], dict]:
    """The decoder for one frame shape: the fields it fully carries, as one dict display.

    The field table is compiled, as ``collections.namedtuple`` and attrs
    compile theirs, into the function a person would write by hand for this
    shape, so decoding costs no more than straight-line code. Cached, since a
    dongle sends the same few shapes all day long.
    """
    stop = register + count
    items = []
    for field in FIELDS if fields is None else fields:
        if register <= field.span.start and field.span.stop <= stop:
            offsets = tuple(r - register for r in field.registers)
            items.append(f"{field.key!r}: {_expression(field, offsets)}")
    source = "lambda v: {" + ", ".join(items) + "}"
    namespace = {
        "to_signed16": to_signed16, "_power_factor": _power_factor, "_text": _text,
        "_status_text": _status_text, "_bit_names": _bit_names,
        "FAULT_NAMES": FAULT_NAMES, "WARNING_NAMES": WARNING_NAMES,
    }
    return eval(source, namespace)  # noqa: S307 - source built above from our own table


def decode_inputs(register: int, values: Sequence[int]) -> dict[str, int | float | str]:
    """Name and scale every field that ``values`` (read from ``register`` on) fully covers.

    Values with a divisor come out as floats (``e_eps_day`` 0 is ``0.0``),
    others as ints; sums and differences use the raw integers, so there is
    neither 16-bit overflow nor float noise.
    """
    return _decoder(register, len(values))(values)


def decode_fields(fields: tuple[InputField, ...], values: Sequence[int]) -> dict:
    """Another table of fields (``octolux.lxp.batteries``), its registers counted from 0."""
    return _decoder(0, len(values), fields)(values)


def split_blocks(
    register: int, count: int, named: dict[str, int | float | str]
) -> dict[int, dict[str, int | float | str]]:
    """Group decoded values into the ``inputs/<n>`` blocks the frame fully covers."""
    return {
        block: {key: named[key] for key in BLOCK_KEYS[block] if key in named}
        for block in covered_blocks(register, count)
    }


def decode_input_blocks(register: int, values: Sequence[int]) -> dict[int, dict]:
    """Decode a frame straight into its ``inputs/<n>`` blocks (1-4) as published."""
    return split_blocks(register, len(values), decode_inputs(register, values))


BLOCK_KEYS: dict[int, tuple[str, ...]] = {
    block: tuple(field.key for field in FIELDS if field.block == block) for block in BLOCKS
}


# -- encoding: named values -> raw registers (the simulator's side) -----------------

# Kinds computed from other fields' registers: encoding sets their parts instead.
DERIVED_KINDS = frozenset({
    Kind.SUM, Kind.SUM_32, Kind.DIFFERENCE, Kind.BALANCE, Kind.STATUS_TEXT, Kind.FAULT_NAMES,
    Kind.WARNING_NAMES,
})

# The raw range of each primitive kind (after scaling by the divisor).
_RAW_RANGES = {
    Kind.UNSIGNED: (0, 0xFFFF),
    Kind.SIGNED: (-0x8000, 0x7FFF),
    Kind.UNSIGNED_32: (0, 0xFFFFFFFF),
    Kind.LOW_BYTE: (0, 0xFF),
    Kind.HIGH_BYTE: (0, 0xFF),
    Kind.POWER_FACTOR: (-999, 0xFFFF),
    Kind.BITS: (0, 0xFFFF),  # narrowed to the field's width in _raw_number
}


def encode_text(text: str, count: int) -> tuple[int, ...]:
    """``count`` registers holding ``text``: two characters a register, low byte first.

    Shorter text is padded with NULs, which decoding strips again.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text")
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} is not 8-bit text") from None
    if len(raw) > 2 * count:
        raise ValueError(f"{text!r} does not fit {count} registers ({2 * count} characters)")
    raw = raw.ljust(2 * count, b"\x00")
    return tuple(raw[i] | raw[i + 1] << 8 for i in range(0, len(raw), 2))


def _raw_number(field: InputField, value) -> int:
    """``value`` in the field's raw units (times the divisor, rounded), range-checked."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field.key}: {value!r} is not a finite number")
    raw = round(value * field.divisor)
    low, high = _RAW_RANGES[field.kind]
    if field.kind is Kind.BITS:
        high = (1 << field.width) - 1
    # Power factors 1001-1999 stand for negative ones, so cannot be positive ones.
    if not low <= raw <= high or (field.kind is Kind.POWER_FACTOR and 1000 < raw < 2000):
        unit = f" {field.unit}" if field.unit else ""
        raise ValueError(
            f"{field.key}: {value!r}{unit} is out of range "
            f"({low / field.divisor:g} to {high / field.divisor:g}{unit})"
        )
    return raw


def encode_inputs(
    named: Mapping[str, int | float | str],
    count: int | None = None,
    *,
    base: Sequence[int] | None = None,
    fields: Mapping[str, InputField] | None = None,
) -> tuple[int, ...]:
    """Raw input registers 0 .. ``count - 1`` carrying ``named``: the inverse of decode_inputs.

    Keys are those of ``FIELDS`` (or of ``fields``, another table by key); each
    value is multiplied by its divisor, rounded and packed as its kind says.
    Sums and differences are skipped: their parts carry them. Registers no key
    sets keep their ``base`` value, or 0 (``count`` defaults to ``len(base)``,
    else 240). An unknown key, a value out
    of its field's range or a field past ``count`` raises ValueError.
    """
    if base is None:
        values = [0] * (REGISTER_COUNT if count is None else count)
    else:
        values = list(base)
        if count is not None and count != len(values):
            raise ValueError(f"a base of {len(values)} registers, but count {count}")
    for key, value in named.items():
        field = (FIELDS_BY_KEY if fields is None else fields).get(key)
        if field is None:
            raise ValueError(f"not an input register key: {key!r}")
        kind = field.kind
        if kind in DERIVED_KINDS:
            continue
        span = field.span
        if span.stop > len(values):
            raise ValueError(
                f"{key} is in registers {span.start}-{span.stop - 1}, "
                f"past the {len(values)} encoded"
            )
        first = span.start
        if kind is Kind.TEXT:
            try:
                values[first : span.stop] = encode_text(value, len(span))
            except ValueError as error:
                raise ValueError(f"{key}: {error}") from None
            continue
        raw = _raw_number(field, value)
        if kind is Kind.UNSIGNED:
            values[first] = raw
        elif kind is Kind.SIGNED:
            values[first] = from_signed16(raw)
        elif kind is Kind.UNSIGNED_32:
            values[first : first + 2] = raw & 0xFFFF, raw >> 16
        elif kind is Kind.LOW_BYTE:
            values[first] = values[first] & 0xFF00 | raw
        elif kind is Kind.HIGH_BYTE:
            values[first] = values[first] & 0x00FF | raw << 8
        elif kind is Kind.BITS:
            mask = ((1 << field.width) - 1) << field.shift
            values[first] = values[first] & ~mask & 0xFFFF | raw << field.shift
        else:  # Kind.POWER_FACTOR: a negative one is stored as 1000 + |x|
            values[first] = 1000 - raw if raw < 0 else raw
    return tuple(values)
