"""The simulated inverter, battery, solar array and house: a pure model.

No Twisted, no I/O, no wall clock. Time moves only through ``Plant.advance``
(simulated seconds), and every random number comes from one ``random.Random``
seeded at construction, so the same seed, start time and calls give the same
registers. The plant reports named physical values (``input_values()``, keyed
as ``octolux.lxp.inputs.FIELDS``); ``input_registers()`` packs them with
``encode_inputs``, so the register layout is written only in ``octolux.lxp``.

The plant keeps the state (battery, energy counters, weather, the inverter's
clock) and steps it; the rest lives beside it: ``simulator.registers`` (the
holding bank), ``simulator.flows`` (the inverter's decision, step by step),
``simulator.schedule`` (sun, house, time slots), ``simulator.report`` (the
input values) and ``simulator.installation`` (ratings and history).

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
from collections.abc import Iterable

import attrs

from octolux.lxp import holding
from octolux.lxp.frames import check_serial
from octolux.lxp.inputs import encode_inputs
from simulator.flows import Conditions, Flows, power_flows
from simulator.installation import (
    CAPACITY_WH,
    EFFICIENCY,
    ENERGY_KEYS,
    INITIAL_RUNTIME,
    INITIAL_TOTALS,
    PV_PEAK,
)
from simulator.models import DEFAULT_MODEL, SimulatedModel
from simulator.registers import (
    DEFAULT_INVERTER_SERIAL,
    Change,
    HoldingRegisters,
    ValueOutOfRange,
    default_holding,
)
from simulator.report import battery_registers, input_values
from simulator.schedule import house_load, in_schedule, seconds_to_next_slot_edge, sun

DEFAULT_START = datetime.datetime(2024, 6, 21, 12, 0, 0)

# Longest integration step, in simulated seconds, unless a single advance is so
# long that it would need more than MAX_STEPS steps: then the steps grow, so
# that a thousandfold --speed costs bounded CPU per broadcast.
STEP = 60.0
MAX_STEPS = 2000



def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


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
    model: SimulatedModel = DEFAULT_MODEL
    batteries: int = 0  # battery modules reporting through input registers 5002+ (0: none)
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
            self.holding = HoldingRegisters(default_holding(self.inverter_serial, self.model))
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
            "load_meter": flows.load,
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
        solar = sun(self.now) * self.cloud
        return power_flows(Conditions(
            registers=self.holding.values,
            soc=self.soc,
            available=(PV_PEAK[0] * solar, PV_PEAK[1] * solar, PV_PEAK[2] * solar),
            load=house_load(self.now) * self.load_factor,
            dt=dt,
            clock=self.clock,
            ac_charge_target=self._ac_charge_target(),
            grid_up=self.grid_up,
        ))


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
        if any(r in holding.CLOCK_RULES for r in touched):
            self._refresh_clock_registers()
            clock_values = list(self.holding.values[12:15])
            for offset, value in enumerate(values):
                if register + offset in holding.CLOCK_RULES:
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
        """What the inverter reports now (``simulator.report.input_values``)."""
        return input_values(self)

    def input_registers(self) -> tuple[int, ...]:
        """The model's input registers (0-159, or 0-380) as raw u16 values: ``input_values()``
        packed by ``encode_inputs``.

        A pure function of the state: calling it twice gives the same values.
        """
        return encode_inputs(self.input_values(), self.model.input_count)

    def battery_registers(self, rotation: int = 0) -> tuple[int, ...]:
        """Input registers 5002-5121: the modules in the 4 slots (``simulator.report``).

        With more than 4 modules, ``rotation`` says which come first, as the
        firmware rotates them through the slots.
        """
        return battery_registers(self, rotation)
