"""Time slots, SOC limits and the inverter's clock acting on the simulated plant."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_simulator_plant import AC_CHARGE, FORCED_DISCHARGE, inputs, set_bit

from octolux.lxp import holding
from simulator.installation import MAX_POWER
from simulator.plant import Plant
from simulator.registers import ValueOutOfRange
from simulator.schedule import in_schedule, seconds_to_next_slot_edge

DAY = datetime.date(2024, 6, 21)
CHARGE_PRIORITY = 1 << holding.BITS[21]["charge_priority"]


def at(hour: int, minute: int = 0, second: int = 0, day: datetime.date = DAY):
    return datetime.datetime.combine(day, datetime.time(hour, minute, second))


def set_slot(plant: Plant, schedule: str, number: int, start: str, end: str) -> None:
    """Write one slot as a bridge does: one write multi of its two registers."""
    register = holding.TIME_SLOTS[schedule][number - 1][0]
    times = (datetime.time.fromisoformat(start), datetime.time.fromisoformat(end))
    plant.write_holding(register, [holding.encode_time(time) for time in times])


def registers_with(schedule: str, *slots: tuple[str, str]) -> list[int]:
    plant = Plant(seed=1)
    for number, (start, end) in enumerate(slots, 1):
        set_slot(plant, schedule, number, start, end)
    return plant.holding.values


def charging_from_grid(plant: Plant) -> bool:
    named = inputs(plant)
    return named["status"] == 32 and named["p_rec"] > 0


# -- the slot rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slots", "moment", "inside"),
    [
        ((), at(3), True),  # no slot set: always
        ((("00:00", "00:00"),), at(3), True),  # 00:00-00:00 is off
        ((("05:00", "05:00"),), at(3), True),  # so is any empty slot
        ((("01:00", "03:00"),), at(0, 59, 59), False),
        ((("01:00", "03:00"),), at(1), True),  # the start is inside
        ((("01:00", "03:00"),), at(2, 59, 59), True),
        ((("01:00", "03:00"),), at(3), False),  # the end is not
        ((("23:30", "05:30"),), at(23, 45), True),  # over midnight
        ((("23:30", "05:30"),), at(4), True),
        ((("23:30", "05:30"),), at(12), False),
        ((("00:00", "00:00"), ("16:00", "19:00"), ("01:00", "03:00")), at(2), True),
        ((("00:00", "00:00"), ("16:00", "19:00"), ("01:00", "03:00")), at(12), False),
    ],
)
def test_a_schedule_is_on_inside_a_slot_or_when_no_slot_is_set(slots, moment, inside):
    assert in_schedule(registers_with("ac_charge", *slots), "ac_charge", moment) is inside


times_of_day = st.builds(datetime.time, st.integers(0, 23), st.integers(0, 59))


@given(start=times_of_day, end=times_of_day, moment=st.datetimes(
    min_value=datetime.datetime(2024, 1, 1), max_value=datetime.datetime(2024, 12, 31)))
def test_a_slot_and_its_reverse_share_out_the_day(start, end, moment):
    assume(start != end)  # an empty slot is off, both ways
    forward = registers_with("ac_charge", (start.isoformat(), end.isoformat()))
    backward = registers_with("ac_charge", (end.isoformat(), start.isoformat()))
    assert in_schedule(forward, "ac_charge", moment) != in_schedule(backward, "ac_charge", moment)


def test_the_next_slot_edge():
    registers = registers_with("forced_discharge", ("16:00", "19:00"))
    assert seconds_to_next_slot_edge(registers, at(15, 59)) == 60
    assert seconds_to_next_slot_edge(registers, at(20)) == 20 * 3600
    assert seconds_to_next_slot_edge(Plant(seed=1).holding.values, at(1)) == float("inf")


def test_slot_registers_refuse_impossible_times_and_change_nothing():
    plant = Plant(start=at(0), seed=1)
    with pytest.raises(ValueOutOfRange):
        plant.write_holding(68, [holding.encode_time(datetime.time(1)), 24])
    assert plant.holding.read(68, 2) == (0, 0)


# -- AC charge ----------------------------------------------------------------------------


def test_ac_charge_only_inside_its_slot_to_the_second():
    plant = Plant(start=at(0, 30), seed=2, soc=30.0)
    set_slot(plant, "ac_charge", 2, "01:00", "03:00")
    set_bit(plant, AC_CHARGE)
    assert not charging_from_grid(plant)  # enabled, but outside the slot
    plant.advance(30 * 60 - 1)
    assert not charging_from_grid(plant)
    soc_before = plant.soc
    plant.advance(1.5)  # the step that starts at 01:00:00
    assert charging_from_grid(plant)
    assert plant.soc > soc_before
    plant.advance(2 * 3600 - 1)  # 02:59:59.5
    assert charging_from_grid(plant)
    plant.advance(1)
    assert not charging_from_grid(plant)


def test_ac_charge_in_a_slot_over_midnight_stops_at_the_soc_limit():
    plant = Plant(start=at(22), seed=2, soc=30.0)
    plant.write_holding(holding.AC_CHARGE_SOC_LIMIT, [50])
    set_slot(plant, "ac_charge", 1, "23:00", "05:00")
    set_bit(plant, AC_CHARGE)
    plant.advance(3600 + 60)
    assert charging_from_grid(plant)
    assert inputs(plant)["p_charge"] == MAX_POWER  # the AC charge rate, 100 %
    plant.write_holding(holding.AC_CHARGE_POWER_PERCENT, [25])
    assert inputs(plant)["p_charge"] == MAX_POWER // 4
    plant.advance(5 * 3600)  # 04:01: still in the slot, but full to the limit
    assert plant.soc == pytest.approx(50.0, abs=0.1)
    named = inputs(plant)
    assert named["p_charge"] == named["p_discharge"] == 0  # the battery rests
    assert named["p_to_user"] > 0  # the house runs from the grid
    plant.advance(3600)  # 05:01: the slot is over, the battery feeds the house
    assert inputs(plant)["p_discharge"] > 0


def test_slots_run_on_the_inverters_clock_not_the_true_time():
    # True time 23:30, the inverter's clock two hours fast: 01:30, inside 01:00-03:00.
    plant = Plant(start=at(23, 30), seed=2, soc=30.0, clock_offset=datetime.timedelta(hours=2))
    set_slot(plant, "ac_charge", 1, "01:00", "03:00")
    set_bit(plant, AC_CHARGE)
    assert charging_from_grid(plant)
    plant.write_holding(12, holding.encode_clock(at(23, 30)))  # a bridge syncs the clock
    assert not charging_from_grid(plant)


def test_ac_charge_by_soc_starts_at_the_start_soc_and_stops_at_the_end_soc():
    plant = Plant(start=at(0), seed=3, soc=21.0)
    plant.write_holding(holding.SYSTEM_ENABLE, [3 << 1 | 1 << 4])  # AC charge by SOC
    plant.write_holding(holding.AC_CHARGE_START_SOC, [20])
    plant.write_holding(holding.AC_CHARGE_END_SOC, [40])
    set_slot(plant, "ac_charge", 1, "12:00", "13:00")  # ignored: by SOC alone
    set_bit(plant, AC_CHARGE)
    assert not charging_from_grid(plant)  # above the start SOC
    plant.advance(1800)  # the house draws the battery down to 20 %
    assert charging_from_grid(plant)
    highest = plant.soc
    for _ in range(60):
        plant.advance(60)
        highest = max(highest, plant.soc)
    assert highest == pytest.approx(40.0, abs=0.01)  # up to the end SOC, no further
    assert plant.soc < 40.0 and not charging_from_grid(plant)  # the house draws it down again
    plant.advance(600)
    assert plant.soc > 30.0 and not charging_from_grid(plant)  # no restart above 20 %


def test_ac_charge_by_soc_and_time_waits_for_its_slot():
    plant = Plant(start=at(0), seed=3, soc=15.0)
    plant.write_holding(holding.SYSTEM_ENABLE, [5 << 1 | 1 << 4])  # by SOC and time
    set_slot(plant, "ac_charge", 1, "02:00", "04:00")
    set_bit(plant, AC_CHARGE)
    assert not charging_from_grid(plant)  # above the start SOC (10 %), outside the slot
    plant.write_holding(holding.AC_CHARGE_START_SOC, [20])
    assert not charging_from_grid(plant)  # below the start SOC, but outside the slot
    plant.advance(2 * 3600 + 30)
    assert charging_from_grid(plant)


@pytest.mark.parametrize("value", [6 << 1, 7 << 1, 3 << 4, 0x200])
def test_register_120_refuses_unknown_types(value):
    plant = Plant(seed=1)
    before = plant.holding[holding.SYSTEM_ENABLE]
    with pytest.raises(ValueOutOfRange):
        plant.write_holding(holding.SYSTEM_ENABLE, [value])
    assert plant.holding[holding.SYSTEM_ENABLE] == before


# -- forced discharge ---------------------------------------------------------------------


def test_forced_discharge_only_inside_its_slot_down_to_its_limit_at_its_rate():
    plant = Plant(start=at(1, 30), seed=4, soc=60.0)
    plant.write_holding(holding.FORCED_DISCHARGE_SOC_LIMIT, [40])
    plant.write_holding(holding.FORCED_DISCHARGE_POWER_PERCENT, [50])
    set_slot(plant, "forced_discharge", 3, "02:00", "06:00")
    set_bit(plant, FORCED_DISCHARGE)
    assert inputs(plant)["p_to_grid"] == 0  # outside the slot: only the house
    plant.advance(1800 + 30)
    named = inputs(plant)
    assert named["p_discharge"] == MAX_POWER // 2
    assert named["p_to_grid"] > 0
    plant.advance(3 * 3600)
    assert plant.soc == pytest.approx(40.0, abs=0.5)
    assert inputs(plant)["p_to_grid"] == 0


def test_forced_discharge_never_goes_below_the_cutoff_soc():
    plant = Plant(start=at(2), seed=4, soc=50.0)
    plant.write_holding(holding.FORCED_DISCHARGE_SOC_LIMIT, [10])
    plant.write_holding(holding.DISCHARGE_CUTOFF_SOC, [35])
    set_bit(plant, FORCED_DISCHARGE)  # no slot: at any time
    plant.advance(4 * 3600)
    assert plant.soc == pytest.approx(35.0, abs=0.5)
    assert inputs(plant)["p_discharge"] <= 1


# -- charge priority ------------------------------------------------------------------------


def test_charge_priority_only_inside_its_slot():
    plant = Plant(start=at(10, 50), seed=5, soc=30.0)
    plant.write_holding(holding.CHARGE_PRIORITY_SOC_LIMIT, [90])
    set_slot(plant, "charge_priority", 1, "11:00", "12:00")
    set_bit(plant, CHARGE_PRIORITY)
    plant.advance(60)
    flows = plant.flows
    assert flows.battery == pytest.approx(sum(flows.pv) - flows.load, abs=1)  # PV covers the house
    plant.advance(10 * 60)
    flows = plant.flows
    assert flows.battery == pytest.approx(sum(flows.pv), abs=1)  # all PV to the battery
    assert flows.grid == pytest.approx(flows.load, abs=1)  # the house from the grid
    plant.advance(3600)
    flows = plant.flows
    assert flows.battery == pytest.approx(sum(flows.pv) - flows.load, abs=1)
