"""Battery automation's pure core: Octopus pages, the planners, the inverter's windows, config."""

from __future__ import annotations

import datetime
import json
import zoneinfo

import pytest

from octolux.automation.planner import (
    EXECUTED_SLOTS,
    Battery,
    HalfHour,
    Plan,
    PlannedSlot,
    Rules,
    forecast,
    limit_windows,
    optimal_plan,
    original_plan,
    plan_from_json,
)
from octolux.automation.prices import (
    HALF_HOUR,
    Price,
    PriceError,
    from_cache,
    known_hours,
    merge,
    needs_refresh,
    parse_page,
    rates_url,
    to_cache,
)
from octolux.automation.windows import changes, inverter_settings, time_windows
from octolux.config.ini import ConfigError, parse_config
from octolux.config.octopus import tariff_code

UK = zoneinfo.ZoneInfo("Europe/London")
UTC = datetime.UTC


def at(text: str, tz=UTC) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def octopus_page(prices, next_url=None) -> bytes:
    """A page as the API serves it: newest first, Z times."""
    def z(moment):
        return datetime.datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({
        "count": len(prices), "next": next_url, "previous": None,
        "results": [{"value_exc_vat": round(p / 1.05, 4), "value_inc_vat": p,
                     "valid_from": z(s), "valid_to": z(s + HALF_HOUR), "payment_method": None}
                    for s, p in sorted(prices, reverse=True)],
    }).encode()


# -- prices ------------------------------------------------------------------------------


def test_a_page_gives_its_prices_oldest_first_and_the_next_address():
    start = at("2023-03-25T23:00:00")
    prices, following = parse_page(octopus_page([(start, 20.5), (start + HALF_HOUR, -3.2)],
                                                 "http://x/next?page=2"))
    assert following == "http://x/next?page=2"
    assert merge(prices) == (Price(start, start + HALF_HOUR, 20.5),
                             Price(start + HALF_HOUR, start + 2 * HALF_HOUR, -3.2))


def test_the_spring_change_day_has_46_half_hours_and_the_autumn_one_50():
    for day, count in (("2023-03-26", 46), ("2023-10-29", 50)):
        local_midnight = datetime.datetime.fromisoformat(day).replace(tzinfo=UK).timestamp()
        next_midnight = (datetime.datetime.fromisoformat(day) + datetime.timedelta(days=1)
                         ).replace(tzinfo=UK).timestamp()
        halves = [(t, 10.0) for t in range(int(local_midnight), int(next_midnight), 1800)]
        prices, _ = parse_page(octopus_page(halves))
        assert len(merge(prices)) == count


def test_a_missing_half_hour_leaves_a_gap_and_nothing_else():
    start = at("2024-01-01T00:00:00")
    halves = [(start + n * HALF_HOUR, float(n)) for n in range(6) if n != 3]
    prices = merge(parse_page(octopus_page(halves))[0])
    assert [p.pence for p in prices] == [0.0, 1.0, 2.0, 4.0, 5.0]


@pytest.mark.parametrize("body, why", [
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b'{"detail": "Not found."}', "no 'results' list"),
    (b'{"results": [{"value_inc_vat": "12", "valid_from": "2024-01-01T00:00:00Z"}]}',
     "not a number"),
    (b'{"results": [{"value_inc_vat": 12, "valid_from": "yesterday"}]}', "not a time"),
    (b'{"results": [{"value_inc_vat": 12, "valid_from": "2024-01-01T00:00:00"}]}',
     "no time zone"),
    (b'{"results": [], "next": 5}', "not an address"),
])
def test_garbage_is_a_price_error_saying_what_is_wrong(body, why):
    with pytest.raises(PriceError, match=why):
        parse_page(body)


def test_refresh_when_fewer_than_seven_hours_are_known():
    now = at("2024-01-01T12:00:00")
    prices = [Price(now + n * HALF_HOUR, now + (n + 1) * HALF_HOUR, 1.0) for n in range(14)]
    assert known_hours(prices, now) == 7.0
    assert not needs_refresh(prices, now)
    assert needs_refresh(prices[:13], now)
    assert needs_refresh([], now)


def test_the_cache_round_trips_and_belongs_to_its_tariff():
    prices = (Price(0.0, 1800.0, -1.5), Price(1800.0, 3600.0, 30.25))
    text = to_cache(prices, "E-1R-AGILE-18-02-21-G")
    assert from_cache(text, "E-1R-AGILE-18-02-21-G") == prices
    assert from_cache(text, "E-1R-AGILE-18-02-21-A") == ()
    with pytest.raises(PriceError):
        from_cache("{broken", "E-1R-AGILE-18-02-21-G")


def test_tariff_codes_and_region_letters():
    assert tariff_code("AGILE-18-02-21", "g") == ("AGILE-18-02-21", "E-1R-AGILE-18-02-21-G")
    assert tariff_code(None, "E-1R-AGILE-24-10-01-C") == ("AGILE-24-10-01", "E-1R-AGILE-24-10-01-C")
    with pytest.raises(ValueError, match="needs product_code"):
        tariff_code(None, "G")
    with pytest.raises(ValueError, match="not product_code"):
        tariff_code("AGILE-18-02-21", "E-1R-AGILE-24-10-01-C")
    url = rates_url("http://127.0.0.1:9/", "AGILE-18-02-21", "E-1R-AGILE-18-02-21-G", 0.0)
    assert url == ("http://127.0.0.1:9/v1/products/AGILE-18-02-21/electricity-tariffs/"
                   "E-1R-AGILE-18-02-21-G/standard-unit-rates/?period_from=1970-01-01T00%3A00%3A00Z")


# -- the original rule -------------------------------------------------------------------


def day_prices(start: float, pence) -> list[Price]:
    return [Price(start + n * HALF_HOUR, start + (n + 1) * HALF_HOUR, p)
            for n, p in enumerate(pence)]


def evening_prices():
    """From 18:00 UTC: 20p, a 35p peak 18:00-19:00, 10p 00:00-03:00, cheapest 5p at 02:00."""
    start = at("2024-01-10T18:00:00")
    pence = []
    for n in range(48):
        hour = (18 + n // 2) % 24
        pence.append(35.0 if hour == 18 else 10.0 if hour < 3 else 20.0)
    pence[16] = 5.0  # 02:00
    pence[17] = 6.0  # 02:30
    return start, day_prices(start, pence)


def test_the_original_charges_the_kwh_needed_in_the_cheapest_night_half_hours():
    start, prices = evening_prices()
    # 2 batteries, 4.8 kWh, from 40 % to 90 %: 2.4 kWh at 2 kW: 1.2 h: 3 half-hours.
    plan = original_plan(start, 40.0, prices, Rules(), 2, UTC)
    charge = [s.start for s in plan.slots if s.action == "charge"]
    assert charge == [start + 12 * HALF_HOUR, start + 16 * HALF_HOUR, start + 17 * HALF_HOUR]
    # Discharge above the dearest charge price x 1.4 (SOC 40 %): 14p; the rest idles.
    assert {s.price: s.action for s in plan.slots if s.start not in charge} == {
        10.0: "idle", 20.0: "use", 35.0: "use"}
    assert "discharge above 14p" in plan.summary


def test_the_original_charges_below_cheap_charge_even_when_full_and_keeps_its_slots():
    start, prices = evening_prices()
    prices[30] = Price(prices[30].start, prices[30].end, -2.0)
    plan = original_plan(start, 95.0, prices, Rules(), 2, UTC)
    assert [s.start for s in plan.slots if s.action == "charge"] == [prices[30].start]
    later = original_plan(start + 4 * HALF_HOUR, 30.0, prices, Rules(), 2, UTC, kept=plan)
    # Before 18:00 the next day it keeps the evening's choice (none needed then).
    assert [s.start for s in later.slots if s.action == "charge"] == [prices[30].start]


def test_the_original_charges_in_an_emergency_before_a_peak():
    start = at("2024-01-10T15:00:00")
    prices = day_prices(start, [12.0, 14.0, 30.0, 35.0] + [20.0] * 20)
    plan = original_plan(start, 30.0, prices, Rules(), 2, UTC)
    assert plan.slots[0].action == "charge" and plan.slots[0].why.startswith("emergency")
    calm = original_plan(start, 60.0, prices, Rules(), 2, UTC)
    assert calm.slots[0].action != "charge"


# -- ours ----------------------------------------------------------------------------------


BATTERY = Battery(10.0, 3.0, 0.95, 10.0)


def halves(prices, load=0.5, pv=0.0, export=None):
    return [HalfHour(p.start, p.pence, export, load, pv) for p in prices]


def plan_cost(plan: Plan, half_hours, soc: float) -> float:
    """What the plan costs on the planner's own model of the inverter."""
    from octolux.automation.planner import _cost, _step
    total = 0.0
    for slot, half_hour in zip(plan.slots, half_hours, strict=False):
        mode = "charge" if slot.action in ("charge", "hold") else slot.action
        soc, grid = _step(soc, half_hour, mode, BATTERY, plan.charge_soc, plan.export_soc)
        total += _cost(grid, half_hour)
    return total


def test_ours_charges_cheap_and_serves_the_peak():
    start, prices = evening_prices()
    plan = optimal_plan(start, 20.0, halves(prices), BATTERY, Rules())
    actions = {s.start: s.action for s in plan.slots}
    assert actions[start + 16 * HALF_HOUR] == "charge"  # 5p
    assert actions[start] == "use"  # the 35p peak
    assert sum(a == "export" for a in actions.values()) == 0  # no export tariff
    # Never dearer than doing nothing with the battery, nor than the original's choice.
    idle = sum(h.load_kwh * h.price for h in halves(prices))
    assert plan_cost(plan, halves(prices), 20.0) < idle


def test_ours_exports_in_dear_half_hours_when_an_export_tariff_pays():
    start, prices = evening_prices()
    half_hours = [HalfHour(p.start, p.pence, 30.0 if p.pence == 35.0 else 2.0, 0.2, 0.0)
                  for p in prices]
    plan = optimal_plan(start, 90.0, half_hours, BATTERY, Rules())
    assert plan.slots[0].action == "export"
    assert "export" in plan.to_json()["slots"][0]["why"]


def test_at_most_three_windows_of_each_mode_are_written():
    actions = ["charge", "use"] * 10 + ["export", "use", "use"] * 5
    limited = limit_windows(actions)
    for mode in ("charge", "export"):
        runs = sum(1 for n, a in enumerate(limited[:EXECUTED_SLOTS])
                   if a == mode and (n == 0 or limited[n - 1] != mode))
        assert runs <= 3


def test_the_load_forecast_is_the_mean_at_the_same_time_of_day():
    day = at("2024-01-01T00:00:00")
    samples = [(day + 3600, 1000.0), (day + 86400 + 3600, 3000.0), (day + 7200, 500.0)]
    assert forecast(samples, [day + 2 * 86400 + 3600, day + 2 * 86400 + 5400], UTC, 0.1) == [
        1.0, 0.1]


# -- windows -----------------------------------------------------------------------------------


def test_a_plan_becomes_slots_in_local_time_and_only_changes_are_written():
    start = at("2024-07-01T22:00:00", UK)  # BST
    actions = ["use"] * 4 + ["charge"] * 6 + ["hold"] * 2 + ["use"] * 20 + ["export"] * 2
    slots = tuple(PlannedSlot(start + n * HALF_HOUR, 10.0, a) for n, a in enumerate(actions))
    plan = Plan("ours", start, 50.0, slots, 95, 20)
    assert time_windows(plan, "ac_charge", UK) == ["00:00-04:00"]
    wanted = inverter_settings(plan, UK)
    assert wanted == {
        "ac_charge_slot_1": "00:00-04:00", "ac_charge_slot_2": "00:00-00:00",
        "ac_charge_slot_3": "00:00-00:00", "charge_amount_pct": 95, "ac_charge": True,
        "forced_discharge_slot_1": "14:00-15:00", "forced_discharge_slot_2": "00:00-00:00",
        "forced_discharge_slot_3": "00:00-00:00", "forced_discharge_soc": 20,
        "forced_discharge": True,
    }
    assert changes(wanted, wanted) == []
    current = dict(wanted, ac_charge=False, ac_charge_slot_1="01:00-02:00", forced_discharge=True)
    assert changes(wanted, current) == [("ac_charge_slot_1", "00:00-04:00"), ("ac_charge", True)]
    off = changes({"ac_charge": False, "forced_discharge": False}, wanted)
    assert off == [("ac_charge", False), ("forced_discharge", False)]


def test_a_kept_plan_reads_back_as_it_was():
    start, prices = evening_prices()
    plan = original_plan(start, 40.0, prices, Rules(), 2, UTC)
    assert plan_from_json(json.loads(json.dumps(plan.to_json()))) == plan


# -- config ---------------------------------------------------------------------------------


ORIGINAL = """
[lxp]
host = 192.168.3.240
batteries = 2
[octopus]
product_code = AGILE-18-02-21
tariff_code = E-1R-AGILE-18-02-21-G
[rules]
required_soc = 90
emergency_soc = 50
cheap_charge = 2
min_discharge = 3
"""


def test_the_original_config_reads_and_plans_nothing_until_enabled(tmp_path):
    config = parse_config(ORIGINAL, str(tmp_path / "config.ini"))
    automation = config.automation
    assert automation.planner is None
    assert (automation.tariff, automation.batteries, automation.cheap_charge) == (
        "E-1R-AGILE-18-02-21-G", 2, 2.0)
    assert config.ignored == ()
    enabled = parse_config(ORIGINAL + "enabled = yes\n", str(tmp_path / "config.ini"))
    assert enabled.automation.planner == "ours"
    original = parse_config(ORIGINAL + "enabled = original\nread_only = yes\n",
                            str(tmp_path / "config.ini"))
    assert (original.automation.planner, original.automation.read_only) == ("original", True)


@pytest.mark.parametrize("change, message", [
    (("tariff_code = E-1R-AGILE-18-02-21-G", "tariff_code = Q"),
     "[octopus] tariff_code: not a tariff code"),
    (("required_soc = 90", "required_soc = lots"), "[rules] required_soc: not a number 0-100"),
    (("batteries = 2", "batteries = 0"), "[lxp] batteries: must be 1-64"),
    (("min_discharge = 3", "min_discharge = 3\nenabled = maybe"), "[rules] enabled: not yes/no"),
    (("[octopus]", "[octopus]\nurl = ftp://mirror"), "[octopus] url: not an http"),
])
def test_a_bad_value_names_file_section_and_key(tmp_path, change, message):
    with pytest.raises(ConfigError) as error:
        parse_config(ORIGINAL.replace(*change), "my.ini")
    assert str(error.value).startswith("my.ini: " + message)


# -- Home Assistant --------------------------------------------------------------------------


def test_home_assistant_gets_the_plan_sensors_only_for_the_automated_inverter():
    from octolux.device.commands import Topics
    from octolux.homeassistant.entities import inverter_entities

    topics = Topics("octolux")
    plain = {entity.key for entity in inverter_entities(topics)}
    automated = {entity.key: entity for entity in inverter_entities(topics, plan=True)}
    added = set(automated) - plain
    assert added == {"plan_price", "plan_action", "plan_next_charge", "plan_summary",
                     "plan_pause"}
    for key in added - {"plan_pause"}:
        assert automated[key].config["state_topic"] == "octolux/plan"
    assert automated["plan_pause"].config["command_topic"] == "octolux/cmd/plan_pause"
