"""Input registers: named, scaled, signed values, the same whatever the frame shape."""

import json
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vectors import VECTORS, parsed

from octolux.lxp.inputs import (
    BLOCK_KEYS,
    DERIVED_KINDS,
    FIELDS,
    FIELDS_BY_KEY,
    REGISTER_COUNT,
    Kind,
    covered_blocks,
    decode_input_blocks,
    decode_inputs,
    encode_inputs,
    from_signed16,
    to_signed16,
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
    return parsed(name)


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
    assert covered_blocks(127, 127) == (5, 6)  # an SNA's second push: 127-253
    assert covered_blocks(240, 40) == ()


def test_unknown_blocks_decode_to_nothing_and_do_not_fail():
    assert decode_input_blocks(240, [1] * 40) == {}
    assert decode_input_blocks(254, [1] * 127) == {}


def test_field_table_keys_are_unique_and_snake_case():
    keys = [field.key for field in FIELDS]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in keys)
    assert set(FIELDS_BY_KEY) == set(keys)
    assert sum(len(block) for block in BLOCK_KEYS.values()) == len(keys)


# -- encoding: the inverse, from the same table -------------------------------------

PRIMITIVE_FIELDS = [field for field in FIELDS if field.kind not in DERIVED_KINDS]
TEXT_FIELDS = [field for field in FIELDS if field.kind is Kind.TEXT]
# Text as decoding gives it back: 8-bit, without the trailing NULs and spaces it strips.
texts = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=10).map(
    lambda text: text.rstrip(" ")
)


@st.composite
def raw_inputs(draw):
    """240 raw registers; text registers hold NUL-padded text, as an inverter pads it."""
    values = draw(st.lists(st.integers(0, 0xFFFF), min_size=240, max_size=240))
    for field in TEXT_FIELDS:
        raw = draw(texts).encode("latin-1").ljust(2 * len(field.span), b"\x00")
        values[field.span.start : field.span.stop] = struct.unpack(f"<{len(field.span)}H", raw)
    return tuple(values)


@settings(max_examples=200, deadline=None)
@given(raw_inputs())
def test_encoding_the_decoded_values_gives_back_the_raw_registers(raw):
    named = decode_inputs(0, raw)
    # From a base of the raw registers: every register, named or not, comes back.
    assert encode_inputs(named, base=raw) == raw
    # From zeros: every register a primitive field covers comes back, the rest stay 0.
    encoded = encode_inputs(named)
    covered = dict.fromkeys(range(REGISTER_COUNT), 0)  # the bits of each a field covers
    for field in PRIMITIVE_FIELDS:
        for register in field.span:
            bits = ((1 << field.width) - 1) << field.shift if field.kind is Kind.BITS else 0xFFFF
            covered[register] |= bits
    assert len(encoded) == REGISTER_COUNT
    for register in range(REGISTER_COUNT):
        assert encoded[register] == raw[register] & covered[register], register


@settings(max_examples=50, deadline=None)
@given(raw_inputs(), st.sampled_from([0, 40, 80, 120]))
def test_a_burst_encodes_back_to_its_own_registers(raw, register):
    burst = raw[register : register + 40]
    encoded = encode_inputs(decode_inputs(register, burst), base=(0,) * register + burst)
    assert encoded[register:] == burst


def _physical(field):
    """Values a plant could report for ``field``, at the register's resolution."""
    if field.kind is Kind.TEXT:
        return texts
    if field.kind is Kind.POWER_FACTOR:
        return st.integers(-999, 1000).map(lambda n: n / 1000)
    if field.kind is Kind.BITS:
        return st.integers(0, (1 << field.width) - 1)
    low, high = {
        Kind.UNSIGNED: (0, 0xFFFF), Kind.SIGNED: (-0x8000, 0x7FFF),
        Kind.UNSIGNED_32: (0, 0xFFFFFFFF), Kind.LOW_BYTE: (0, 0xFF), Kind.HIGH_BYTE: (0, 0xFF),
    }[field.kind]
    raw = st.integers(low, high)
    return raw if field.divisor == 1 else raw.map(lambda n, d=field.divisor: n / d)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={f.key: _physical(f) for f in PRIMITIVE_FIELDS}))
def test_decoding_the_encoded_values_gives_back_the_named_values(named):
    decoded = decode_inputs(0, encode_inputs(named))
    assert {key: decoded[key] for key in named} == named


def test_encoding_scales_signs_and_packs_as_the_table_says():
    encoded = encode_inputs({
        "f_ac": 50.04, "v_acr": 234.1, "soc": 53, "soh": 97, "pf": -0.1,
        "bat_current": -18.0, "t_inner": -5, "runtime": 52820 + (1260 << 16),
        "max_chg_curr": 105.0, "inverter_serial": "9292006063",
    })
    assert encoded[15] == 5004 and encoded[12] == 2341
    assert encoded[5] == 97 << 8 | 53
    assert encoded[19] == 1100
    assert encoded[98] == 65356 and encoded[64] == 0xFFFB
    assert encoded[69:71] == (52820, 1260)  # low word first
    assert encoded[81] == 10500
    assert decode_inputs(80, encoded[80:120])["inverter_serial"] == "9292006063"


def test_the_parallel_fields_are_bits_of_register_113():
    encoded = encode_inputs({"parallel_role": 2, "parallel_phase": 3, "parallel_count": 4})
    assert encoded[113] == 2 | 3 << 2 | 4 << 8
    assert decode_input_blocks(80, encoded[80:120])[3]["parallel_count"] == 4
    with pytest.raises(ValueError, match="parallel_role"):
        encode_inputs({"parallel_role": 4})


def test_the_named_inputs_beyond_block_4_land_in_blocks_5_and_6():
    encoded = encode_inputs({"p_load_meter": 1234, "v_grid_l1": 121.5, "p_to_user_l2": 77,
                             "quick_charge_remaining": 600, "p_pv_4": 900,
                             "e_pv_6_all": 123456.7, "p_smart_load": 15})
    assert (encoded[170], encoded[193], encoded[204], encoded[210], encoded[220]) == (
        1234, 1215, 77, 600, 900)
    blocks = decode_input_blocks(160, encoded[160:240])
    assert blocks[5]["p_load_meter"] == 1234 and blocks[5]["v_grid_l1"] == 121.5
    assert blocks[6]["e_pv_6_all"] == 123456.7 and blocks[6]["p_smart_load"] == 15


def test_values_the_floats_cannot_hold_exactly_round_to_the_nearest_unit():
    encoded = encode_inputs({"v_bat": 53.26, "f_ac": 0.29}, count=40)
    assert (encoded[4], encoded[15]) == (533, 29)  # 0.29 * 100 is 28.999999999999996


def test_derived_values_are_left_to_their_parts():
    assert encode_inputs({"p_pv": 999, "p_battery": -5, "e_pv_all": 1.0}) == (0,) * 240
    assert encode_inputs({"p_pv_1": 100, "p_pv": 999})[7] == 100


def test_unnamed_registers_keep_the_base():
    base = tuple(0x0101 * n for n in range(40))
    encoded = encode_inputs({"v_bat": 50.0, "soc": 20}, base=base)
    assert encoded[4] == 500
    assert encoded[5] == 0x0514  # soh, the other half of register 5, is kept
    assert encoded[:4] == base[:4] and encoded[6:] == base[6:]
    with pytest.raises(ValueError, match="count 41"):
        encode_inputs({}, 41, base=base)


@pytest.mark.parametrize(
    ("named", "message"),
    [
        ({"soc": 256}, r"soc: 256 % is out of range \(0 to 255 %\)"),
        ({"v_bat": -0.1}, "v_bat: -0.1 V is out of range"),
        ({"bat_current": 3276.8}, "bat_current"),
        ({"runtime": 2**32}, "runtime"),
        ({"pf": 1.5}, "pf"),
        ({"pf": -1.0}, "pf"),
        ({"v_bat": float("nan")}, "v_bat: nan is not a finite number"),
        ({"v_bat": "49.4"}, "v_bat: '49.4' is not a finite number"),
        ({"status": True}, "status"),
        ({"inverter_serial": "ELEVENCHARS"}, "inverter_serial: 'ELEVENCHARS' does not fit"),
        ({"inverter_serial": "SIMINV000\u20ac"}, "inverter_serial: .* is not 8-bit text"),
        ({"inverter_serial": 1234567890}, "inverter_serial: 1234567890 is not text"),
        ({"v_batt": 49.4}, "not an input register key: 'v_batt'"),
    ],
)
def test_values_that_do_not_fit_are_refused_with_the_key(named, message):
    with pytest.raises(ValueError, match=message):
        encode_inputs(named)


def test_a_field_past_the_count_is_refused():
    with pytest.raises(ValueError, match="v_gen is in registers 121-121, past the 120 encoded"):
        encode_inputs({"v_gen": 230.0}, 120)
    assert len(encode_inputs({"v_bat": 50.0}, 40)) == 40


def test_signed_16_bit_helpers():
    assert to_signed16(0xFFFB) == -5 and to_signed16(0x7FFF) == 32767
    assert to_signed16(0x8000) == -32768
    assert from_signed16(-5) == 0xFFFB and from_signed16(32767) == 0x7FFF
    assert all(to_signed16(from_signed16(n)) == n for n in range(-0x8000, 0x8000, 7))
    for outside in (-0x8001, 0x8000):
        with pytest.raises(ValueError, match="signed 16-bit"):
            from_signed16(outside)
