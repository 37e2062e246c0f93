"""RegisterValues: a compact MutableMapping of register values that behaves as a dict."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octolux.device.registers import RegisterValues

registers = st.integers(min_value=0, max_value=0xFFFF)
values = st.integers(min_value=0, max_value=0xFFFF)


@given(st.lists(st.tuples(registers, values)), st.lists(registers))
def test_it_behaves_as_a_dict(writes, deletions):
    compact, plain = RegisterValues(), {}
    for register, value in writes:
        compact[register] = value
        plain[register] = value
    for register in deletions:
        if register in plain:
            del compact[register]
            del plain[register]
        else:
            with pytest.raises(KeyError):
                del compact[register]
    assert compact == plain
    assert len(compact) == len(plain)
    assert sorted(compact.items()) == sorted(plain.items())
    assert all(compact.get(register) == plain.get(register) for register, _ in writes)


@given(st.lists(st.tuples(st.integers(0, 400), st.lists(values, min_size=1, max_size=127))))
def test_store_of_a_frames_values_is_setting_them_one_by_one(frames):
    # Frames of 1-127 values across the array's end (239) and beyond it.
    compact, plain = RegisterValues(), {}
    for register, frame_values in frames:
        compact.store(register, tuple(frame_values))
        plain.update(enumerate(frame_values, register))
    assert compact == plain
    assert len(compact) == len(plain)


def test_update_from_a_frame_and_lookups():
    compact = RegisterValues({21: 0x80})
    compact.update({64: 100, 65: 50, 300: 7})
    assert compact == {21: 0x80, 64: 100, 65: 50, 300: 7}
    assert 22 not in compact and 300 in compact and "21" not in compact
    with pytest.raises(KeyError):
        compact[22]
    with pytest.raises(ValueError):
        compact[1] = 0x10000


def test_all_240_holding_registers_take_a_tenth_of_a_dict():
    full = {register: 1000 + register for register in range(240)}
    compact = RegisterValues(full)
    plain_size = sys.getsizeof(full) + sum(sys.getsizeof(v) for v in full.values())
    compact_size = sys.getsizeof(compact._dense) + sys.getsizeof(compact._sparse)
    assert compact_size * 5 < plain_size
