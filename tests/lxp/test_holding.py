"""Holding registers: bit fields, signed values, clock and time slots."""

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vectors import parsed

from octolux.lxp import holding


def test_register_21_bits_of_the_captured_frame():
    frame = parsed("read_hold_reply_regs0_22")
    bits = holding.decode_bits(holding.FUNCTION_BITS, frame.registers[21])
    on = {name for name, value in bits.items() if value}
    assert on == {
        "drms", "anti_island", "grid_on_power_soft_start", "seamless_eps_switching",
        "normal_or_standby", "iso", "gfci", "dci", "feed_in_grid",
    }
    assert bits["ac_charge"] is False


def test_the_bits_mq_commands_use():
    bits = holding.BITS[holding.FUNCTION_BITS]
    assert (bits["ac_charge"], bits["forced_discharge"], bits["charge_priority"]) == (7, 10, 11)
    assert holding.BITS[holding.SYSTEM_BITS]["micro_grid"] == 2


@given(st.integers(0, 0xFFFF), st.integers(0, 15), st.booleans())
def test_with_bit_changes_that_bit_only(value, bit, on):
    changed = holding.with_bit(value, bit, on)
    assert bool(changed >> bit & 1) is on
    assert changed & ~(1 << bit) == value & ~(1 << bit)
    assert 0 <= changed <= 0xFFFF


def test_with_bit_rejects_bits_outside_a_register():
    with pytest.raises(ValueError):
        holding.with_bit(0, 16, True)


def test_signed_registers():
    assert holding.to_signed(106, 65336) == -200  # -20.0 degC
    assert holding.to_signed(119, 0xFFFF) == -1
    assert holding.to_signed(65, 0xFFFF) == 0xFFFF  # not a signed register


def test_clock_from_the_captured_frames():
    frame = parsed("read_hold_reply_reg12_time")
    clock = holding.decode_clock(*frame.values)
    assert clock == datetime.datetime(2022, 6, 20, 5, 16, 57)
    request = parsed("write_multi_request_time")
    assert holding.encode_clock(datetime.datetime(2022, 6, 19, 20, 23, 33)) == request.values


@given(st.datetimes(min_value=datetime.datetime(2000, 1, 1),
                    max_value=datetime.datetime(2255, 12, 31)))
def test_clock_round_trips(moment):
    moment = moment.replace(microsecond=0)
    assert holding.decode_clock(*holding.encode_clock(moment)) == moment


@given(st.times())
def test_time_slots_round_trip_to_the_minute(time):
    expected = time.replace(second=0, microsecond=0, tzinfo=None)
    assert holding.decode_time(holding.encode_time(time)) == expected


def test_time_slot_encoding_is_hour_low_minute_high():
    assert holding.encode_time(datetime.time(23, 30)) == 23 | 30 << 8


def test_register_names():
    assert holding.register_name(65) == "discharge_power_percent"
    assert holding.register_name(69) == "ac_charge_slot_1_end"
    assert holding.register_name(999) == "register_999"
    assert holding.TIME_SLOTS["ac_charge"][2] == (72, 73)
