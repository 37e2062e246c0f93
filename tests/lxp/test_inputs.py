"""Input registers: named, scaled, signed values, the same whatever the frame shape."""

import json
import re

import pytest
from vectors import VECTORS, frame_bytes

from octolux import lxp
from octolux.lxp.inputs import (
    BLOCK_KEYS,
    FIELDS,
    FIELDS_BY_KEY,
    covered_blocks,
    decode_input_blocks,
    decode_inputs,
)

# MQ.md's example payloads: every key shown must be present, with that name.
MQ_EXAMPLE = {
    1: '{"status":32,"v_bat":49.4,"soc":53,"p_pv":550,"p_charge":114,"p_discharge":0,'
    '"v_acr":247.3,"f_ac":49.96,"p_inv":0,"p_rec":116,"v_eps":247.3,"f_eps":49.96,'
    '"p_to_grid":0,"p_to_user":0,"e_pv_day":0.7,"e_inv_day":2.0,"e_rec_day":1.7,'
    '"e_chg_day":1.9,"e_dischg_day":2.4,"e_eps_day":0.0,"e_to_grid_day":0.0,'
    '"e_to_user_day":3.9,"v_bus_1":379.9,"v_bus_2":300.5}',
    2: '{"e_pv_all":1675.6,"e_inv_all":943.9,"e_rec_all":1099.3,"e_chg_all":1251.2,'
    '"e_dischg_all":1151.6,"e_eps_all":0.0,"e_to_grid_all":124.0,"e_to_user_all":1115.8,'
    '"t_inner":43,"t_rad_1":30,"t_rad_2":30}',
    3: '{"max_chg_curr":105.0,"max_dischg_curr":150.0,"charge_volt_ref":53.2,'
    '"dischg_cut_volt":40.0,"bat_status_0":0,"bat_status_1":0,"bat_status_2":0,'
    '"bat_status_3":0,"bat_status_4":0,"bat_status_5":192,"bat_status_6":0,"bat_status_7":0,'
    '"bat_status_8":0,"bat_status_9":0,"bat_status_inv":3}',
}

# The capture sources name a few keys differently (PROTOCOL.md is ours).
PEER_NAMES = {
    "v_ac_r": "v_acr", "v_ac_s": "v_acs", "v_ac_t": "v_act", "v_eps_r": "v_eps",
    "e_pv_day_1": "e_pv_1_day", "e_pv_day_2": "e_pv_2_day", "e_pv_day_3": "e_pv_3_day",
    "e_pv_all_1": "e_pv_1_all", "e_pv_all_2": "e_pv_2_all", "e_pv_all_3": "e_pv_3_all",
    "vbat_inv": "v_bat_inv", "cycle_count": "bat_cycle_count",
}
# Where we decode differently from the capture source's decoder, on purpose.
DELIBERATELY_DIFFERENT = {"bat_current"}  # signed; see test_bat_current_is_signed


def _reply(name):
    return lxp.parse(frame_bytes(name))


@pytest.mark.parametrize("block", [1, 2, 3])
def test_every_key_of_the_mq_example_is_published(block):
    frame = _reply(("read_input_reply_reg0", "read_input_reply_reg40",
                    "read_input_reply_reg80")[block - 1])
    blocks = decode_input_blocks(frame.register, frame.values)
    assert set(blocks) == {block}
    assert set(json.loads(MQ_EXAMPLE[block])) <= set(blocks[block])


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("read_input_reply_reg0", "lxp_bridge_fixture_decoded"),
        ("read_input_reply_reg40", "lxp_bridge_fixture_decoded"),
        ("read_input_reply_reg80", "lxp_bridge_fixture_decoded"),
        ("read_input_all_reply_protocol5_127regs", "decoded_by_register_number"),
    ],
)
def test_values_match_the_capture_sources_scaling(name, reference):
    frame = _reply(name)
    named = decode_inputs(frame.register, frame.values)
    compared = 0
    for peer_key, value in VECTORS[name]["decoded"][reference].items():
        key = PEER_NAMES.get(peer_key, peer_key)
        if key in named and key not in DELIBERATELY_DIFFERENT:
            assert named[key] == value, key
            compared += 1
    assert compared > 10


def test_mq_units_floats_for_scaled_values_ints_for_counts():
    frame = _reply("read_input_reply_reg0")
    named = decode_inputs(frame.register, frame.values)
    assert named["e_eps_day"] == 0.0 and isinstance(named["e_eps_day"], float)
    assert isinstance(named["soc"], int) and named["soc"] == 83
    assert named["v_acr"] == 234.1
    assert named["f_ac"] == 50.04
    assert isinstance(named["status"], int)


def test_127_register_frame_gives_the_same_names_and_numbers_as_the_bursts():
    all127 = _reply("read_input_all_reply_protocol5_127regs")
    blocks = decode_input_blocks(all127.register, all127.values)
    assert sorted(blocks) == [1, 2, 3]
    # Re-cut the same registers into three 40-register frames: same result.
    for block in (1, 2, 3):
        start = (block - 1) * 40
        burst = decode_input_blocks(start, all127.values[start : start + 40])
        assert burst == {block: blocks[block]}


def test_bat_current_is_signed():
    frame = _reply("read_input_all_reply_protocol5_127regs")
    assert frame.values[98] == 65356
    assert decode_inputs(0, frame.values)["bat_current"] == -18.0


def test_temperatures_are_signed():
    values = [0] * 40
    values[64 - 40] = 0xFFFB  # -5 degC, in the block starting at register 40
    values[103 - 80] = 0xFFEC  # -2.0 degC, in the block starting at register 80
    assert decode_inputs(40, values)["t_inner"] == -5
    assert decode_inputs(80, values)["max_cell_temp"] == -2.0


def test_derived_values_use_python_ints_no_16_bit_overflow():
    values = [0] * 40
    values[7] = values[8] = values[9] = 60000
    values[10], values[11] = 0, 65000
    values[26], values[27] = 65000, 0
    named = decode_inputs(0, values)
    assert named["p_pv"] == 180000
    assert named["p_battery"] == -65000
    assert named["p_grid"] == -65000


def test_energy_sums_have_no_float_noise():
    values = [0] * 40
    values[28], values[29] = 1, 2  # 0.1 + 0.2 kWh
    assert decode_inputs(0, values)["e_pv_day"] == 0.3


def test_u32_values_take_the_low_word_first():
    frame = _reply("read_input_reply_reg40")
    named = decode_inputs(frame.register, frame.values)
    assert named["runtime"] == 52820 + (1260 << 16)
    assert named["e_to_user_all"] == (36034 + (1 << 16)) / 10


def test_power_factor_encoding():
    values = [0] * 40
    values[19] = 1100
    assert decode_inputs(0, values)["pf"] == -0.1
    values[19] = 990
    assert decode_inputs(0, values)["pf"] == 0.99


def test_soc_and_soh_share_register_5():
    values = [0] * 40
    values[5] = 97 << 8 | 53
    named = decode_inputs(0, values)
    assert (named["soc"], named["soh"]) == (53, 97)


def test_inverter_serial_is_read_from_registers_115_to_119():
    frame = _reply("read_input_reply_reg80")
    assert decode_inputs(frame.register, frame.values)["inverter_serial"] == "9292006063"


def test_a_field_needs_all_its_registers():
    # A frame from 41 lacks register 40: the u32 starting there is not guessed.
    named = decode_inputs(41, [0] * 39)
    assert "e_pv_1_all" not in named
    assert "e_pv_all" not in named
    assert "e_pv_2_all" in named


def test_only_fully_covered_blocks_are_published():
    assert covered_blocks(0, 127) == (1, 2, 3)
    assert covered_blocks(120, 40) == (4,)
    assert covered_blocks(0, 39) == ()
    assert covered_blocks(200, 40) == ()


def test_unknown_blocks_decode_to_nothing_and_do_not_fail():
    assert decode_input_blocks(200, [1] * 40) == {}


def test_field_table_keys_are_unique_and_snake_case():
    keys = [field.key for field in FIELDS]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in keys)
    assert set(FIELDS_BY_KEY) == set(keys)
    assert sum(len(block) for block in BLOCK_KEYS.values()) == len(keys)
