"""The settings table, decode_settings and the text forms of time slots and the clock."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octolux.device.settings import (
    KINDS,
    SETTING_REGISTERS,
    SETTINGS,
    WRITABLE_REGISTERS,
    check_register_write,
    decode_settings,
    format_clock,
    format_time_slot,
    parse_clock,
    parse_time_slot,
)
from octolux.lxp import holding

times = st.times().map(lambda t: t.replace(second=0, microsecond=0))


def test_the_table_holds_what_the_issue_asks_for():
    # MQ.md's command names stay, as settings keys too.
    for name in ("ac_charge", "forced_discharge", "charge_priority", "charge_pct",
                 "discharge_pct", "charge_amount_pct"):
        assert SETTINGS[name].writable
    by_register = {s.registers[0]: s for s in SETTINGS.values() if s.kind == "percent"}
    assert set(by_register) == set(holding.PERCENT)
    assert {s.registers for s in SETTINGS.values() if s.kind == "time_slot"} == {
        pair for slots in holding.TIME_SLOTS.values() for pair in slots
    }
    bits = {(s.registers[0], s.bit) for s in SETTINGS.values() if s.kind == "bit"}
    assert bits == {(register, bit) for register, names in holding.BITS.items()
                    for bit in names.values()}
    assert SETTINGS["clock"].registers == (12, 13, 14)
    assert SETTINGS["feed_in_grid"].writable and SETTINGS["eps"].writable
    assert not SETTINGS["anti_island"].writable  # grid protection: not a casual switch


def test_every_setting_is_described_and_consistent():
    for name, setting in SETTINGS.items():
        assert setting.name == name and setting.kind in KINDS and setting.description
        assert (setting.bit is not None) == (setting.kind == "bit")
        if setting.kind in ("percent", "number"):
            # A unit, or (a code) the meaning of each value in the description.
            assert setting.minimum < setting.maximum
            assert setting.unit or ":" in setting.description  # else a code, each value told
        assert set(setting.registers) <= SETTING_REGISTERS


def test_a_bad_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        type(SETTINGS["eps"])("x", "colour", (1,), "what")



def test_decode_settings_from_registers():
    clock = holding.encode_clock(datetime.datetime(2026, 11, 30, 12, 34, 56))
    registers = {
        12: clock[0], 13: clock[1], 14: clock[2],
        21: 0xF354 | 0x80,  # the captured unit's bits, AC charge on
        64: 100, 65: 50, 67: 90, 110: 2,
        68: holding.encode_time(datetime.time(23, 30)), 69: holding.encode_time(datetime.time(5)),
        84: 0, 85: 0,
        119: 0x10000 - 200,
    }
    settings = decode_settings(registers)
    assert settings["clock"] == "2026-11-30T12:34:56"
    assert settings["ac_charge"] is True and settings["forced_discharge"] is False
    assert settings["feed_in_grid"] is True and settings["eps"] is False
    assert settings["fast_zero_export"] is True and settings["micro_grid"] is False
    assert settings["charge_pct"] == 100 and settings["discharge_pct"] == 50
    assert settings["charge_amount_pct"] == 90
    assert settings["ac_charge_slot_1"] == "23:30-05:00"
    assert settings["forced_discharge_slot_1"] == "00:00-00:00"
    assert settings["ct_power_offset"] == -200
    # Only the settings whose registers are all known; in table order.
    assert "ac_charge_slot_2" not in settings and "eps_cutoff_soc" not in settings
    assert list(settings) == [name for name in SETTINGS if name in settings]


def test_a_value_that_is_not_a_time_or_a_date_decodes_as_none():
    settings = decode_settings({12: 0, 13: 0, 14: 0, 70: 25, 71: 0})
    assert settings == {"clock": None, "ac_charge_slot_2": None,
                        "ac_charge_slot_2_start": None, "ac_charge_slot_2_end": "00:00"}


def test_decode_settings_of_nothing_is_empty():
    assert decode_settings({}) == {}


@given(times, times)
def test_a_time_slot_survives_text_and_back(start, end):
    text = format_time_slot(start, end)
    assert len(text) == 11 and text[2] == ":" and text[5] == "-"
    assert parse_time_slot(text) == (start, end)


@given(times, times)
def test_a_time_slot_survives_the_registers_and_back(start, end):
    text = format_time_slot(start, end)
    parsed = parse_time_slot(text)
    registers = {76: holding.encode_time(parsed[0]), 77: holding.encode_time(parsed[1])}
    for value in registers.values():
        check_register_write(76, value)  # a value set_hold accepts, too
    assert decode_settings(registers)["charge_priority_slot_1"] == text


@given(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99))
def test_only_real_times_of_day_parse(h1, m1, h2, m2):
    text = f"{h1:02}:{m1:02}-{h2:02}:{m2:02}"
    if h1 <= 23 and h2 <= 23 and m1 <= 59 and m2 <= 59:
        assert format_time_slot(*parse_time_slot(text)) == text
    else:
        with pytest.raises(ValueError):
            parse_time_slot(text)


@given(st.text(max_size=20))
def test_any_other_text_is_not_a_time_slot_or_round_trips(text):
    try:
        start, end = parse_time_slot(text)
    except ValueError:
        return
    assert format_time_slot(start, end) == text


@pytest.mark.parametrize(
    "text", ["", "9-5", "25:00-01:00", "09:00", "9:00-17:00", "09:00-17:60", "09:00 - 17:00",
             "09:00-17:00 ", "０９:00-17:00", "09:00-17:00-18:00", "09.00-17.00"],
)
def test_not_time_slots(text):
    with pytest.raises(ValueError):
        parse_time_slot(text)


@given(st.datetimes(min_value=datetime.datetime(2000, 1, 1),
                    max_value=datetime.datetime(2255, 12, 31, 23, 59, 59)))
def test_the_clock_survives_text_registers_and_back(moment):
    moment = moment.replace(microsecond=0)
    text = format_clock(moment)
    assert parse_clock(text) == moment
    values = holding.encode_clock(parse_clock(text))
    assert decode_settings(dict(zip((12, 13, 14), values, strict=True)))["clock"] == text


@pytest.mark.parametrize(
    "text", ["2026-11-30", "2026-11-30T12:34", "2026-02-30T00:00:00", "1999-12-31T23:59:59",
             "2026-11-30T12:34:56Z", "2026-11-30T12:34:56.5", "now"],
)
def test_not_clock_values(text):
    with pytest.raises(ValueError):
        parse_clock(text)


def test_set_hold_rules_cover_the_writable_settings_but_the_clock():
    writable = {register for setting in SETTINGS.values() if setting.writable
                and setting.kind != "clock" for register in setting.registers}
    assert writable <= set(WRITABLE_REGISTERS)
    assert not {12, 13, 14} & set(WRITABLE_REGISTERS)
    with pytest.raises(ValueError, match="not known to be writable"):
        check_register_write(0, 1)
    with pytest.raises(ValueError, match="register 65 takes 0-100: 101"):
        check_register_write(65, 101)
    with pytest.raises(ValueError, match="register 105 takes 10-90: 5"):
        check_register_write(105, 5)
    check_register_write(0, 1, any_register=True)
