"""The simulated inverter, battery, solar array and house: a pure model.

No Twisted, no I/O, no wall clock. Time moves only through ``Plant.advance``
(simulated seconds), and every random number comes from one ``random.Random``
seeded at construction, so the same seed, start time and calls give the same
registers. The plant reports named physical values (``input_values()``, keyed
as ``octolux.lxp.inputs.FIELDS``); ``input_registers()`` packs them with
``encode_inputs``, so the register layout is written only in ``octolux.lxp``.

Power flows, in watts, and how the holding registers steer them:

- PV follows a clear-sky day curve on the simulated clock, dimmed by drifting
  cloud; the house load follows a daily profile.
- Register 21 bit 10 (forced discharge), inside a forced discharge slot
  (84-89), discharges at ``MAX_POWER * min(reg 65, reg 82) %`` down to register
  83 (never below the cut-off SOC, 105), exporting what the house does not use.
- Register 21 bit 7 (AC charge) charges from the grid at
  ``MAX_POWER * min(reg 64, reg 66) %``. How it starts and stops follows the AC
  charge type in register 120 bits 1-3: by time (0, 1; and 2, 4, the battery
  voltage types, which are not simulated), inside an AC charge slot (68-73)
  until the SOC reaches register 67, then the battery rests (PV may still
  charge it, the house runs from the grid) until the slot ends; by SOC (3),
  whenever the SOC has fallen to register 160, until it reaches register 161;
  by SOC and time (5), the same but only inside a slot.
- Register 21 bit 11 (charge priority), inside a charge priority slot (76-81),
  charges from PV first, the house importing, until register 75, at
  ``MAX_POWER * min(reg 64, reg 74) %``.
- Otherwise PV surplus charges the battery (capped by register 64) and the
  battery covers the house load (capped by register 65, 0 stops it) down to
  the cut-off SOC in register 105.

Time slots are read on the inverter's own clock (12-14), not the true time, as
a real inverter does: a drifted clock shifts them. A slot whose start equals its
end (``00:00-00:00``) is off; one whose end is before its start runs over
midnight. When every slot of a mode is off, its enable bit alone switches it at
any time of day (a real inverter would wait for a slot; the simulator keeps a
bare ``ac_charge on`` visible, as before slots were simulated).

During a power cut (``set_grid(False)``) there is no grid: with EPS on (21 bit 0)
PV and the battery carry the house down to the EPS cut-off SOC (125), else the
house goes dark; PV only charges the battery.
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from octolux.lxp import holding
from octolux.lxp.frames import ExceptionCode, check_serial
from octolux.lxp.inputs import REGISTER_COUNT as INPUT_REGISTER_COUNT
from octolux.lxp.inputs import encode_inputs, encode_text, from_signed16

HOLDING_REGISTER_COUNT = 240  # newer units have holding registers 0-239

MAX_POWER = 3600  # W: the inverter's and the battery's limit at 100 %
BATTERY_CELLS = 16  # LFP cells in series: 51.2 V nominal
BATTERY_AMP_HOURS = 200
CAPACITY_WH = 10240.0
EFFICIENCY = 0.95  # each way, battery in and out
PV_PEAK = (2200.0, 1800.0, 0.0)  # W per string at a clear midsummer noon; no string 3
STATE_OF_HEALTH = 98

DEFAULT_START = datetime.datetime(2024, 6, 21, 12, 0, 0)
DEFAULT_INVERTER_SERIAL = "SIMINV0001"

# Longest integration step, in simulated seconds, unless a single advance is so
# long that it would need more than MAX_STEPS steps: then the steps grow, so
# that a thousandfold --speed costs bounded CPU per broadcast.
STEP = 60.0
MAX_STEPS = 2000

# Energy counters: e_<key>_day and e_<key>_all of the input registers.
ENERGY_KEYS = (
    "pv_1", "pv_2", "pv_3", "inv", "rec", "chg", "dischg", "eps", "to_grid", "to_user",
)

# A plausible history, in Wh (the founding spec's example totals).
INITIAL_TOTALS = {
    "pv_1": 900_000.0, "pv_2": 775_600.0, "pv_3": 0.0, "inv": 943_900.0, "rec": 1_099_300.0,
    "chg": 1_251_200.0, "dischg": 1_151_600.0, "eps": 0.0, "to_grid": 124_000.0,
    "to_user": 1_115_800.0,
}
INITIAL_RUNTIME = 31_622_400.0  # s: a year and a day of service
INITIAL_CYCLES = 120


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


# -- holding registers ------------------------------------------------------------


@attrs.frozen
class Rule:
    """What a writable holding register accepts, with a description for error messages."""

    description: str
    accepts: Callable[[int], bool]


ANY_VALUE = Rule("any 16-bit value", lambda value: True)
TIME_OF_DAY = Rule(
    "a time of day: low byte hour 0-23, high byte minute 0-59",
    lambda value: (value & 0xFF) <= 23 and (value >> 8) <= 59,
)


def within(register: int) -> Rule:
    """The rule of a number register: its ``holding.LIMITS``, signed where the register is."""
    low, high = holding.LIMITS[register]
    return Rule(
        f"a value {low} to {high}",
        lambda value: low <= holding.to_signed(register, value) <= high,
    )


# The clock, byte by byte (PROTOCOL.md section 6); whole dates are checked by Plant.
CLOCK_RULES = {
    12: Rule(
        "low byte year - 2000, 17-255, high byte month 1-12",
        lambda v: v & 0xFF >= 17 and 1 <= v >> 8 <= 12,
    ),
    13: Rule(
        "low byte day 1-31, high byte hour 0-23", lambda v: 1 <= v & 0xFF <= 31 and v >> 8 <= 23
    ),
    14: Rule(
        "low byte minute 0-59, high byte second 0-59", lambda v: v & 0xFF <= 59 and v >> 8 <= 59
    ),
}

# Every register a client may write, and what it accepts. Anything else (the
# model, serial and firmware registers 0-10 among them) is refused with
# ILLEGAL_ADDRESS, as a real inverter refuses read-only registers.
WRITABLE: dict[int, Rule] = {
    **CLOCK_RULES,
    holding.FUNCTION_BITS: ANY_VALUE,
    **{register: within(register) for register in holding.LIMITS},
    **{
        register: TIME_OF_DAY
        for slots in holding.TIME_SLOTS.values()
        for pair in slots
        for register in pair
    },
    holding.SYSTEM_BITS: ANY_VALUE,  # newer units use all 16 bits (buzzer, CT ratios, eco mode)
    holding.SYSTEM_ENABLE: Rule(
        "bits 0-8, AC charge type (bits 1-3) 0-5, discharge control (bits 4-5) 0-2",
        lambda value: value < 0x200 and holding.ac_charge_type(value) <= 5 and value >> 4 & 3 < 3,
    ),
}

# The register 21 of a captured unit (PROTOCOL.md vectors: 0xF354): DRMS, anti
# island, soft start, seamless EPS, normal (not standby), ISO, GFCI, DCI and
# feed-in enabled; AC charge, forced discharge and charge priority off.
DEFAULT_FUNCTION_BITS = 0xF354

# Register 120: AC charge by time (type 1, bits 1-3), discharge controlled by SOC
# (1, bits 4-5), on-grid end of discharge by SOC (bit 6).
DEFAULT_SYSTEM_ENABLE = 1 << 1 | 1 << 4 | 1 << 6


def default_holding(inverter_serial: str = DEFAULT_INVERTER_SERIAL) -> list[int]:
    """The holding registers of a freshly installed inverter (clock registers left 0)."""
    values = [0] * HOLDING_REGISTER_COUNT
    defaults = {
        0: 35462, 1: 1,  # "model": option bits (battery, meter), as captured
        # Firmware code "AAAA", an LXP 3-6K Hybrid (the model has PV strings; the
        # captured unit, an LXP-3600 ACS, said "BAAA"), and versions as captured.
        7: 16705, 8: 16705, 9: 2561, 10: 266,
        15: 1,  # Modbus address
        19: 4,  # device type
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
        rule = WRITABLE.get(register)
        if rule is None:
            raise UnknownRegister(register, "not a writable holding register")
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueOutOfRange(register, f"{value!r} is not a 16-bit value")
        if not rule.accepts(value):
            raise ValueOutOfRange(register, f"{value} is not {rule.description}")

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
            for register in sorted(WRITABLE)
            if register not in CLOCK_RULES
        }

    def load(self, saved: Mapping[int, int]) -> list[Change]:
        """Restore saved registers (validated like writes; the clock is not restored)."""
        changes = []
        for register, value in sorted(saved.items()):
            if register in CLOCK_RULES:
                continue
            changes.extend(self.write_many(register, (value,)))
        return changes


# -- the plant ----------------------------------------------------------------


@attrs.frozen
class Flows:
    """Instantaneous power, in watts, over the last integration step."""

    pv: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pv_available: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load: float = 0.0
    battery: float = 0.0  # positive: charging
    p_inv: float = 0.0  # DC -> AC
    p_rec: float = 0.0  # AC -> DC (charging from the grid)
    grid: float = 0.0  # positive: importing
    off_grid: bool = False  # the grid is down
    eps: float = 0.0  # the house load the EPS output carries while the grid is down

    @property
    def charge(self) -> int:
        """``p_charge`` as published."""
        return round(max(self.battery, 0.0))

    @property
    def discharge(self) -> int:
        """``p_discharge`` as published."""
        return round(max(-self.battery, 0.0))

    @property
    def status(self) -> int:
        """0 idle, 16 discharging, 32 charging (MQ.md), from the published powers.

        Off grid, the inverter's off-grid codes: 0x40 battery, 0x80 PV, 0xC0 PV and
        battery carry the EPS output, 0x88 PV carries it and charges, 0x08 PV only
        charges (the output off), 0 standby.
        """
        if self.off_grid:
            pv = round(sum(self.pv)) > 0
            if round(self.eps) > 0:
                if self.discharge > 0:
                    return 0xC0 if pv else 0x40
                return 0x88 if self.charge > 0 else 0x80
            return 0x08 if self.charge > 0 else 0
        if self.charge > 0:
            return 32
        if self.discharge > 0:
            return 16
        return 0


def sun(moment: datetime.datetime) -> float:
    """Clear-sky PV output at ``moment`` as a fraction of peak: 0 at night, 1 at a midsummer noon.

    A northern-European day: 8 hours of daylight in winter, 16 in summer,
    centred on 13:00 (solar noon in local summer time, near enough).
    """
    season = math.sin(2 * math.pi * (moment.timetuple().tm_yday - 80) / 365.25)
    day_length = 12.0 + 4.0 * season
    hour = moment.hour + moment.minute / 60 + moment.second / 3600 + moment.microsecond / 3.6e9
    position = (hour - (13.0 - day_length / 2)) / day_length
    if not 0.0 < position < 1.0:
        return 0.0
    return (0.65 + 0.35 * season) * math.sin(math.pi * position) ** 1.3


def house_load(moment: datetime.datetime) -> float:
    """The house's typical demand in watts: a base load, breakfast, lunch and evening peaks."""
    hour = moment.hour + moment.minute / 60 + moment.second / 3600

    def bump(centre: float, width: float) -> float:
        return math.exp(-(((hour - centre) / width) ** 2))

    return 300.0 + 700.0 * bump(7.5, 1.0) + 250.0 * bump(13.0, 2.5) + 1100.0 * bump(19.0, 2.0)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


SECONDS_A_DAY = 86400


def _slot_seconds(value: int) -> int:
    """A time-slot register as seconds after midnight."""
    time = holding.decode_time(value)
    return time.hour * 3600 + time.minute * 60


def slots_set(registers: Sequence[int], schedule: str) -> list[tuple[int, int]]:
    """The slots of ``schedule`` that are on, as (start, end) seconds after midnight.

    A slot whose start equals its end (``00:00-00:00``) is off.
    """
    slots = []
    for start, end in holding.TIME_SLOTS[schedule]:
        span = (_slot_seconds(registers[start]), _slot_seconds(registers[end]))
        if span[0] != span[1]:
            slots.append(span)
    return slots


def in_schedule(registers: Sequence[int], schedule: str, moment: datetime.datetime) -> bool:
    """True if ``moment`` is inside one of ``schedule``'s slots, or the schedule has none.

    A slot includes its start and excludes its end; one that ends before it
    starts runs over midnight (``23:00-05:00``).
    """
    slots = slots_set(registers, schedule)
    if not slots:
        return True
    second = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
    for start, end in slots:
        if start < end and start <= second < end:
            return True
        if start > end and (second >= start or second < end):
            return True
    return False


def seconds_to_next_slot_edge(registers: Sequence[int], moment: datetime.datetime) -> float:
    """Seconds from ``moment`` to the next start or end of any slot that is on (inf if none)."""
    second = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
    edges = [
        edge
        for schedule in holding.TIME_SLOTS
        for slot in slots_set(registers, schedule)
        for edge in slot
    ]
    return min(((edge - second) % SECONDS_A_DAY for edge in edges), default=math.inf)


@attrs.define
class Plant:
    """An inverter with its battery, PV strings, house and grid, on a simulated clock.

    ``now`` is the simulated true time (the sun follows it); ``clock`` is the
    inverter's own clock, which a client may set (holding registers 12-14).
    ``_day`` counters reset at the inverter clock's midnight.
    """

    start: datetime.datetime = DEFAULT_START
    seed: int | None = None
    inverter_serial: str = DEFAULT_INVERTER_SERIAL
    holding: HoldingRegisters = attrs.field(default=None)
    soc: float = attrs.field(default=None)  # percent, 0-100
    # How far the inverter's clock is ahead of the true time (negative: behind).
    clock_offset: datetime.timedelta = attrs.field(factory=datetime.timedelta)

    elapsed: float = attrs.field(init=False, default=0.0)  # simulated seconds since start
    # AC charge by SOC (register 120): charging since the SOC fell to register 160.
    ac_charge_latched: bool = attrs.field(init=False, default=False)
    # False during a grid outage (``Faults.grid_down``); set it with ``set_grid``.
    grid_up: bool = attrs.field(init=False, default=True)
    runtime: float = attrs.field(init=False, default=INITIAL_RUNTIME)
    energy_day: dict[str, float] = attrs.field(init=False)  # Wh
    energy_all: dict[str, float] = attrs.field(init=False)  # Wh
    flows: Flows = attrs.field(init=False, factory=Flows)
    cloud: float = attrs.field(init=False, default=0.85)  # fraction of clear-sky PV
    load_factor: float = attrs.field(init=False, default=1.0)
    v_grid: float = attrs.field(init=False, default=240.0)
    f_grid: float = attrs.field(init=False, default=50.0)
    _random: random.Random = attrs.field(init=False, repr=False)
    _day: datetime.date = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self):
        check_serial(self.inverter_serial, "inverter_serial")
        self._random = random.Random(self.seed)
        if self.holding is None:
            self.holding = HoldingRegisters(default_holding(self.inverter_serial))
        if self.soc is None:
            self.soc = round(self._random.uniform(35.0, 75.0), 1)
        self.energy_day = dict.fromkeys(ENERGY_KEYS, 0.0)
        self.energy_all = dict(INITIAL_TOTALS)
        self._day = self.clock.date()
        self._refresh_clock_registers()
        self.flows = self._flows(STEP)

    # -- time -------------------------------------------------------------------

    @property
    def now(self) -> datetime.datetime:
        """The simulated true time: the start plus the simulated seconds elapsed."""
        return self.start + datetime.timedelta(seconds=self.elapsed)

    @property
    def clock(self) -> datetime.datetime:
        """The inverter's clock, as holding registers 12-14 report it."""
        return self.now + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Run the plant for ``seconds`` of simulated time."""
        if seconds < 0:
            raise ValueError(f"time only moves forward: {seconds}")
        self._check_day()
        step_limit = max(STEP, seconds / MAX_STEPS)
        remaining = float(seconds)
        while remaining > 1e-9:
            step = min(remaining, step_limit)
            clock = self.clock
            midnight = datetime.datetime.combine(
                clock.date() + datetime.timedelta(days=1), datetime.time()
            )
            to_midnight = (midnight - clock).total_seconds()
            # Stop at midnight so that each day's counters get that day's energy,
            # and where a time slot starts or ends, so that it acts to the second.
            if to_midnight > 1e-3:
                step = min(step, to_midnight)
            to_edge = seconds_to_next_slot_edge(self.holding.values, clock)
            if to_edge > 1e-3:
                step = min(step, to_edge)
            self._step(step)
            remaining -= step
        self._refresh_clock_registers()

    def _check_day(self) -> None:
        today = self.clock.date()
        if today != self._day:
            self._day = today
            self.energy_day = dict.fromkeys(ENERGY_KEYS, 0.0)

    def _step(self, dt: float) -> None:
        self._drift(dt)
        self._update_ac_charge_latch()
        flows = self._flows(dt)
        hours = dt / 3600.0
        if flows.battery >= 0:
            self.soc += flows.battery * hours * EFFICIENCY / CAPACITY_WH * 100.0
        else:
            self.soc += flows.battery * hours / EFFICIENCY / CAPACITY_WH * 100.0
        self.soc = _clamp(self.soc, 0.0, 100.0)
        energy = {
            "pv_1": flows.pv[0], "pv_2": flows.pv[1], "pv_3": flows.pv[2],
            "inv": flows.p_inv, "rec": flows.p_rec,
            "chg": max(flows.battery, 0.0), "dischg": max(-flows.battery, 0.0), "eps": flows.eps,
            "to_grid": max(-flows.grid, 0.0), "to_user": max(flows.grid, 0.0),
        }
        for key, power in energy.items():
            self.energy_day[key] += power * hours
            self.energy_all[key] += power * hours
        self.flows = flows
        self.elapsed += dt
        self.runtime += dt
        self._check_day()

    def _drift(self, dt: float) -> None:
        """Move the weather, the house and the grid a little: mean-reverting random walks."""
        weight = min(1.0, math.sqrt(dt / 600.0))
        gauss = self._random.gauss
        self.cloud = _clamp(
            self.cloud + 0.3 * (0.85 - self.cloud) * weight + gauss(0.0, 0.12) * weight, 0.2, 1.0
        )
        self.load_factor = _clamp(
            self.load_factor + 0.3 * (1.0 - self.load_factor) * weight + gauss(0.0, 0.1) * weight,
            0.6,
            1.5,
        )
        self.v_grid = _clamp(
            self.v_grid + 0.3 * (240.0 - self.v_grid) * weight + gauss(0.0, 1.0) * weight,
            232.0,
            248.0,
        )
        self.f_grid = _clamp(50.0 + gauss(0.0, 0.02), 49.92, 50.08)

    def _ac_charge_by_soc(self) -> bool:
        """True if the AC charge type in register 120 starts and stops on SOC (160, 161)."""
        return holding.ac_charge_type(self.holding.values[holding.SYSTEM_ENABLE]) in (3, 5)

    def _update_ac_charge_latch(self) -> None:
        """AC charge by SOC starts when the SOC falls to register 160, stops at register 161."""
        registers = self.holding.values
        enabled = registers[holding.FUNCTION_BITS] >> holding.BITS[21]["ac_charge"] & 1
        if not enabled or not self._ac_charge_by_soc():
            self.ac_charge_latched = False
        elif self.soc <= registers[holding.AC_CHARGE_START_SOC]:
            self.ac_charge_latched = True
        elif self.soc >= registers[holding.AC_CHARGE_END_SOC]:
            self.ac_charge_latched = False

    def _ac_charge_target(self) -> float | None:
        """The SOC AC charging heads for now (reached or not), or None outside AC charging."""
        registers = self.holding.values
        if not registers[holding.FUNCTION_BITS] >> holding.BITS[21]["ac_charge"] & 1:
            return None
        charge_type = holding.ac_charge_type(registers[holding.SYSTEM_ENABLE])
        if charge_type != 3 and not in_schedule(registers, "ac_charge", self.clock):
            return None
        if self._ac_charge_by_soc():
            return registers[holding.AC_CHARGE_END_SOC] if self.ac_charge_latched else None
        return registers[holding.AC_CHARGE_SOC_LIMIT]

    def _flows(self, dt: float) -> Flows:
        """The power flows for the next ``dt`` seconds, from the weather and the registers."""
        registers = self.holding.values
        bits = registers[holding.FUNCTION_BITS]
        solar = sun(self.now) * self.cloud
        available = tuple(peak * solar for peak in PV_PEAK)
        pv = list(available)
        load = house_load(self.now) * self.load_factor

        def power_to(soc_limit: float, charging: bool) -> float:
            """The power that would take the battery to ``soc_limit`` within this step."""
            gap = (soc_limit - self.soc) if charging else (self.soc - soc_limit)
            if gap <= 0:
                return 0.0
            watts = gap / 100.0 * CAPACITY_WH * 3600.0 / dt
            return watts / EFFICIENCY if charging else watts * EFFICIENCY

        def percent(*registers_: int) -> float:
            return MAX_POWER * min(registers[r] for r in registers_) / 100.0

        solar_total = sum(pv)
        if not self.grid_up:
            return self._off_grid_flows(available, load, percent, power_to)
        clock = self.clock
        ac_charge_target = self._ac_charge_target()
        if bits >> holding.BITS[21]["forced_discharge"] & 1 and in_schedule(
            registers, "forced_discharge", clock
        ):
            floor = max(
                registers[holding.FORCED_DISCHARGE_SOC_LIMIT],
                registers[holding.DISCHARGE_CUTOFF_SOC],
            )
            battery = -min(
                percent(holding.DISCHARGE_POWER_PERCENT, holding.FORCED_DISCHARGE_POWER_PERCENT),
                power_to(floor, charging=False),
            )
        elif ac_charge_target is not None and self.soc < ac_charge_target:
            battery = min(
                percent(holding.CHARGE_POWER_PERCENT, holding.AC_CHARGE_POWER_PERCENT),
                power_to(ac_charge_target, charging=True),
            )
        elif ac_charge_target is not None and solar_total < load:
            # Full to the limit inside its AC charge time: the battery is kept for
            # later, the house runs from the grid (no charge-discharge see-saw).
            battery = 0.0
        elif (
            bits >> holding.BITS[21]["charge_priority"] & 1
            and in_schedule(registers, "charge_priority", clock)
            and self.soc < registers[holding.CHARGE_PRIORITY_SOC_LIMIT]
        ):
            battery = min(
                solar_total,
                percent(holding.CHARGE_POWER_PERCENT, holding.CHARGE_PRIORITY_POWER_PERCENT),
                power_to(registers[holding.CHARGE_PRIORITY_SOC_LIMIT], charging=True),
            )
        elif solar_total >= load:
            battery = min(
                solar_total - load,
                percent(holding.CHARGE_POWER_PERCENT),
                power_to(100.0, charging=True),
            )
        else:
            battery = -min(
                load - solar_total,
                percent(holding.DISCHARGE_POWER_PERCENT),
                power_to(registers[holding.DISCHARGE_CUTOFF_SOC], charging=False),
            )

        # The inverter converts at most MAX_POWER: trim the discharge first, then PV.
        excess = solar_total - battery - MAX_POWER
        if excess > 0:
            if battery < 0:
                cut = min(excess, -battery)
                battery += cut
                excess -= cut
            if excess > 0 and solar_total > 0:
                scale = max(0.0, (solar_total - excess) / solar_total)
                pv = [power * scale for power in pv]
                solar_total = sum(pv)

        dc_surplus = solar_total - battery
        p_inv = max(dc_surplus, 0.0)
        p_rec = max(-dc_surplus, 0.0)
        return Flows(
            pv=(pv[0], pv[1], pv[2]),
            pv_available=(available[0], available[1], available[2]),
            load=load,
            battery=battery,
            p_inv=p_inv,
            p_rec=p_rec,
            grid=load - p_inv + p_rec,
        )

    def _off_grid_flows(self, available, load, percent, power_to) -> Flows:
        """A power cut: with EPS on (21 bit 0) PV and the battery carry the house, down to
        the EPS cut-off SOC (125); the output trips when they cannot carry it all. No grid
        charging, no export: PV beyond the house and the battery is curtailed."""
        registers = self.holding.values
        solar_total = sum(available)
        eps_enabled = registers[holding.FUNCTION_BITS] >> holding.BITS[21]["eps"] & 1
        from_battery = min(
            percent(holding.DISCHARGE_POWER_PERCENT),
            power_to(registers[holding.EPS_DISCHARGE_CUTOFF_SOC], charging=False),
        )
        carried = eps_enabled and load <= MAX_POWER and solar_total + from_battery >= load
        served = load if carried else 0.0
        if solar_total >= served:
            battery = min(
                solar_total - served, percent(holding.CHARGE_POWER_PERCENT),
                power_to(100.0, charging=True),
            )
        else:
            battery = solar_total - served  # the battery covers the rest
        used = served + max(battery, 0.0)
        scale = min(1.0, used / solar_total) if solar_total > 0 else 0.0
        return Flows(
            pv=(available[0] * scale, available[1] * scale, available[2] * scale),
            pv_available=(available[0], available[1], available[2]),
            load=load,
            battery=battery,
            off_grid=True,
            eps=served,
        )

    # -- holding registers ----------------------------------------------------

    def _refresh_clock_registers(self) -> None:
        clock = self.clock
        if 2000 <= clock.year <= 2255:
            self.holding.values[12:15] = holding.encode_clock(clock)

    def read_holding(self, register: int, count: int = 1) -> tuple[int, ...]:
        """Holding registers as a read-hold reply reports them (the clock is live)."""
        self._refresh_clock_registers()
        return self.holding.read(register, count)

    def write_holding(self, register: int, values: Iterable[int]) -> list[Change]:
        """Write registers as the inverter does: all or nothing, setting the clock via 12-14.

        Raises UnknownRegister or ValueOutOfRange (with nothing changed) when refused.
        """
        values = tuple(values)
        if not values:
            raise ValueOutOfRange(register, "nothing to write")
        for offset, value in enumerate(values):
            self.holding.check(register + offset, value)
        touched = range(register, register + len(values))
        new_clock = None
        if any(r in CLOCK_RULES for r in touched):
            self._refresh_clock_registers()
            clock_values = list(self.holding.values[12:15])
            for offset, value in enumerate(values):
                if register + offset in CLOCK_RULES:
                    clock_values[register + offset - 12] = value
            try:
                new_clock = holding.decode_clock(*clock_values)
            except ValueError as error:
                raise ValueOutOfRange(register, f"not a valid date and time: {error}") from None
        changes = self.holding.write_many(register, values)
        if new_clock is not None:
            self.set_clock_offset(new_clock - self.now)
        self._update_ac_charge_latch()
        self.flows = self._flows(STEP)  # a command takes effect at once
        return changes

    def set_grid(self, up: bool) -> None:
        """Bring the grid up or down (a power cut); it takes effect at once."""
        self.grid_up = up
        self.flows = self._flows(STEP)

    def set_clock_offset(self, offset: datetime.timedelta) -> None:
        """Put the inverter's clock ``offset`` ahead of the true time (a clock set or restored)."""
        self.clock_offset = offset
        self._check_day()
        self._refresh_clock_registers()
        self._update_ac_charge_latch()
        self.flows = self._flows(STEP)

    # -- input registers --------------------------------------------------------

    def input_values(self) -> dict[str, int | float | str]:
        """What the inverter reports now, keyed as ``octolux.lxp.inputs.FIELDS``, in its units.

        Unnamed registers (block 4: no generator, no split-phase EPS) read 0.
        A pure function of the state: calling it twice gives the same values.
        """
        flows = self.flows
        battery = flows.battery
        v_bat = 48.0 + 5.6 * self.soc / 100.0 + 0.8 * battery / MAX_POWER
        throughput = flows.p_inv + flows.p_rec + flows.eps
        t_bat = round(21 + abs(battery) / 1000)
        cell = v_bat / BATTERY_CELLS
        if not flows.off_grid:  # the EPS output follows the grid
            v_eps, f_eps = self.v_grid, self.f_grid
        elif flows.eps > 0:  # the inverter makes its own: registers 90 and 91
            v_eps = float(self.holding.values[90])
            f_eps = float(self.holding.values[91])
        else:
            v_eps = f_eps = 0.0
        charged = self.energy_all["chg"] - INITIAL_TOTALS["chg"]
        values: dict[str, int | float | str] = {
            # -- inputs/1
            "status": flows.status,
            "v_bat": v_bat,
            "soc": round(self.soc),
            "soh": STATE_OF_HEALTH,
            "p_charge": flows.charge,
            "p_discharge": flows.discharge,
            "v_acr": 0.0 if flows.off_grid else self.v_grid,
            "f_ac": 0.0 if flows.off_grid else self.f_grid,
            "p_inv": flows.p_inv,
            "p_rec": flows.p_rec,
            "pf": 1.0,
            "v_eps": v_eps,
            "f_eps": f_eps,
            "p_eps": flows.eps,
            "s_eps": flows.eps,
            "p_to_grid": max(-flows.grid, 0.0),
            "p_to_user": max(flows.grid, 0.0),
            "v_bus_1": 380.0 + 0.4 * (self.v_grid - 240.0),
            "v_bus_2": 310.0 + 0.3 * (self.v_grid - 240.0),
            # -- inputs/2
            "t_inner": 28 + throughput / 300,
            "t_rad_1": 24 + throughput / 400,
            "t_rad_2": 23 + throughput / 450,
            "t_bat": t_bat,
            "runtime": int(self.runtime),
            # -- inputs/3: a BMS with the founding spec's example limits
            "max_chg_curr": 105.0,
            "max_dischg_curr": 150.0,
            "charge_volt_ref": 53.2,
            "dischg_cut_volt": 40.0,
            "bat_status_5": 192,
            "bat_status_inv": 3,
            "bat_count": 1,
            "bat_capacity": BATTERY_AMP_HOURS,
            "bat_current": battery / v_bat,
            "max_cell_voltage": cell + 0.004,
            "min_cell_voltage": cell - 0.004,
            "max_cell_temp": t_bat + 1.5,
            "min_cell_temp": t_bat - 0.5,
            "bat_cycle_count": INITIAL_CYCLES + int(charged // CAPACITY_WH),
            "v_bat_inv": v_bat - 0.1,
            "inverter_serial": self.inverter_serial,
        }
        for string, (peak, power, available) in enumerate(
            zip(PV_PEAK, flows.pv, flows.pv_available, strict=True), 1
        ):
            values[f"p_pv_{string}"] = power
            # The string voltage rises steeply with the first light, then flattens.
            volts = 250.0 + 110.0 * (available / peak) ** 0.25 if available else 0.0
            values[f"v_pv_{string}"] = volts
        for key in ENERGY_KEYS:
            # kWh in whole tenths, as a meter counts them: a tenth shows once it is complete.
            values[f"e_{key}_day"] = self.energy_day[key] // 100 / 10
            values[f"e_{key}_all"] = self.energy_all[key] // 100 / 10
        return values

    def input_registers(self) -> tuple[int, ...]:
        """Input registers 0-159 as raw u16 values: ``input_values()`` packed by ``encode_inputs``.

        A pure function of the state: calling it twice gives the same values.
        """
        return encode_inputs(self.input_values(), INPUT_REGISTER_COUNT)
