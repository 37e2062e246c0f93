"""Per-battery data: input registers from 5002, 30 a module, up to 4 modules. Pure.

Each battery module's BMS reports through the inverter in a block of 30 input
registers from 5002 (slot 0), 5032, 5062 and 5092 (slot 3); a read past
5121 gets an exception reply, as does a read of a model that has no such
registers. With more than 4 modules the firmware rotates them through the 4
slots, so a module is known by its serial number, never by its slot.

The layout is pylxpweb's (joyfulhouse/pylxpweb, registers/battery.py:
"empirical testing on FlexBOSS21, 18KPV", cross-checked with the vendor
cloud's getBatteryInfo) and agrees with DoubleDoc/EG4-18KPV-BatteryDetails
(an 18kPV's map from IR 5000). Only what a module reports is decoded: an
empty slot (header 0, or no serial) is no module.
"""

from __future__ import annotations

from collections.abc import Sequence

from octolux.lxp.inputs import InputField, Kind, decode_fields, encode_inputs

FIRST_REGISTER = 5002
MODULE_REGISTERS = 30
SLOTS = 4
LAST_REGISTER = FIRST_REGISTER + SLOTS * MODULE_REGISTERS - 1  # 5121
SERIAL_OFFSET, SERIAL_REGISTERS = 17, 7  # 14 characters


def _field(key, offset, unit, description, divisor=1, kind=Kind.UNSIGNED, shift=0, width=16):
    registers = tuple(range(offset, offset + SERIAL_REGISTERS)) if kind is Kind.TEXT else (offset,)
    return InputField(key, registers, kind, divisor, unit, description, None, shift, width)


# Offsets within a module's 30 registers; keys as published on battery/<serial>.
FIELDS: tuple[InputField, ...] = (
    _field("header", 0, "", "Status header (raw; 0: the slot is empty)"),
    _field("capacity", 1, "Ah", "Full capacity"),
    _field("charge_volt_ref", 2, "V", "BMS charge voltage reference", 10),
    _field("max_chg_curr", 3, "A", "BMS maximum charge current", 100),
    _field("max_dischg_curr", 4, "A", "BMS maximum discharge current", 100),
    _field("dischg_cut_volt", 5, "V", "BMS discharge cut-off voltage", 10),
    _field("voltage", 6, "V", "Module voltage", 100),
    _field("current", 7, "A", "Module current (negative: discharging)", 10, Kind.SIGNED),
    _field("soc", 8, "%", "State of charge", 1, Kind.LOW_BYTE),
    _field("soh", 8, "%", "State of health", 1, Kind.HIGH_BYTE),
    _field("cycle_count", 9, "", "Charge cycles"),
    _field("max_cell_temp", 10, "°C", "Highest cell temperature", 10, Kind.SIGNED),
    _field("min_cell_temp", 11, "°C", "Lowest cell temperature", 10, Kind.SIGNED),
    _field("max_cell_voltage", 12, "V", "Highest cell voltage", 1000),
    _field("min_cell_voltage", 13, "V", "Lowest cell voltage", 1000),
    _field("max_cell_voltage_number", 14, "", "Cell with the highest voltage", 1, Kind.BITS, 0, 8),
    _field("min_cell_voltage_number", 14, "", "Cell with the lowest voltage", 1, Kind.BITS, 8, 8),
    _field("max_cell_temp_number", 15, "", "Cell with the highest temperature", 1, Kind.BITS,
           0, 8),
    _field("min_cell_temp_number", 15, "", "Cell with the lowest temperature", 1, Kind.BITS,
           8, 8),
    _field("firmware_major", 16, "", "Firmware version, major", 1, Kind.HIGH_BYTE),
    _field("firmware_minor", 16, "", "Firmware version, minor", 1, Kind.LOW_BYTE),
    _field("serial", SERIAL_OFFSET, "", "Serial number", 1, Kind.TEXT),
)
FIELDS_BY_KEY: dict[str, InputField] = {field.key: field for field in FIELDS}


def decode_module(values: Sequence[int]) -> dict[str, int | float | str] | None:
    """One module's 30 registers by name; None for an empty slot (header 0 or no serial)."""
    if len(values) != MODULE_REGISTERS:
        raise ValueError(f"a module has {MODULE_REGISTERS} registers, not {len(values)}")
    module = decode_fields(FIELDS, values)
    if not module["header"] or not module["serial"].strip():
        return None
    module["firmware"] = f"{module.pop('firmware_major')}.{module.pop('firmware_minor'):02d}"
    return module


def decode_modules(register: int, values: Sequence[int]) -> dict[str, dict]:
    """Every whole module slot in a reply of input registers from ``register``, by serial."""
    modules = {}
    for slot in range(SLOTS):
        start = FIRST_REGISTER + slot * MODULE_REGISTERS - register
        if start < 0 or start + MODULE_REGISTERS > len(values):
            continue
        module = decode_module(values[start : start + MODULE_REGISTERS])
        if module is not None:
            modules[module["serial"]] = module
    return modules


def encode_module(module: dict) -> tuple[int, ...]:
    """A module's 30 registers from its values by name (the simulator's side)."""
    named = dict(module)
    if "firmware" in named:
        major, minor = named.pop("firmware").split(".")
        named["firmware_major"], named["firmware_minor"] = int(major), int(minor)
    return encode_inputs(named, MODULE_REGISTERS, fields=FIELDS_BY_KEY)
