"""A power cut: the simulated inverter off grid, on EPS down to the EPS cut-off SOC (125)."""

from __future__ import annotations

import datetime

import pytest
from test_simulator_dongle import READ_INPUT, make_dongle, read, request
from test_simulator_plant import AC_CHARGE, inputs, set_bit

from octolux.lxp import holding
from octolux.lxp.inputs import decode_input_blocks
from simulator.dongle import Faults
from simulator.plant import Plant

NIGHT = datetime.datetime(2024, 6, 21, 1, 0)
MORNING = datetime.datetime(2024, 6, 21, 9, 0)
EPS = 1 << holding.BITS[21]["eps"]


def test_on_eps_the_battery_carries_the_house_down_to_the_eps_cutoff():
    plant = Plant(start=NIGHT, seed=1, soc=9.0)  # below the on-grid cut-off (105: 10 %)
    plant.write_holding(holding.EPS_DISCHARGE_CUTOFF_SOC, [6])
    set_bit(plant, EPS)
    plant.set_grid(False)
    named = inputs(plant)
    assert named["status"] == 0x40  # battery off grid
    assert named["p_eps"] == pytest.approx(plant.flows.load, abs=1) and named["p_eps"] > 0
    assert named["p_discharge"] == named["p_eps"]
    assert named["v_acr"] == named["f_ac"] == named["p_to_user"] == named["p_to_grid"] == 0
    assert (named["v_eps"], named["f_eps"]) == (230.0, 50.0)  # registers 90 and 91
    plant.advance(4 * 3600)
    assert plant.soc == pytest.approx(6.0, abs=0.3)  # off grid, register 125 is the floor
    named = inputs(plant)
    assert named["p_eps"] == named["p_discharge"] == 0 and named["status"] == 0  # output off
    assert named["e_eps_day"] > 0


def test_without_eps_a_power_cut_leaves_the_house_dark_and_pv_charges():
    plant = Plant(start=MORNING, seed=2, soc=40.0)
    assert not holding.decode_bits(21, plant.holding[21])["eps"]  # as the captured unit
    plant.set_grid(False)
    named = inputs(plant)
    assert named["p_eps"] == 0 and named["p_discharge"] == 0
    assert named["p_charge"] > 0 and named["status"] == 0x08  # PV charging only
    assert named["p_to_grid"] == named["p_to_user"] == 0


def test_on_eps_pv_carries_the_house_and_charges_the_rest():
    plant = Plant(start=MORNING.replace(hour=12), seed=2, soc=40.0)
    set_bit(plant, EPS)
    plant.set_grid(False)
    flows = plant.flows
    assert flows.eps == pytest.approx(flows.load) and flows.battery > 0
    assert sum(flows.pv) == pytest.approx(flows.eps + flows.battery)
    assert inputs(plant)["status"] == 0x88


def test_no_grid_charging_during_a_power_cut_and_back_when_the_grid_returns():
    plant = Plant(start=NIGHT, seed=3, soc=30.0)
    set_bit(plant, AC_CHARGE | EPS)
    assert inputs(plant)["p_rec"] > 0
    plant.set_grid(False)
    assert inputs(plant)["p_rec"] == 0 and inputs(plant)["p_charge"] == 0
    plant.set_grid(True)
    named = inputs(plant)
    assert named["p_rec"] > 0 and named["status"] == 32 and named["p_eps"] == 0


def test_grid_down_is_a_fault_switched_live():
    dongle, clock = make_dongle(start=NIGHT)
    named = decode_input_blocks(0, request(dongle, read(READ_INPUT, 0, 40))[0].values)[1]
    assert named["v_acr"] > 200
    dongle.faults = Faults(grid_down=True)
    named = decode_input_blocks(0, request(dongle, read(READ_INPUT, 0, 40))[0].values)[1]
    assert named["v_acr"] == 0 and named["p_to_user"] == 0
    dongle.faults = Faults()
    clock.advance(1)
    named = decode_input_blocks(0, request(dongle, read(READ_INPUT, 0, 40))[0].values)[1]
    assert named["v_acr"] > 200


def test_grid_down_from_the_start():
    dongle, _ = make_dongle(start=NIGHT, faults=Faults(grid_down=True))
    assert not dongle.plant.grid_up
