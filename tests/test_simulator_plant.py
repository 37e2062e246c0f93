"""The simulated plant: numbers that hang together and respond to the holding registers."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octolux.lxp import holding
from octolux.lxp.frames import ExceptionCode
from octolux.lxp.holding import WRITABLE
from octolux.lxp.inputs import FIELDS_BY_KEY, decode_input_blocks
from simulator.installation import MAX_POWER
from simulator.plant import Plant
from simulator.registers import (
    HOLDING_REGISTER_COUNT,
    HoldingRegisters,
    UnknownRegister,
    ValueOutOfRange,
)
from simulator.schedule import house_load, sun

MIDNIGHT = datetime.datetime(2024, 6, 21, 0, 0)
NOON = datetime.datetime(2024, 6, 21, 12, 0)
AC_CHARGE = 1 << holding.BITS[21]["ac_charge"]
FORCED_DISCHARGE = 1 << holding.BITS[21]["forced_discharge"]


def inputs(plant: Plant) -> dict:
    """Every published key, decoded from the plant's raw registers by the bridge's decoder."""
    blocks = decode_input_blocks(0, plant.input_registers())
    assert sorted(blocks) == [1, 2, 3, 4]
    return {key: value for block in blocks.values() for key, value in block.items()}


def set_bit(plant: Plant, bit_mask: int, on: bool = True) -> None:
    value = plant.holding[holding.FUNCTION_BITS]
    value = value | bit_mask if on else value & ~bit_mask
    plant.write_holding(holding.FUNCTION_BITS, [value])


# -- the register layout ------------------------------------------------------------


def test_input_registers_are_160_raw_u16_values():
    plant = Plant(seed=1)
    registers = plant.input_registers()
    assert len(registers) == plant.model.input_count == 160  # the LXP-3600 ACS: 0-159
    assert all(isinstance(value, int) and 0 <= value <= 0xFFFF for value in registers)


def test_input_registers_are_a_pure_function_of_the_state():
    plant = Plant(seed=1)
    assert plant.input_registers() == plant.input_registers()


@pytest.mark.parametrize("hours", [0, 7, 13, 20])
def test_input_registers_carry_the_named_values_at_the_registers_resolution(hours):
    plant = Plant(start=MIDNIGHT, seed=2)
    plant.advance(hours * 3600)
    values = plant.input_values()
    decoded = inputs(plant)
    assert len(values) > 60
    for key, value in values.items():
        if isinstance(value, str):
            assert decoded[key] == value
        else:
            # Rounded to the register's unit (0.1 V, 0.01 Hz, ...), never further off.
            assert decoded[key] == pytest.approx(value, abs=0.5 / FIELDS_BY_KEY[key].divisor), key
    # Energy counters show whole tenths of a kWh, as a meter does: never ahead of the truth.
    assert decoded["e_chg_all"] <= plant.energy_all["chg"] / 1000 < decoded["e_chg_all"] + 0.1


@pytest.mark.parametrize("serial", ["SHORT", "ELEVENCHARS", "SIMINV000\u20ac", 1234567890])
def test_a_plant_needs_a_ten_character_serial(serial):
    with pytest.raises(ValueError, match="inverter_serial must be 10 characters of 8-bit text"):
        Plant(inverter_serial=serial)


@pytest.mark.parametrize("hours", [0, 3, 9, 13, 19, 23, 30, 47])
def test_decoded_inputs_are_plausible_at_any_hour(hours):
    plant = Plant(start=MIDNIGHT, seed=7)
    plant.advance(hours * 3600)
    named = inputs(plant)
    assert 0 <= named["soc"] <= 100
    assert named["soh"] == 98
    assert 40.0 <= named["v_bat"] <= 58.0
    assert 49.9 <= named["f_ac"] <= 50.1
    assert 220.0 <= named["v_acr"] <= 260.0
    assert named["v_eps"] == named["v_acr"]
    assert 10 <= named["t_inner"] <= 60 and 10 <= named["t_rad_1"] <= 60
    assert 300.0 <= named["v_bus_1"] <= 420.0
    assert named["pf"] == 1.0
    assert named["inverter_serial"] == "SIMINV0001"
    assert named["p_charge"] == 0 or named["p_discharge"] == 0
    expected_status = 32 if named["p_charge"] else 16 if named["p_discharge"] else 0
    assert named["status"] == expected_status
    for key in ("pv", "inv", "rec", "chg", "dischg", "eps", "to_grid", "to_user"):
        assert named[f"e_{key}_all"] >= named[f"e_{key}_day"] >= 0
    assert named["max_chg_curr"] == 105.0 and named["max_dischg_curr"] == 150.0
    assert named["bat_status_5"] == 192 and named["bat_status_inv"] == 3
    # The battery current agrees in sign and size with the battery power.
    assert named["bat_current"] * named["v_bat"] == pytest.approx(named["p_battery"], abs=30)


def test_power_flows_balance():
    plant = Plant(start=MIDNIGHT, seed=3)
    for _ in range(48):
        plant.advance(1800)
        named = inputs(plant)
        # DC side: PV plus battery discharge is converted; AC side: the house gets the rest.
        dc = named["p_pv"] - named["p_battery"]
        assert named["p_inv"] - named["p_rec"] == pytest.approx(dc, abs=2)
        load = plant.flows.load
        assert named["p_inv"] - named["p_rec"] + named["p_grid"] == pytest.approx(load, abs=3)
        assert named["p_inv"] <= MAX_POWER


# -- the day ----------------------------------------------------------------------------


def test_pv_follows_the_day_curve():
    assert sun(MIDNIGHT) == 0.0
    assert sun(NOON) > 0.8
    assert sun(datetime.datetime(2024, 12, 21, 12, 0)) < sun(NOON)
    assert sun(datetime.datetime(2024, 12, 21, 7, 0)) == 0.0  # winter: still dark
    plant = Plant(start=MIDNIGHT, seed=1)
    assert inputs(plant)["p_pv"] == 0
    assert inputs(plant)["v_pv_1"] == 0.0
    plant.advance(12 * 3600)
    noon = inputs(plant)
    assert noon["p_pv"] > 1000
    assert 250.0 <= noon["v_pv_1"] <= 400.0
    plant.advance(12 * 3600)
    assert inputs(plant)["p_pv"] == 0


def test_house_load_has_an_evening_peak():
    assert house_load(datetime.datetime(2024, 1, 1, 19, 0)) > 2 * house_load(MIDNIGHT)


def test_day_counters_reset_at_midnight_and_all_counters_only_grow():
    plant = Plant(start=datetime.datetime(2024, 6, 21, 22, 0), seed=2)
    totals = inputs(plant)
    plant.advance(1.9 * 3600)  # 23:54
    before = inputs(plant)
    assert before["e_dischg_day"] > 0
    plant.advance(0.2 * 3600)  # 00:06
    after = inputs(plant)
    assert after["e_dischg_day"] < before["e_dischg_day"]
    assert after["e_dischg_day"] <= 0.1
    for key in ("e_pv_all", "e_dischg_all", "e_chg_all", "e_to_user_all", "runtime"):
        assert totals[key] <= before[key] <= after[key]
    for _ in range(3 * 24):
        plant.advance(3600)
        later = inputs(plant)
        for key in ("e_pv_all", "e_inv_all", "e_dischg_all", "e_chg_all"):
            assert later[key] >= after[key]
        after = later


def test_soc_moves_with_the_energy():
    plant = Plant(start=MIDNIGHT, seed=4, soc=60.0)
    plant.advance(3 * 3600)  # night: the battery feeds the house
    named = inputs(plant)
    # SOC falls by the discharged energy over the capacity (95 % efficient).
    assert plant.soc < 60.0
    used_kwh = named["e_dischg_day"]
    assert plant.soc == pytest.approx(60.0 - used_kwh / 0.95 / 10.24 * 100, abs=1.5)


def test_same_seed_same_numbers_and_different_seed_different_numbers():
    def run(seed):
        plant = Plant(start=MIDNIGHT, seed=seed)
        trace = []
        for _ in range(20):
            plant.advance(1234.5)
            trace.append(plant.input_registers())
        return trace

    assert run(11) == run(11)
    assert run(11) != run(12)


# -- commands ---------------------------------------------------------------------------


def test_ac_charge_charges_from_the_grid_at_the_charge_rate_up_to_the_soc_limit():
    plant = Plant(start=MIDNIGHT, seed=5, soc=40.0)
    plant.write_holding(holding.AC_CHARGE_SOC_LIMIT, [60])
    set_bit(plant, AC_CHARGE)
    named = inputs(plant)  # a command takes effect at once
    assert named["status"] == 32
    assert named["p_charge"] == MAX_POWER
    assert named["p_rec"] >= MAX_POWER
    assert named["p_to_user"] > MAX_POWER  # the house and the battery, both from the grid
    plant.write_holding(holding.CHARGE_POWER_PERCENT, [50])
    assert inputs(plant)["p_charge"] == MAX_POWER // 2
    plant.advance(1800)
    assert 40.0 < plant.soc < 60.0
    plant.advance(6 * 3600)
    assert plant.soc == pytest.approx(60.0, abs=0.5)
    named = inputs(plant)
    # At the limit, still in AC charge time (no slot set: always): no more from the grid,
    # and the battery is kept (only PV may charge it).
    assert named["p_rec"] == 0 and named["p_discharge"] == 0
    assert named["e_rec_day"] > 0


def test_discharge_follows_the_load_capped_by_the_discharge_rate():
    plant = Plant(start=MIDNIGHT, seed=6, soc=80.0)
    plant.advance(600)
    named = inputs(plant)
    assert named["status"] == 16
    assert named["p_discharge"] == pytest.approx(plant.flows.load, abs=1)
    assert named["p_grid"] == 0
    plant.write_holding(holding.DISCHARGE_POWER_PERCENT, [5])
    assert inputs(plant)["p_discharge"] <= MAX_POWER * 5 // 100
    plant.write_holding(holding.DISCHARGE_POWER_PERCENT, [0])
    plant.advance(600)
    named = inputs(plant)
    assert named["p_discharge"] == 0
    assert named["status"] == 0
    assert named["p_to_user"] == pytest.approx(plant.flows.load, abs=1)


def test_discharge_stops_at_the_cutoff_soc():
    plant = Plant(start=MIDNIGHT, seed=6, soc=12.0)
    plant.advance(6 * 3600)
    assert plant.soc == pytest.approx(10.0, abs=0.2)
    assert inputs(plant)["p_discharge"] <= 1


def test_forced_discharge_exports_down_to_its_soc_limit():
    plant = Plant(start=MIDNIGHT, seed=8, soc=50.0)
    plant.write_holding(holding.FORCED_DISCHARGE_SOC_LIMIT, [40])
    set_bit(plant, FORCED_DISCHARGE)
    plant.advance(60)
    named = inputs(plant)
    assert named["p_discharge"] == MAX_POWER
    assert named["p_to_grid"] > 0
    assert named["status"] == 16
    plant.advance(4 * 3600)
    assert plant.soc == pytest.approx(40.0, abs=0.5)
    assert inputs(plant)["p_to_grid"] == 0
    assert inputs(plant)["e_to_grid_day"] > 0.5  # 10 % of 10.24 kWh, less the house


def test_pv_surplus_charges_the_battery():
    plant = Plant(start=datetime.datetime(2024, 6, 21, 11, 0), seed=9, soc=30.0)
    plant.advance(600)
    named = inputs(plant)
    assert named["status"] == 32
    assert named["p_charge"] > 0 and named["p_rec"] == 0


# -- holding registers ------------------------------------------------------------------


def test_holding_defaults_are_realistic():
    bank = HoldingRegisters()
    assert bank[holding.FUNCTION_BITS] == 0xF354
    bits = holding.decode_bits(21, bank[21])
    assert not bits["ac_charge"] and not bits["forced_discharge"] and bits["normal_or_standby"]
    for register in (64, 65, 66, 67):
        assert bank[register] == 100
    assert bank[holding.DISCHARGE_CUTOFF_SOC] == 10
    assert holding.to_signed(107, bank[107]) == -200


def test_unknown_and_read_only_registers_are_refused_with_illegal_address():
    bank = HoldingRegisters()
    before = list(bank.values)
    for register in (0, 5, 200, 239, 240, 5000):
        with pytest.raises(UnknownRegister) as caught:
            bank.write(register, 1)
        assert caught.value.code == ExceptionCode.ILLEGAL_ADDRESS
    with pytest.raises(UnknownRegister):
        bank.read(230, 40)
    assert bank.values == before


@pytest.mark.parametrize(
    ("register", "value"),
    [(65, 101), (67, 0xFFFF), (68, 24), (68, 60 << 8), (119, 1001), (119, -1001 & 0xFFFF),
     (106, 900), (110, 0x10000), (21, 0x10000), (65, -1)],
)
def test_out_of_range_values_are_refused_with_illegal_value(register, value):
    bank = HoldingRegisters()
    before = list(bank.values)
    with pytest.raises(ValueOutOfRange) as caught:
        bank.write(register, value)
    assert caught.value.code == ExceptionCode.ILLEGAL_VALUE
    assert bank.values == before


@pytest.mark.parametrize(
    ("register", "value"),
    [(65, 0), (65, 100), (21, 0xFFFF), (21, 0), (68, 23 | 59 << 8), (119, -1000 & 0xFFFF),
     (106, -400 & 0xFFFF), (161, 100), (110, 0xFFFF)],
)
def test_valid_values_are_stored(register, value):
    bank = HoldingRegisters()
    change = bank.write(register, value)
    assert bank[register] == value == change.new


def test_a_refused_multi_write_changes_nothing():
    bank = HoldingRegisters()
    with pytest.raises(ValueOutOfRange):
        bank.write_many(64, [50, 50, 50, 101])
    assert bank.read(64, 4) == (100, 100, 100, 100)


def test_every_number_register_takes_exactly_its_limits():
    for register, (low, high) in holding.LIMITS.items():
        rule = WRITABLE[register]
        assert rule.accepts(low & 0xFFFF) and rule.accepts(high & 0xFFFF), register
        assert not rule.accepts((high + 1) & 0xFFFF), register
        if low > 0 or register in holding.SIGNED:
            assert not rule.accepts((low - 1) & 0xFFFF), register


def test_every_percent_register_has_percent_limits():
    assert holding.LIMITS.keys() >= holding.PERCENT
    for register in holding.PERCENT:
        assert WRITABLE[register].accepts(90) and not WRITABLE[register].accepts(101)


@pytest.mark.parametrize(
    ("register", "refused", "accepted"),
    [(holding.DISCHARGE_CUTOFF_SOC, (9, 91), (10, 90)),
     (holding.EPS_DISCHARGE_CUTOFF_SOC, (91,), (0, 90)),
     (holding.AC_CHARGE_START_SOC, (91,), (0, 90)),
     (holding.AC_CHARGE_END_SOC, (101,), (0, 100))],
)
def test_soc_cutoffs_take_what_a_real_inverter_takes(register, refused, accepted):
    bank = HoldingRegisters()
    for value in refused:
        with pytest.raises(ValueOutOfRange):
            bank.write(register, value)
    for value in accepted:
        assert bank.write(register, value).new == value


def test_the_clock_is_live_and_can_be_set_with_a_multi_write():
    plant = Plant(start=NOON, seed=1)
    assert holding.decode_clock(*plant.read_holding(12, 3)) == NOON
    plant.advance(61)
    assert holding.decode_clock(*plant.read_holding(12, 3)) == NOON + datetime.timedelta(seconds=61)
    new_time = datetime.datetime(2025, 1, 2, 3, 4, 5)
    plant.write_holding(12, holding.encode_clock(new_time))
    assert holding.decode_clock(*plant.read_holding(12, 3)) == new_time
    plant.advance(10)
    assert holding.decode_clock(*plant.read_holding(12, 3)) == new_time + datetime.timedelta(
        seconds=10
    )
    assert plant.now == NOON + datetime.timedelta(seconds=71)  # the sun did not move


def test_an_impossible_date_is_refused_and_changes_nothing():
    plant = Plant(start=NOON, seed=1)
    before = plant.read_holding(12, 3)
    with pytest.raises(ValueOutOfRange):
        plant.write_holding(12, (24 | 2 << 8, 30 | 10 << 8, 0))  # 30 February
    with pytest.raises(ValueOutOfRange):
        plant.write_holding(13, (1 | 24 << 8,))  # hour 24
    assert plant.read_holding(12, 3) == before


def test_setting_the_clock_to_another_day_resets_the_day_counters():
    plant = Plant(start=NOON, seed=1)
    plant.advance(3600)
    assert inputs(plant)["e_pv_day"] > 0
    plant.write_holding(12, holding.encode_clock(datetime.datetime(2024, 6, 22, 13, 0)))
    assert inputs(plant)["e_pv_day"] == 0


def test_saved_registers_load_back_and_bad_ones_are_refused():
    bank = HoldingRegisters()
    bank.write(65, 42)
    saved = bank.writable()
    assert 12 not in saved and saved[65] == 42
    restored = HoldingRegisters()
    restored.load(saved)
    assert restored[65] == 42
    with pytest.raises(UnknownRegister):
        HoldingRegisters().load({3: 1})


def test_holding_bank_size():
    assert len(HoldingRegisters().values) == HOLDING_REGISTER_COUNT


# -- properties -------------------------------------------------------------------------

writes = st.tuples(
    st.sampled_from(sorted(WRITABLE)), st.integers(min_value=0, max_value=0xFFFF)
)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.one_of(st.floats(min_value=0, max_value=48 * 3600), writes, st.booleans()),
        max_size=12,
    ),
    seed=st.integers(0, 1000),
)
def test_any_commands_and_time_keep_the_registers_valid(steps, seed):
    plant = Plant(start=MIDNIGHT, seed=seed)
    for step in steps:
        if isinstance(step, bool):
            plant.set_grid(step)  # power cuts come and go
        elif isinstance(step, float):
            plant.advance(step)
        else:
            register, value = step
            # Refused writes are part of the game: they must leave a valid plant too.
            with contextlib.suppress(UnknownRegister, ValueOutOfRange):
                plant.write_holding(register, [value])
        named = inputs(plant)
        assert 0 <= named["soc"] <= 100
        assert named["p_charge"] == 0 or named["p_discharge"] == 0
        assert 40.0 <= named["v_bat"] <= 58.0
        assert named["p_inv"] <= MAX_POWER and named["p_eps"] <= MAX_POWER
        assert named["p_eps"] == 0 or named["p_to_user"] == named["p_to_grid"] == 0
