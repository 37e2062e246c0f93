"""Where the power goes: the inverter's decision, from its settings, for one step. Pure.

``power_flows`` takes what the sun and the house offer (PV available per
string, the house load), the battery's state of charge and the holding
registers, and returns the ``Flows``: a pure function, which is what lets the
plant step it at slot edges and replay it with a seed.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import attrs

from octolux.lxp import holding
from simulator.installation import CAPACITY_WH, EFFICIENCY, MAX_POWER
from simulator.schedule import in_schedule


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


@attrs.frozen
class Conditions:
    """What one step's decision starts from."""

    registers: Sequence[int]  # the holding registers
    soc: float  # percent
    available: tuple[float, float, float]  # W of PV each string could give
    load: float  # W the house wants
    dt: float  # seconds the step lasts
    clock: datetime.datetime  # the inverter's own clock: its time slots follow it
    ac_charge_target: float | None  # the SOC AC charging heads for, None outside it
    grid_up: bool = True

    def power_to(self, soc_limit: float, charging: bool) -> float:
        """The power that would take the battery to ``soc_limit`` within this step."""
        gap = (soc_limit - self.soc) if charging else (self.soc - soc_limit)
        if gap <= 0:
            return 0.0
        watts = gap / 100.0 * CAPACITY_WH * 3600.0 / self.dt
        return watts / EFFICIENCY if charging else watts * EFFICIENCY

    def percent(self, *registers: int) -> float:
        """``MAX_POWER`` times the lowest of these percentage registers."""
        return MAX_POWER * min(self.registers[r] for r in registers) / 100.0

    def enabled(self, name: str) -> bool:
        """Register 21's bit ``name``."""
        return bool(self.registers[holding.FUNCTION_BITS] >> holding.BITS[21][name] & 1)


def power_flows(conditions: Conditions) -> Flows:
    """The power flows for the step: the first mode that applies, in the inverter's order.

    Forced discharge in its slots, AC charge (to its target, then resting), charge
    priority in its slots, else PV to the house with the surplus charging and the
    battery covering the rest; off grid, ``off_grid_flows``.
    """
    if not conditions.grid_up:
        return off_grid_flows(conditions)
    c = conditions
    registers, load = c.registers, c.load
    available = c.available
    pv = list(available)
    solar_total = sum(pv)
    target = c.ac_charge_target
    if c.enabled("forced_discharge") and in_schedule(registers, "forced_discharge", c.clock):
        floor = max(
            registers[holding.FORCED_DISCHARGE_SOC_LIMIT],
            registers[holding.DISCHARGE_CUTOFF_SOC],
        )
        battery = -min(
            c.percent(holding.DISCHARGE_POWER_PERCENT, holding.FORCED_DISCHARGE_POWER_PERCENT),
            c.power_to(floor, charging=False),
        )
    elif target is not None and c.soc < target:
        battery = min(
            c.percent(holding.CHARGE_POWER_PERCENT, holding.AC_CHARGE_POWER_PERCENT),
            c.power_to(target, charging=True),
        )
    elif target is not None and solar_total < load:
        # Full to the limit inside its AC charge time: the battery is kept for
        # later, the house runs from the grid (no charge-discharge see-saw).
        battery = 0.0
    elif (
        c.enabled("charge_priority")
        and in_schedule(registers, "charge_priority", c.clock)
        and c.soc < registers[holding.CHARGE_PRIORITY_SOC_LIMIT]
    ):
        battery = min(
            solar_total,
            c.percent(holding.CHARGE_POWER_PERCENT, holding.CHARGE_PRIORITY_POWER_PERCENT),
            c.power_to(registers[holding.CHARGE_PRIORITY_SOC_LIMIT], charging=True),
        )
    elif solar_total >= load:
        battery = min(
            solar_total - load,
            c.percent(holding.CHARGE_POWER_PERCENT),
            c.power_to(100.0, charging=True),
        )
    else:
        battery = -min(
            load - solar_total,
            c.percent(holding.DISCHARGE_POWER_PERCENT),
            c.power_to(registers[holding.DISCHARGE_CUTOFF_SOC], charging=False),
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


def off_grid_flows(conditions: Conditions) -> Flows:
    """A power cut: with EPS on (21 bit 0) PV and the battery carry the house, down to
    the EPS cut-off SOC (125); the output trips when they cannot carry it all. No grid
    charging, no export: PV beyond the house and the battery is curtailed."""
    c = conditions
    registers, available, load = c.registers, c.available, c.load
    solar_total = sum(available)
    from_battery = min(
        c.percent(holding.DISCHARGE_POWER_PERCENT),
        c.power_to(registers[holding.EPS_DISCHARGE_CUTOFF_SOC], charging=False),
    )
    carried = c.enabled("eps") and load <= MAX_POWER and solar_total + from_battery >= load
    served = load if carried else 0.0
    if solar_total >= served:
        battery = min(
            solar_total - served, c.percent(holding.CHARGE_POWER_PERCENT),
            c.power_to(100.0, charging=True),
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
