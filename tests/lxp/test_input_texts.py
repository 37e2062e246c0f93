"""Derived input keys: p_load, status_text and the fault and warning names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from octolux.lxp.inputs import (
    BLOCK_KEYS,
    FAULT_NAMES,
    STATUS_TEXTS,
    WARNING_NAMES,
    decode_input_blocks,
    decode_inputs,
    encode_inputs,
)


def block(**raw) -> list[int]:
    """Registers 0-79, zero but for ``raw`` (register number -> value, as r<n>=...)."""
    values = [0] * 80
    for name, value in raw.items():
        values[int(name[1:])] = value
    return values


def test_p_load_is_the_balance_of_the_ac_side():
    # Importing 3000 W, 2500 W of it charging the battery, the inverter adds 200 W.
    values = decode_inputs(0, block(r27=3000, r16=200, r17=2500))
    assert values["p_load"] == 700
    # Exporting: the inverter gives 3000 W, 2000 W of it to the grid.
    assert decode_inputs(0, block(r16=3000, r26=2000))["p_load"] == 1000


@given(*(st.integers(0, 0xFFFF) for _ in range(4)))
def test_p_load_for_any_powers(to_user, inverter, rectifier, to_grid):
    values = decode_inputs(0, block(r27=to_user, r16=inverter, r17=rectifier, r26=to_grid))
    assert values["p_load"] == to_user + inverter - rectifier - to_grid
    assert values["p_grid"] == to_user - to_grid


def test_status_in_words():
    assert decode_inputs(0, block(r0=0x20))["status_text"] == "AC charging"
    assert decode_inputs(0, block(r0=0x10))["status_text"] == "battery on-grid"
    assert decode_inputs(0, block(r0=0))["status_text"] == "standby"
    assert decode_inputs(0, block(r0=0x33))["status_text"] == "unknown (51)"
    assert len(set(STATUS_TEXTS.values())) == len(STATUS_TEXTS)


def test_fault_and_warning_names_of_the_bits_set():
    values = decode_inputs(0, block(r60=1 << 19 | 1, r61=1 << 15, r62=1 << 16))
    assert values["fault_codes"] == [
        "E000 internal communication fault 1", "E019 bus voltage high",
        "E031 internal communication fault 4",
    ]
    assert values["warning_codes"] == ["W016 grid power outage"]
    assert decode_inputs(0, block())["fault_codes"] == []
    assert decode_inputs(0, block())["warning_codes"] == []


@given(st.integers(0, 0xFFFFFFFF))
def test_one_name_per_bit(bits):
    values = decode_inputs(0, block(r60=bits & 0xFFFF, r61=bits >> 16))
    assert len(values["fault_codes"]) == bin(bits).count("1")
    assert all(name[:4] == f"E{bit:03}" for bit, name in enumerate(FAULT_NAMES))
    assert all(name[:4] == f"W{bit:03}" for bit, name in enumerate(WARNING_NAMES))


def test_the_new_keys_are_in_their_blocks_and_encoding_skips_them():
    assert {"status_text", "p_load"} <= set(BLOCK_KEYS[1])
    assert {"fault_codes", "warning_codes"} <= set(BLOCK_KEYS[2])
    raw = encode_inputs({"status": 32, "p_to_user": 900, "p_rec": 400, "status_text": "x",
                         "p_load": 1, "fault_codes": ["x"]}, 80)
    blocks = decode_input_blocks(0, raw)
    assert blocks[1]["status_text"] == "AC charging" and blocks[1]["p_load"] == 500
    assert blocks[2]["fault_codes"] == []


def test_a_frame_without_the_second_register_of_a_pair_has_no_names():
    assert "fault_codes" not in decode_inputs(40, block()[40:61])
