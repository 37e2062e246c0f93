"""What the battery does in each half-hour, chosen from the prices. Pure: no clock, no I/O.

Two planners:

- ``original_plan``: the original tool's rule (``doc/rules.example.agile_cheap_slots.rb``
  of the Ruby octolux): the kWh needed to reach ``required_soc`` from the
  battery count, charged in the cheapest half-hours overnight (20:00-08:59),
  plus every half-hour cheaper than ``cheap_charge``; the battery may discharge
  only where the price beats the dearest chosen charge price by a margin that
  shrinks as the SOC rises, and ``min_discharge``; an emergency charge when the
  SOC is below ``emergency_soc`` and a dear half-hour (over 15p) is within two
  hours while this one is cheap.
- ``optimal_plan`` (ours): a dynamic programme over the known prices with the
  house load and PV forecast from the recorded history, choosing for each
  half-hour one of the inverter's own modes (AC charge to a target then rest,
  battery serves the house, forced discharge to export when an export tariff is
  given), the AC charge target too.

Actions in a plan: ``charge`` (AC charge window, expected to charge), ``hold``
(AC charge window, the battery at its target rests), ``use`` (the battery
serves the house), ``export`` (forced discharge window), ``idle`` (the
original's half-hours that are neither charge nor discharge).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

import attrs

from octolux.automation.prices import HALF_HOUR, Price

ACTIONS = ("charge", "hold", "use", "export", "idle")
PLANNERS = ("original", "ours")
MAX_WINDOWS = 3  # the inverter has three AC charge and three forced discharge slots
EXECUTED_SLOTS = 47  # half-hours a plan writes ahead: under 24 h, so no slot means two times
DEAR = 15.0  # p/kWh: the original's "peak" for its emergency charge
KWH_PER_BATTERY = 2.4  # the original's battery size, per [lxp] batteries
SOC_STEP = 2.0  # the dynamic programme's grid of SOC levels, in percent


@attrs.frozen
class Battery:
    """The battery as the planners model it: usable capacity, power and losses each way."""

    capacity_kwh: float
    max_power_kw: float
    efficiency: float = 0.95
    cutoff_soc: float = 10.0  # on-grid discharge stops here

    @classmethod
    def from_count(cls, batteries: int) -> Battery:
        """The original's model: 2.4 kWh per battery, charged at 1 kW per battery up to 3 kW."""
        return cls(KWH_PER_BATTERY * batteries, float(min(3, batteries)))


@attrs.frozen
class Rules:
    """``[rules]``: the original's four numbers (percent, percent, p/kWh, p/kWh)."""

    required_soc: float = 90.0
    emergency_soc: float = 50.0
    cheap_charge: float = 2.0
    min_discharge: float = 3.0


@attrs.frozen
class HalfHour:
    """A half-hour ahead: its prices and the house's forecast load and PV, in kWh."""

    start: float
    price: float
    export_price: float | None = None
    load_kwh: float = 0.0
    pv_kwh: float = 0.0


@attrs.frozen
class PlannedSlot:
    """One half-hour of a plan: what the battery does and why."""

    start: float
    price: float
    action: str
    why: str = ""
    export_price: float | None = None


@attrs.frozen
class Plan:
    """A planner's choice for the half-hours ahead, with the SOC targets it writes."""

    planner: str
    made_at: float
    soc: float  # the SOC it was made from
    slots: tuple[PlannedSlot, ...]
    charge_soc: int  # AC charge up to this SOC (the charge and hold windows)
    export_soc: int  # forced discharge down to this SOC
    summary: str = ""

    def action_at(self, moment: float) -> str | None:
        """The action of the half-hour holding ``moment``, None outside the plan."""
        for slot in self.slots:
            if slot.start <= moment < slot.start + HALF_HOUR:
                return slot.action
        return None

    def to_json(self) -> dict:
        """The plan as MQTT's ``plan`` publishes it."""
        return {
            "planner": self.planner,
            "made_at": _iso(self.made_at),
            "soc": round(self.soc, 1),
            "charge_soc": self.charge_soc,
            "export_soc": self.export_soc,
            "summary": self.summary,
            "slots": [
                {"start": _iso(slot.start), "price": round(slot.price, 3),
                 **({} if slot.export_price is None
                    else {"export_price": round(slot.export_price, 3)}),
                 "action": slot.action, **({"why": slot.why} if slot.why else {})}
                for slot in self.slots
            ],
        }


def _iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def plan_from_json(body: dict) -> Plan:
    """A plan as ``Plan.to_json`` wrote it (kept across restarts)."""
    return Plan(
        body["planner"], _from_iso(body["made_at"]), float(body["soc"]),
        tuple(PlannedSlot(_from_iso(s["start"]), float(s["price"]), s["action"], s.get("why", ""),
                          s.get("export_price")) for s in body["slots"]),
        int(body["charge_soc"]), int(body["export_soc"]), body.get("summary", ""),
    )



def half_hour_start(moment: float) -> float:
    """The start of the half-hour holding ``moment`` (half-hours are whole in UTC, as in any zone
    the UK has used)."""
    return math.floor(moment / HALF_HOUR) * HALF_HOUR


def _local(moment: float, tz: datetime.tzinfo | None) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(moment, tz)


# -- the original rule ------------------------------------------------------------------


def original_plan(
    now: float,
    soc: float,
    prices: Sequence[Price],
    rules: Rules,
    batteries: int,
    tz: datetime.tzinfo | None = None,
    kept: Plan | None = None,
) -> Plan:
    """The original tool's rule. ``kept``: its last plan, whose charge half-hours it keeps
    until the evening's new prices (18:00) or for 23 hours, as the original kept its
    ``cheap_slot_data.json``."""
    current = half_hour_start(now)
    ahead = [price for price in prices if price.start >= current]
    local_now = _local(now, tz)
    charge_why: dict[float, str] = {}
    reasons = []
    if _keep_charge_slots(kept, now, tz) or len(ahead) <= 20:
        charge_why = {slot.start: slot.why for slot in kept.slots
                      if slot.action == "charge" and slot.start >= current
                      and slot.why.startswith("cheapest")} if kept is not None else {}
    else:
        system_kwh = KWH_PER_BATTERY * batteries
        charge_kwh = max(0.0, system_kwh * (rules.required_soc - soc) / 100.0)
        rate = min(3, batteries)
        needed = math.ceil(charge_kwh / rate * 2) if rate else 0
        night = [
            price for price in ahead
            if (local_now.hour > 8 and _local(price.start, tz).day == local_now.day
                and _local(price.start, tz).hour >= 20)
            or _local(price.start, tz).hour <= 8
        ]
        night.sort(key=lambda price: (price.pence, price.start))
        for price in night[:needed]:
            charge_why[price.start] = f"cheapest overnight ({charge_kwh:.1f} kWh needed)"
        reasons.append(f"{charge_kwh:.1f} kWh to reach {rules.required_soc:g}%:"
                       f" {needed} half-hours")
    for price in ahead:
        if price.pence < rules.cheap_charge and price.start not in charge_why:
            charge_why[price.start] = f"below cheap_charge {rules.cheap_charge:g}p"
    charged = [price.pence for price in ahead if price.start in charge_why]
    top_charge = max(charged, default=rules.cheap_charge)
    multiplier = _discharge_margin(soc)
    min_discharge = round(max(top_charge * multiplier, rules.min_discharge), 4)
    reasons.append(f"discharge above {min_discharge:g}p"
                   f" (charge up to {top_charge:g}p x {multiplier:g})")
    if (ahead and soc < rules.emergency_soc and ahead[0].start == current
            and max(price.pence for price in ahead[:4]) > DEAR and ahead[0].pence < DEAR):
        charge_why[current] = f"emergency: SOC {soc:g}% below {rules.emergency_soc:g}%" \
                              " with a dear half-hour near"
        reasons.append("emergency charge")
    slots = []
    for price in ahead:
        if price.start in charge_why:
            slots.append(PlannedSlot(price.start, price.pence, "charge", charge_why[price.start]))
        elif price.pence > min_discharge:
            slots.append(PlannedSlot(price.start, price.pence, "use",
                                     f"above {min_discharge:g}p"))
        else:
            slots.append(PlannedSlot(price.start, price.pence, "idle"))
    # The original switched AC charge on with the inverter's own limit: its
    # half-hours are counted to reach required_soc, and cheap ones fill it up.
    return Plan("original", now, soc, tuple(slots), charge_soc=100, export_soc=10,
                summary="; ".join(reasons))


def _keep_charge_slots(kept: Plan | None, now: float, tz: datetime.tzinfo | None) -> bool:
    """Does the original keep ``kept``'s charge half-hours (no evening, not stale)?"""
    if kept is None or kept.planner != "original":
        return False
    if now - kept.made_at > 23 * 3600:
        return False
    local_now = _local(now, tz)
    if local_now.hour < 18:
        return True
    evening = local_now.replace(hour=18, minute=0, second=0, microsecond=0).timestamp()
    return kept.made_at >= evening


def _discharge_margin(soc: float) -> float:
    """The original's margin over the charge price: the fuller the battery, the smaller."""
    for below, multiplier in ((30, 1.6), (40, 1.5), (50, 1.4), (60, 1.3), (80, 1.2)):
        if soc < below:
            return multiplier
    return 1.1


# -- ours -------------------------------------------------------------------------------


def optimal_plan(
    now: float,
    soc: float,
    half_hours: Sequence[HalfHour],
    battery: Battery,
    rules: Rules,
    targets: Sequence[float] = (),
) -> Plan:
    """Our planner: the cheapest sequence of the inverter's modes over ``half_hours``.

    Each candidate AC charge target (``targets``, else ``required_soc`` and 100)
    gets a dynamic programme over SOC levels; the cheapest wins. Energy left at
    the end is valued at the cheapest known prices, so the plan neither dumps
    nor hoards it. Then at most three windows of each kind are kept
    (``limit_windows``).
    """
    current = half_hour_start(now)
    ahead = [h for h in half_hours if h.start >= current]
    if not ahead:
        return Plan("ours", now, soc, (), round(rules.required_soc), round(battery.cutoff_soc),
                    "no prices ahead")
    export_soc = max(battery.cutoff_soc, 10.0)
    cheap = sorted(h.price for h in ahead)[:6]
    end_value = max(0.0, sum(cheap) / len(cheap))
    candidates = sorted(set(targets or (rules.required_soc, 100.0)))
    best = None
    for target in candidates:
        cost, actions = _programme(soc, ahead, battery, target, export_soc, end_value)
        if best is None or cost < best[0] - 1e-9:
            best = (cost, actions, target)
    cost, actions, target = best
    actions = limit_windows(actions)
    slots = []
    level = soc
    for half_hour, action in zip(ahead, actions, strict=True):
        after, grid = _step(level, half_hour, action, battery, target, export_soc)
        label = action
        if action == "charge" and after <= level + 0.05:
            label = "hold"
        why = _why(label, half_hour, grid)
        slots.append(PlannedSlot(half_hour.start, half_hour.price, label, why,
                                 half_hour.export_price))
        level = after
    summary = (f"AC charge to {target:g}%; expected cost {cost / 100:.2f} GBP over"
               f" {len(ahead) / 2:g} h (energy left valued at {end_value:.1f}p/kWh)")
    return Plan("ours", now, soc, tuple(slots), round(target), round(export_soc), summary)


def _why(action: str, half_hour: HalfHour, grid: float) -> str:
    if action == "charge":
        return f"charge {grid:.2f} kWh from the grid at {half_hour.price:.1f}p"
    if action == "hold":
        return "keep the battery for dearer half-hours"
    if action == "export":
        return f"export at {half_hour.export_price:.1f}p"
    return ""


_MODES = ("charge", "use", "export")


def _step(soc: float, half_hour: HalfHour, mode: str, battery: Battery, target: float,
          floor: float) -> tuple[float, float]:
    """(SOC after, kWh from the grid: negative exports) for one half-hour in ``mode``.

    The inverter's own behaviour, as the simulator models it: AC charge charges
    to its target at full rate then rests (the house on the grid) unless PV is
    spare; forced discharge empties to its floor at full rate; otherwise the
    battery takes spare PV and serves the house down to its cut-off.
    """
    capacity = battery.capacity_kwh
    efficiency = battery.efficiency
    rate = battery.max_power_kw * HALF_HOUR / 3600.0
    net = half_hour.load_kwh - half_hour.pv_kwh
    to_full = max(0.0, (100.0 - soc) / 100.0 * capacity / efficiency)
    if mode == "charge" and soc < target:
        stored = min(rate, (target - soc) / 100.0 * capacity / efficiency)
        return soc + stored * efficiency / capacity * 100.0, net + stored
    if mode == "export":
        out = min(rate, max(0.0, (soc - max(floor, battery.cutoff_soc)) / 100.0 * capacity
                            * efficiency))
        return soc - out / efficiency / capacity * 100.0, net - out
    if net < 0:  # spare PV charges the battery in every mode
        stored = min(-net, rate, to_full)
        return soc + stored * efficiency / capacity * 100.0, net + stored
    if mode == "charge":  # at its target inside an AC charge window: rest
        return soc, net
    out = min(net, rate, max(0.0, (soc - battery.cutoff_soc) / 100.0 * capacity * efficiency))
    return soc - out / efficiency / capacity * 100.0, net - out


def _cost(grid: float, half_hour: HalfHour) -> float:
    if grid >= 0:
        return grid * half_hour.price
    return grid * (half_hour.export_price or 0.0)


def _programme(soc: float, ahead: Sequence[HalfHour], battery: Battery, target: float,
               floor: float, end_value: float) -> tuple[float, list[str]]:
    """(expected pence, the mode of each half-hour) minimising the cost from ``soc``."""
    levels = [n * SOC_STEP for n in range(int(100 / SOC_STEP) + 1)]
    top = len(levels) - 1
    usable = battery.capacity_kwh * battery.efficiency / 100.0
    value = [-max(0.0, level - battery.cutoff_soc) * usable * end_value for level in levels]
    choices: list[list[str]] = []
    modes = _MODES if any(h.export_price is not None for h in ahead) else _MODES[:2]

    def interpolate(table: list[float], level: float) -> float:
        position = min(max(level / SOC_STEP, 0.0), float(top))
        low = int(position)
        if low >= top:
            return table[top]
        fraction = position - low
        return table[low] * (1.0 - fraction) + table[low + 1] * fraction

    for half_hour in reversed(ahead):
        allowed = modes if half_hour.export_price is not None else _MODES[:2]
        new_value = []
        chosen = []
        for level in levels:
            best_cost, best_mode = math.inf, "use"
            for mode in allowed:
                after, grid = _step(level, half_hour, mode, battery, target, floor)
                cost = _cost(grid, half_hour) + interpolate(value, after)
                if cost < best_cost - 1e-9:
                    best_cost, best_mode = cost, mode
            new_value.append(best_cost)
            chosen.append(best_mode)
        value = new_value
        choices.append(chosen)
    choices.reverse()
    actions = []
    level = soc
    for half_hour, chosen in zip(ahead, choices, strict=True):
        position = min(max(round(level / SOC_STEP), 0), top)
        mode = chosen[position]
        actions.append(mode)
        level, _ = _step(level, half_hour, mode, battery, target, floor)
    return interpolate(value, soc), actions


# -- the inverter's three windows per mode ----------------------------------------------


def limit_windows(actions: Sequence[str], windows: int = MAX_WINDOWS,
                  executed: int = EXECUTED_SLOTS) -> list[str]:
    """``actions`` with at most ``windows`` runs of AC charge and of export in the first
    ``executed`` half-hours: the shortest gap between two runs is filled (with ``use``
    half-hours only), else the shortest run is dropped."""
    result = list(actions)
    for mode in ("charge", "export"):
        while True:
            runs = _runs(result[:executed], mode)
            if len(runs) <= windows:
                break
            gaps = [
                (runs[n + 1][0] - runs[n][1], n) for n in range(len(runs) - 1)
                if all(result[i] == "use" for i in range(runs[n][1], runs[n + 1][0]))
            ]
            if gaps:
                _, n = min(gaps)
                for i in range(runs[n][1], runs[n + 1][0]):
                    result[i] = mode
            else:
                start, end = min(runs, key=lambda run: (run[1] - run[0], run[0]))
                for i in range(start, end):
                    result[i] = "use"
    return result


def _runs(actions: Sequence[str], mode: str) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive ``mode`` (``hold`` counts as ``charge``)."""
    runs = []
    start = None
    for index, action in enumerate([*actions, None]):
        same = action == mode or (mode == "charge" and action == "hold")
        if same and start is None:
            start = index
        elif not same and start is not None:
            runs.append((start, index))
            start = None
    return runs


def forecast(samples: Sequence[tuple[float, float]], starts: Sequence[float],
             tz: datetime.tzinfo | None = None, default: float = 0.0) -> list[float]:
    """kWh per half-hour at ``starts``: the mean of the recorded power (W) at the same time
    of day in ``samples`` ((time, watts) pairs), ``default`` kWh where none was recorded."""
    sums: dict[tuple[int, int], list[float]] = {}
    for moment, watts in samples:
        local = _local(moment, tz)
        sums.setdefault((local.hour, local.minute // 30), []).append(watts)
    result = []
    for start in starts:
        local = _local(start, tz)
        values = sums.get((local.hour, local.minute // 30))
        result.append(sum(values) / len(values) / 1000.0 * 0.5 if values else default)
    return result
