"""What the battery saves on Octopus Agile: no battery, the original's rule, ours, the optimum.

    .venv/bin/python bench/agile.py [--prices PATH] [--days 90] [--no-export] [--replan 3]

Replays real published Agile prices, half-hour by half-hour, against the
simulator's inverter, battery, PV and house (``simulator/plant.py``,
``simulator/installation.py``: 10.24 kWh,
3.6 kW, 95 % each way; its house load profile and weather, seeded, so every
strategy meets the same house and sky), and prints the electricity cost of:

- no battery (charge and discharge rates 0);
- the original tool's rule (``original_plan``), run as the original ran it:
  every half-hour it switches AC charge on or off and allows the battery to
  discharge (discharge rate 100 %) or not (0 %);
- ours (``optimal_plan``), carried out as the bridge carries it out: the
  inverter's AC charge and forced discharge time slots and SOC limits, written
  every ``--replan`` hours and when the next day's prices are published
  (16:00 UK time), with the load and PV forecast from the last 7 days recorded;
- the perfect-foresight optimum for the same days: a dynamic programme over
  the whole period knowing every price, load and PV figure in advance, with
  the battery free to charge or discharge any amount in any half-hour.

Exports earn the Agile Outgoing price of the same file unless ``--no-export``
(then exported energy earns nothing and ours never exports on purpose).

Prices: the CSV of ``agile.octopushome.net``'s historical-data download
(``Period from,Period to,Agile Import price (p/kWh),Agile Export price
(p/kWh)``, UK local times, Octopus's published Agile and Agile Outgoing unit
rates). The copy measured is
``data/agile-half-hour-actual-rates-01-11-2022_20-12-2023.csv`` of the public
GitHub repository fawkesley/octopus-agile-comparison (commit 1f23677, no
licence stated there: it is not copied into this repository). Pass its path
with ``--prices``; by default it is looked for as ``shared/data/agile/<that
name>`` beside the checkout. Region unknown to us.

Prints figures, never fails on them.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import sys
import time
import zoneinfo
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import simulator.plant as plant_model  # noqa: E402
from octolux.automation.planner import (  # noqa: E402
    Battery,
    HalfHour,
    Rules,
    forecast,
    optimal_plan,
    original_plan,
)
from octolux.automation.prices import HALF_HOUR, Price  # noqa: E402
from octolux.automation.windows import inverter_settings  # noqa: E402
from octolux.device.settings import SETTINGS, parse_time_slot  # noqa: E402
from octolux.lxp import holding  # noqa: E402
from simulator import installation  # noqa: E402

UK = zoneinfo.ZoneInfo("Europe/London")
UTC = datetime.UTC
BATTERY = Battery(installation.CAPACITY_WH / 1000.0, installation.MAX_POWER / 1000.0,
                  installation.EFFICIENCY, cutoff_soc=10.0)
RULES = Rules(required_soc=90, emergency_soc=50, cheap_charge=2, min_discharge=3)  # the
# original's config.ini.example
BATTERIES = 4  # the original sized 2.4 kWh per battery: 4 is 9.6 kWh, nearest the plant's
HISTORY_DAYS = 7
START_SOC = 50.0
PRICES_NAME = "agile-half-hour-actual-rates-01-11-2022_20-12-2023.csv"
DEFAULT_PRICES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "agile" \
    / PRICES_NAME


def read_prices(path: Path) -> list[tuple[float, float, float]]:
    """(start, import p/kWh, export p/kWh) per half-hour, sorted, from the CSV."""
    rows = []
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        next(reader)
        for row in reader:
            start = datetime.datetime.strptime(row[0], "%d/%m/%Y %H:%M").replace(tzinfo=UK)
            end = datetime.datetime.strptime(row[1], "%d/%m/%Y %H:%M").replace(tzinfo=UK)
            # UK local times. The spring change's 00:30-02:00 row is one half-hour
            # (01:00-02:00 does not exist); the autumn change's 01:30-02:00 row
            # spans 90 minutes (the repeated hour has no rows of its own), so its
            # price stands for three half-hours.
            count = max(1, round((end.timestamp() - start.timestamp()) / HALF_HOUR))
            for n in range(count):
                rows.append((start.timestamp() + n * HALF_HOUR, float(row[2]), float(row[3])))
    rows.sort()
    return rows


def published_until(moment: float) -> float:
    """The end of the prices known at ``moment``: the next day's from 16:00 UK time."""
    local = datetime.datetime.fromtimestamp(moment, UK)
    day = local.date() + datetime.timedelta(days=1 if local.hour >= 16 else 0)
    return datetime.datetime.combine(day, datetime.time(23, 0), UK).timestamp()


class Replay:
    """One strategy's run: the plant advanced half-hour by half-hour, the cost added up."""

    def __init__(self, prices, export: bool, seed: int = 1):
        self.prices = prices
        self.export = export
        start = datetime.datetime.fromtimestamp(prices[0][0], UTC).replace(tzinfo=None)
        # The plant's clock is naive and has no summer time: it runs on UTC here,
        # and so do the slots written to it.
        self.plant = plant_model.Plant(start=start, seed=seed, soc=START_SOC)
        self.cost = 0.0  # pence
        self.imported = self.exported = 0.0  # kWh
        self.loads: list[tuple[float, float]] = []  # (start, W) as the history records
        self.pvs: list[tuple[float, float]] = []
        self.pv_available: list[float] = []  # kWh the panels could give, before any clipping
        self.writes = 0

    def write(self, register: int, value: int) -> None:
        """One holding register, as the bridge would write it (counted when it changes)."""
        if self.plant.holding.values[register] != value:
            self.plant.holding.write(register, value)
            self.writes += 1

    def set_bit(self, name: str, on: bool) -> None:
        """One function bit of register 21."""
        bit = holding.BITS[holding.FUNCTION_BITS][name]
        value = self.plant.holding.values[holding.FUNCTION_BITS]
        self.write(holding.FUNCTION_BITS, value | 1 << bit if on else value & ~(1 << bit))

    def apply(self, settings: dict) -> None:
        """Named settings, written register by register as the commands do."""
        for name, value in settings.items():
            setting = SETTINGS[name]
            if setting.kind == "bit":
                self.set_bit(name, value)
            elif setting.kind == "time_slot":
                start, end = parse_time_slot(value)
                self.write(setting.registers[0], holding.encode_time(start))
                self.write(setting.registers[1], holding.encode_time(end))
            else:
                self.write(setting.registers[0], value)

    def half_hour(self, index: int) -> None:
        """Run the plant through half-hour ``index`` and pay for it."""
        start, price, export_price = self.prices[index]
        before = dict(self.plant.energy_all)
        available = 0.0
        for _ in range(round(HALF_HOUR / plant_model.STEP)):  # the same steps as one advance
            self.plant.advance(plant_model.STEP)
            available += sum(self.plant.flows.pv_available) * plant_model.STEP / 3.6e6
        self.pv_available.append(available)
        after = self.plant.energy_all
        imported = (after["to_user"] - before["to_user"]) / 1000.0
        exported = (after["to_grid"] - before["to_grid"]) / 1000.0
        pv = sum(after[k] - before[k] for k in ("pv_1", "pv_2", "pv_3")) / 1000.0
        load = imported - exported + (after["inv"] - before["inv"]
                                      - after["rec"] + before["rec"]) / 1000.0
        self.cost += imported * price - (exported * export_price if self.export else 0.0)
        self.imported += imported
        self.exported += exported
        self.loads.append((start, load * 2000.0))
        self.pvs.append((start, pv * 2000.0))

    @property
    def soc(self) -> float:
        return self.plant.soc


def run_none(prices, export: bool) -> Replay:
    replay = Replay(prices, export)
    replay.write(holding.CHARGE_POWER_PERCENT, 0)
    replay.write(holding.DISCHARGE_POWER_PERCENT, 0)
    for index in range(len(prices)):
        replay.half_hour(index)
    return replay


def _known(prices, index: int) -> list[Price]:
    now = prices[index][0]
    until = published_until(now)
    known = []
    for start, price, _ in prices[index:index + 120]:
        if start >= until:
            break
        known.append(Price(start, start + HALF_HOUR, price))
    return known


def run_original(prices, export: bool) -> Replay:
    replay = Replay(prices, export)
    replay.write(holding.AC_CHARGE_SOC_LIMIT, 100)
    kept = None
    for index in range(len(prices)):
        now = prices[index][0]
        kept = original_plan(now, replay.soc, _known(prices, index), RULES, BATTERIES, UTC, kept)
        action = kept.action_at(now)
        replay.set_bit("ac_charge", action == "charge")
        replay.write(holding.DISCHARGE_POWER_PERCENT, 100 if action == "use" else 0)
        replay.half_hour(index)
    return replay


def run_ours(prices, export: bool, replan_hours: float) -> Replay:
    replay = Replay(prices, export)
    last_plan = -math.inf
    last_until = None
    for index in range(len(prices)):
        now = prices[index][0]
        until = published_until(now)
        if now - last_plan >= replan_hours * 3600 or until != last_until:
            known = _known(prices, index)
            starts = [price.start for price in known]
            recent = [s for s in replay.loads if s[0] >= now - HISTORY_DAYS * 86400]
            recent_pv = [s for s in replay.pvs if s[0] >= now - HISTORY_DAYS * 86400]
            loads = forecast(recent, starts, UTC, default=0.4)
            pvs = forecast(recent_pv, starts, UTC)
            half_hours = [
                HalfHour(price.start, price.pence,
                         prices[index + n][2] if export else None, load, pv)
                for n, (price, load, pv) in enumerate(zip(known, loads, pvs, strict=True))
            ]
            plan = optimal_plan(now, replay.soc, half_hours, BATTERY, RULES)
            replay.apply(inverter_settings(plan, UTC))
            last_plan, last_until = now, until
        replay.half_hour(index)
    return replay


def optimum(prices, loads, pvs, export: bool, step: float = 1.0) -> float:
    """The least cost (pence) over the whole period knowing everything in advance.

    SOC levels every ``step`` percent; in each half-hour the battery may move to any
    level within its power, down to its cut-off, losing 5 % each way. ``pvs`` is
    what the panels could give; as in the plant, the inverter passes at most its
    power from the DC side (PV and battery) to the house and the grid, the rest
    of the PV is lost.
    """
    capacity = BATTERY.capacity_kwh
    efficiency = BATTERY.efficiency
    rate = BATTERY.max_power_kw * HALF_HOUR / 3600.0
    levels = int(round(100 / step)) + 1
    kwh = [n * step / 100.0 * capacity for n in range(levels)]
    lowest = int(math.ceil(BATTERY.cutoff_soc / step - 1e-9))
    up = int(rate * efficiency / (step / 100.0 * capacity))
    down = int(rate / efficiency / (step / 100.0 * capacity))
    value = [0.0] * levels
    for index in range(len(prices) - 1, -1, -1):
        _, price, export_price = prices[index]
        sell = export_price if export else 0.0
        load, pv = loads[index], pvs[index]
        new = []
        for level in range(levels):
            best = math.inf
            for target in range(max(lowest if level >= lowest else level, level - down),
                                min(levels - 1, level + up) + 1):
                change = kwh[target] - kwh[level]
                battery = change / efficiency if change > 0 else change * efficiency
                grid = load - min(pv - battery, rate)
                cost = (grid * price if grid > 0 else grid * sell) + value[target]
                if cost < best:
                    best = cost
            new.append(best)
        value = new
    start = int(round(START_SOC / step))
    return value[start]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES,
                        help="the agile.octopushome.net CSV (see the docstring)")
    parser.add_argument("--days", type=int, default=0, help="first N days only (0: all)")
    parser.add_argument("--no-export", action="store_true", help="exports earn nothing")
    parser.add_argument("--replan", type=float, default=3.0, help="hours between our plans")
    parser.add_argument("--step", type=float, default=1.0,
                        help="SOC step of the optimum's programme, percent")
    args = parser.parse_args()
    # Longer integration steps than the simulator's live 60 s: a year in minutes.
    # Every half-hour is whole steps, so each strategy meets the same weather.
    plant_model.STEP = 300.0
    if not args.prices.is_file():
        parser.error(f"no price file at {args.prices}: {PRICES_NAME} of the GitHub repository"
                     " fawkesley/octopus-agile-comparison (data/), or any CSV downloaded from"
                     " agile.octopushome.net/historical-data")
    prices = read_prices(args.prices)
    first = datetime.datetime.fromtimestamp(prices[0][0], UTC)
    midnight = datetime.datetime.combine(first.date() + datetime.timedelta(days=1),
                                         datetime.time(), UTC).timestamp()
    prices = [row for row in prices if row[0] >= midnight]
    if args.days:
        prices = [row for row in prices if row[0] < midnight + args.days * 86400]
    gaps = sum(1 for a, b in zip(prices, prices[1:], strict=False) if b[0] - a[0] != HALF_HOUR)
    export = not args.no_export
    days = (prices[-1][0] + HALF_HOUR - prices[0][0]) / 86400
    print(f"{len(prices)} half-hours, {days:.1f} days from"
          f" {datetime.datetime.fromtimestamp(prices[0][0], UK):%Y-%m-%d %H:%M} UK time"
          f" ({gaps} gaps); import {min(p[1] for p in prices):.2f} to"
          f" {max(p[1] for p in prices):.2f} p/kWh; exports"
          f" {'earn Agile Outgoing' if export else 'earn nothing'}")
    results = {}
    for name, run in (("no battery", lambda: run_none(prices, export)),
                      ("original rule", lambda: run_original(prices, export)),
                      ("ours", lambda: run_ours(prices, export, args.replan))):
        began = time.perf_counter()
        replay = run()
        results[name] = replay
        print(f"  {name:<14} {replay.cost / 100:9.2f} GBP  import {replay.imported:8.1f} kWh"
              f"  export {replay.exported:7.1f} kWh  writes {replay.writes:6d}"
              f"  ({time.perf_counter() - began:.0f} s)", flush=True)
    baseline = results["no battery"]
    loads = [w / 2000.0 for _, w in baseline.loads]
    pvs = baseline.pv_available
    began = time.perf_counter()
    best = optimum(prices, loads, pvs, export, args.step)
    print(f"  {'optimum':<14} {best / 100:9.2f} GBP  (perfect foresight, SOC step"
          f" {args.step:g} %, {time.perf_counter() - began:.0f} s)")
    possible = baseline.cost - best
    print(f"savings against no battery (optimum saves {possible / 100:.2f} GBP):")
    for name in ("original rule", "ours"):
        saved = baseline.cost - results[name].cost
        print(f"  {name:<14} {saved / 100:9.2f} GBP  = {saved / possible * 100:5.1f} % of"
              f" the optimum's")


if __name__ == "__main__":
    main()
