"""The simulated inverter's holding registers: the bank, its defaults and what a write may hold.

Pure: no Twisted, no I/O. Which registers take a write, and which values, is
``octolux.lxp.holding.WRITABLE`` (the rules the bridge's ``set_hold`` uses
too); a refusal is a ``RegisterError`` carrying the exception code a real
inverter answers with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from octolux.lxp import holding
from octolux.lxp.frames import ExceptionCode, check_serial
from octolux.lxp.inputs import encode_text, from_signed16
from simulator.models import DEFAULT_MODEL, SimulatedModel

HOLDING_REGISTER_COUNT = 240  # newer units have holding registers 0-239
DEFAULT_INVERTER_SERIAL = "SIMINV0001"

# -- errors -------------------------------------------------------------------


class RegisterError(ValueError):
    """A holding-register access the inverter refuses; ``code`` is its exception reply code."""

    code: ExceptionCode = ExceptionCode.FAILURE

    def __init__(self, register: int, message: str):
        super().__init__(f"register {register}: {message}")
        self.register = register


class UnknownRegister(RegisterError):
    """The register does not exist, or cannot be written: ILLEGAL_ADDRESS."""

    code = ExceptionCode.ILLEGAL_ADDRESS


class ValueOutOfRange(RegisterError):
    """The value is not one the register accepts: ILLEGAL_VALUE."""

    code = ExceptionCode.ILLEGAL_VALUE


# -- the bank ---------------------------------------------------------------------

# The register 21 of a captured unit (PROTOCOL.md vectors: 0xF354): DRMS, anti
# island, soft start, seamless EPS, normal (not standby), ISO, GFCI, DCI and
# feed-in enabled; AC charge, forced discharge and charge priority off.
DEFAULT_FUNCTION_BITS = 0xF354

# Register 120: AC charge by time (type 1, bits 1-3), discharge controlled by SOC
# (1, bits 4-5), on-grid end of discharge by SOC (bit 6).
DEFAULT_SYSTEM_ENABLE = 1 << 1 | 1 << 4 | 1 << 6


def default_holding(inverter_serial: str = DEFAULT_INVERTER_SERIAL,
                    model: SimulatedModel = DEFAULT_MODEL) -> list[int]:
    """The holding registers of a freshly installed ``model`` (clock registers left 0).

    Registers 0-1, 7-10 and 19 say what the model is, as a real unit's do.
    """
    values = [0] * HOLDING_REGISTER_COUNT
    defaults = {
        0: model.hold_model & 0xFFFF, 1: model.hold_model >> 16,  # option bits
        7: encode_text(model.firmware, 2)[0], 8: encode_text(model.firmware, 2)[1],
        9: model.versions[0], 10: model.versions[1],
        15: 1,  # Modbus address
        19: model.device_type,
        holding.FUNCTION_BITS: DEFAULT_FUNCTION_BITS,
        22: 1200,  # PV start voltage, 120.0 V
        23: 60,  # seconds to wait before connecting to the grid
        90: 230, 91: 50,  # EPS output: 230 V, 50 Hz
        103: 100,  # feed-in limit, % of rated power
        116: 50, 117: from_signed16(-50),  # grid power (W) that starts discharging / charging
        holding.CHARGE_POWER_PERCENT: 100,
        holding.DISCHARGE_POWER_PERCENT: 100,
        holding.AC_CHARGE_POWER_PERCENT: 100,
        holding.AC_CHARGE_SOC_LIMIT: 100,
        holding.CHARGE_PRIORITY_POWER_PERCENT: 100,
        holding.CHARGE_PRIORITY_SOC_LIMIT: 100,
        holding.FORCED_DISCHARGE_POWER_PERCENT: 100,
        holding.FORCED_DISCHARGE_SOC_LIMIT: 10,
        holding.DISCHARGE_CUTOFF_SOC: 10,
        106: 600, 107: from_signed16(-200), 108: 600, 109: from_signed16(-200),  # 60/-20 degC
        holding.SYSTEM_ENABLE: DEFAULT_SYSTEM_ENABLE,
        holding.EPS_DISCHARGE_CUTOFF_SOC: 10,
        holding.AC_CHARGE_START_SOC: 10,
        holding.AC_CHARGE_END_SOC: 100,
        # Settings of some models only; harmless zeros elsewhere, but within range.
        holding.BATTERY_CAPACITY: 200,
        holding.BATTERY_NOMINAL_VOLTAGE: 512,  # 51.2 V: 16 LFP cells
        holding.GEN_CHARGE_START_VOLTAGE: 480,
        holding.GEN_CHARGE_END_VOLTAGE: 540,
        holding.GEN_CHARGE_START_SOC: 20,
        holding.GEN_CHARGE_END_SOC: 90,
        holding.GEN_CHARGE_CURRENT: 60,
        holding.QUICK_CHARGE_MINUTES: 60,
    }
    for register, value in defaults.items():
        values[register] = value
    # Registers 2-6: the serial, packed as in input registers 115-119.
    values[2:7] = encode_text(check_serial(inverter_serial, "inverter_serial"), 5)
    return values


@attrs.frozen
class Change:
    """A holding register that a write changed."""

    register: int
    old: int
    new: int


@attrs.define
class HoldingRegisters:
    """The inverter's holding register bank (0-239) and the validation every write gets.

    This is the raw bank: to set the clock (12-14), write through
    ``Plant.write_holding``, which also moves the simulated inverter clock.
    """

    values: list[int] = attrs.field(factory=default_holding)

    def __attrs_post_init__(self):
        if len(self.values) != HOLDING_REGISTER_COUNT:
            raise ValueError(f"a holding bank has {HOLDING_REGISTER_COUNT} registers")

    def __getitem__(self, register: int) -> int:
        return self.read(register)[0]

    def read(self, register: int, count: int = 1) -> tuple[int, ...]:
        """``count`` registers from ``register``; UnknownRegister past the end of the bank."""
        if count < 1:
            raise ValueOutOfRange(register, f"cannot read {count} registers")
        if register < 0 or register + count > HOLDING_REGISTER_COUNT:
            raise UnknownRegister(
                register, f"holding registers are 0-{HOLDING_REGISTER_COUNT - 1}"
            )
        return tuple(self.values[register : register + count])

    def check(self, register: int, value: int) -> None:
        """Raise UnknownRegister or ValueOutOfRange if ``value`` may not go in ``register``."""
        rule = holding.WRITABLE.get(register)
        if rule is None:
            raise UnknownRegister(register, "not a writable holding register")
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueOutOfRange(register, f"{value!r} is not a 16-bit value")
        if not rule.accepts(value):
            raise ValueOutOfRange(register, f"it takes {rule.description}, not {value}")

    def write(self, register: int, value: int) -> Change:
        """Validate and store one value; return the change (old may equal new)."""
        return self.write_many(register, (value,))[0]

    def write_many(self, register: int, values: Sequence[int]) -> list[Change]:
        """Validate every value first, then store them all: a refused write changes nothing."""
        for offset, value in enumerate(values):
            self.check(register + offset, value)
        changes = []
        for offset, value in enumerate(values):
            old = self.values[register + offset]
            self.values[register + offset] = value
            changes.append(Change(register + offset, old, value))
        return changes

    def writable(self) -> dict[int, int]:
        """The writable registers except the clock, for saving across restarts."""
        return {
            register: self.values[register]
            for register in sorted(holding.WRITABLE)
            if register not in holding.CLOCK_RULES
        }

    def load(self, saved: Mapping[int, int]) -> list[Change]:
        """Restore saved registers (validated like writes; the clock is not restored)."""
        changes = []
        for register, value in sorted(saved.items()):
            if register in holding.CLOCK_RULES:
                continue
            changes.extend(self.write_many(register, (value,)))
        return changes
