"""The simulated inverter's settings over the wire: every holding register readable,
writes validated like a real inverter, the clock. Frames built and decoded by octolux.lxp."""

from __future__ import annotations

import datetime

import pytest
from test_simulator_dongle import (
    DATALOG,
    INVERTER,
    NOON,
    READ_HOLD,
    READ_INPUT,
    make_dongle,
    read,
    request,
)

from octolux import lxp
from octolux.lxp import holding
from octolux.lxp.inputs import decode_input_blocks, encode_text
from simulator.registers import HOLDING_REGISTER_COUNT
from simulator.state import StateFileError

WRITE_SINGLE = lxp.DeviceFunction.WRITE_SINGLE
WRITE_MULTI = lxp.DeviceFunction.WRITE_MULTI
ILLEGAL_VALUE = lxp.ExceptionCode.ILLEGAL_VALUE
ILLEGAL_ADDRESS = lxp.ExceptionCode.ILLEGAL_ADDRESS


def all_holding(dongle) -> tuple[int, ...]:
    """Registers 0-239 read as a bridge reads them at connect: six aligned 40-register reads."""
    values: tuple[int, ...] = ()
    for register in range(0, HOLDING_REGISTER_COUNT, 40):
        (reply,) = request(dongle, read(READ_HOLD, register, 40))
        assert isinstance(reply, lxp.ReadReply) and reply.register == register
        values += reply.values
    return values


def single(register, value):
    return lxp.WriteSingleRequest(DATALOG, INVERTER, register, value)


def multi(register, values):
    return lxp.WriteMultiRequest(DATALOG, INVERTER, register, tuple(values))


# -- reading ------------------------------------------------------------------------


def test_every_holding_register_reads_in_six_aligned_blocks():
    dongle, _ = make_dongle()
    values = all_holding(dongle)
    assert len(values) == 240
    assert values == dongle.plant.read_holding(0, 120) + dongle.plant.read_holding(120, 120)


def test_the_registers_that_tell_the_model_firmware_and_serial_are_filled_in():
    dongle, _ = make_dongle()
    values = all_holding(dongle)
    assert values[0] and values[1]  # model code
    assert values[2:7] == encode_text(INVERTER, 5)
    firmware_code = bytes(byte for value in values[7:9] for byte in (value & 0xFF, value >> 8))
    assert firmware_code.isalpha() and firmware_code.isupper(), firmware_code
    assert values[9] and values[10]  # software versions
    assert values[19]  # device type


def test_the_settings_hold_realistic_values():
    dongle, _ = make_dongle()
    values = all_holding(dongle)
    assert holding.decode_clock(*values[12:15]) == NOON
    bits = holding.decode_bits(21, values[21])
    assert bits["normal_or_standby"] and bits["feed_in_grid"] and not bits["ac_charge"]
    for register, (low, high) in holding.LIMITS.items():
        assert low <= holding.to_signed(register, values[register]) <= high, register
    for slots in holding.TIME_SLOTS.values():
        for start, end in slots:
            holding.decode_time(values[start])
            holding.decode_time(values[end])
    assert values[holding.DISCHARGE_CUTOFF_SOC] >= 10


@pytest.mark.parametrize(("register", "count"), [(240, 1), (220, 40), (239, 2), (200, 41)])
def test_a_read_past_register_239_gets_an_exception_reply(register, count):
    dongle, _ = make_dongle()
    (reply,) = request(dongle, read(READ_HOLD, register, count))
    assert isinstance(reply, lxp.ExceptionReply)
    assert reply.code in (ILLEGAL_ADDRESS, ILLEGAL_VALUE)


# -- writing ------------------------------------------------------------------------


BAD_WRITES = [
    (65, (101,)),  # a percentage over 100
    (holding.DISCHARGE_CUTOFF_SOC, (9,)),
    (holding.DISCHARGE_CUTOFF_SOC, (91,)),
    (holding.EPS_DISCHARGE_CUTOFF_SOC, (91,)),
    (holding.AC_CHARGE_START_SOC, (95,)),
    (holding.AC_CHARGE_END_SOC, (101,)),
    (68, (24,)),  # hour 24
    (69, (7 | 60 << 8,)),  # minute 60
    (68, (1, 24 | 0 << 8)),  # a slot whose end is bad: neither half is written
    (12, holding.encode_clock(datetime.datetime(2016, 1, 1))),  # before the inverter's years
    (12, (25 | 2 << 8, 30 | 10 << 8, 0)),  # 30 February
    (12, (25 | 13 << 8, 1, 0)),  # month 13
    (13, (1 | 24 << 8,)),  # hour 24
    (14, (0 | 60 << 8,)),  # second 60
    (119, (1001,)),
]


@pytest.mark.parametrize(("register", "values"), BAD_WRITES)
def test_a_bad_value_gets_exception_3_and_changes_nothing(register, values):
    dongle, _ = make_dongle()
    before = all_holding(dongle)
    if len(values) == 1:
        (reply,) = request(dongle, single(register, values[0]))
        assert reply == lxp.ExceptionReply(WRITE_SINGLE, DATALOG, INVERTER, register,
                                           ILLEGAL_VALUE)
    (reply,) = request(dongle, multi(register, values))
    assert reply == lxp.ExceptionReply(WRITE_MULTI, DATALOG, INVERTER, register, ILLEGAL_VALUE)
    assert all_holding(dongle) == before


@pytest.mark.parametrize("register", [0, 1, 2, 7, 8, 9, 10, 11, 19, 200, 239])
def test_read_only_registers_refuse_writes(register):
    dongle, _ = make_dongle()
    before = all_holding(dongle)
    (reply,) = request(dongle, single(register, 1))
    assert reply == lxp.ExceptionReply(WRITE_SINGLE, DATALOG, INVERTER, register, ILLEGAL_ADDRESS)
    assert all_holding(dongle) == before


@pytest.mark.parametrize(
    ("register", "value"),
    [(holding.DISCHARGE_CUTOFF_SOC, 20), (holding.EPS_DISCHARGE_CUTOFF_SOC, 15),
     (holding.AC_CHARGE_START_SOC, 30), (holding.AC_CHARGE_END_SOC, 95),
     (holding.FORCED_DISCHARGE_SOC_LIMIT, 40), (66, 50), (74, 0), (82, 100),
     (110, 0b101), (119, -150 & 0xFFFF), (21, holding.with_bit(0xF354, 7, True))],
)
def test_a_good_value_is_echoed_stored_and_read_back(register, value):
    dongle, _ = make_dongle()
    assert request(dongle, single(register, value)) == [
        lxp.WriteSingleReply(DATALOG, INVERTER, register, value)
    ]
    assert all_holding(dongle)[register] == value


def test_a_slot_by_two_single_writes_or_one_multi_write():
    dongle, _ = make_dongle()
    start, end = holding.encode_time(datetime.time(23, 30)), holding.encode_time(
        datetime.time(5, 30))
    assert request(dongle, single(70, start)) == [
        lxp.WriteSingleReply(DATALOG, INVERTER, 70, start)]
    assert request(dongle, single(71, end)) == [lxp.WriteSingleReply(DATALOG, INVERTER, 71, end)]
    assert request(dongle, multi(84, (start, end))) == [
        lxp.WriteMultiReply(DATALOG, INVERTER, 84, 2)]
    values = all_holding(dongle)
    assert values[70:72] == values[84:86] == (start, end)


def test_the_clock_is_set_by_a_multi_write_at_12_and_runs_on_from_there():
    dongle, clock = make_dongle(speed=10)
    moment = datetime.datetime(2026, 11, 30, 12, 34, 56)
    assert request(dongle, multi(12, holding.encode_clock(moment))) == [
        lxp.WriteMultiReply(DATALOG, INVERTER, 12, 3)]
    (reply,) = request(dongle, read(READ_HOLD, 12, 3))
    assert holding.decode_clock(*reply.values) == moment
    clock.advance(6)  # one simulated minute at --speed 10
    (reply,) = request(dongle, read(READ_HOLD, 12, 3))
    assert holding.decode_clock(*reply.values) == moment + datetime.timedelta(minutes=1)
    assert dongle.plant.now == NOON + datetime.timedelta(minutes=1)  # the sun did not jump


def test_clock_offset_starts_the_inverter_clock_drifted():
    dongle, _ = make_dongle(clock_offset=-300)
    (reply,) = request(dongle, read(READ_HOLD, 12, 3))
    assert holding.decode_clock(*reply.values) == NOON - datetime.timedelta(minutes=5)
    assert dongle.plant.now == NOON


def test_an_ac_charge_slot_written_over_the_wire_gates_charging_on_the_running_clock():
    dongle, clock = make_dongle(speed=60, start=datetime.datetime(2024, 6, 21, 0, 30))

    def charging_from_grid() -> bool:
        (reply,) = request(dongle, read(READ_INPUT, 0, 40))
        named = decode_input_blocks(0, reply.values)[1]
        return named["status"] == 32 and named["p_rec"] > 0

    slot = [holding.encode_time(datetime.time(1, 0)), holding.encode_time(datetime.time(2, 0))]
    assert request(dongle, multi(68, slot)) == [lxp.WriteMultiReply(DATALOG, INVERTER, 68, 2)]
    ac_charge_on = holding.with_bit(dongle.plant.holding[21], holding.BITS[21]["ac_charge"], True)
    request(dongle, single(21, ac_charge_on))
    assert not charging_from_grid()
    clock.advance(29)  # 00:59 simulated
    assert not charging_from_grid()
    clock.advance(2)  # 01:01
    assert charging_from_grid()
    clock.advance(60)  # 02:01
    assert not charging_from_grid()


def test_state_keeps_the_settings_and_the_clock_across_a_restart(tmp_path):
    path = tmp_path / "state.json"
    dongle, clock = make_dongle(state_path=path, speed=60)
    slot = [holding.encode_time(datetime.time(23, 30)), holding.encode_time(datetime.time(5, 0))]
    request(dongle, multi(72, slot))
    request(dongle, single(holding.SYSTEM_ENABLE, 5 << 1 | 1 << 4))
    request(dongle, single(holding.DISCHARGE_CUTOFF_SOC, 25))
    set_to = datetime.datetime(2024, 6, 21, 11, 0)  # an hour slow
    request(dongle, multi(12, holding.encode_clock(set_to)))
    clock.advance(60)  # an hour of simulated time: the clock runs on

    restarted, _ = make_dongle(state_path=path, start=NOON + datetime.timedelta(hours=1))
    values = all_holding(restarted)
    assert values[72:74] == tuple(slot)
    assert values[holding.SYSTEM_ENABLE] == 5 << 1 | 1 << 4
    assert values[holding.DISCHARGE_CUTOFF_SOC] == 25
    # Still an hour slow, whatever the time the simulator restarts at.
    assert holding.decode_clock(*values[12:15]) == set_to + datetime.timedelta(hours=1)


@pytest.mark.parametrize("offset", ['"soon"', "NaN", "[1]"])
def test_a_state_file_with_a_bad_clock_is_refused(tmp_path, offset):
    path = tmp_path / "state.json"
    path.write_text(f'{{"holding": {{"65": 50}}, "clock_offset": {offset}}}')
    with pytest.raises(StateFileError, match="state.json"):
        make_dongle(state_path=path)
