"""The simulator's answers without sockets or a clock: a request frame in, frames out."""

from __future__ import annotations

import datetime

import pytest

from octolux import lxp
from octolux.lxp.inputs import decode_input_blocks
from simulator.plant import Plant
from simulator.registers import Change
from simulator.responder import (
    ANY_INVERTER,
    FOREIGN_KINDS,
    Answer,
    BroadcastFormat,
    Responder,
)

DATALOG, INVERTER = "SIMDL00001", "SIMINV0001"
NOON = datetime.datetime(2024, 6, 21, 12, 0)
READ_HOLD, READ_INPUT = lxp.DeviceFunction.READ_HOLD, lxp.DeviceFunction.READ_INPUT


def responder(**settings) -> Responder:
    return Responder(DATALOG, INVERTER, Plant(start=NOON, seed=1), **settings)


def test_a_read_of_input_registers_is_answered_from_the_plant():
    answering = responder()
    answer = answering.respond(lxp.ReadRequest(READ_INPUT, DATALOG, INVERTER, 0, 40))
    (reply,) = answer.frames
    assert reply == lxp.ReadReply(READ_INPUT, DATALOG, INVERTER, 0,
                                  answering.plant.input_registers()[:40])
    assert decode_input_blocks(0, reply.values)[1]["soc"] == round(answering.plant.soc)
    assert answer.notes == () and answer.changes == ()


@pytest.mark.parametrize(("format_", "protocol"), [(BroadcastFormat.BURSTS, 2),
                                                   (BroadcastFormat.ALL127, 5)])
def test_a_127_register_read_gets_the_protocol_of_the_firmware(format_, protocol):
    answer = responder(format=format_).respond(
        lxp.ReadRequest(READ_INPUT, DATALOG, INVERTER, 0, 127))
    (reply,) = answer.frames
    assert len(reply.values) == 127 and reply.protocol == protocol


@pytest.mark.parametrize(
    ("function", "register", "count", "code"),
    [(READ_INPUT, 30, 20, lxp.ExceptionCode.ILLEGAL_ADDRESS),  # crosses a block
     (READ_INPUT, 0, 41, lxp.ExceptionCode.ILLEGAL_VALUE),
     (READ_HOLD, 230, 20, lxp.ExceptionCode.ILLEGAL_ADDRESS)],
)
def test_an_impossible_read_is_refused_with_its_reason(function, register, count, code):
    answer = responder().respond(lxp.ReadRequest(function, DATALOG, INVERTER, register, count))
    assert answer.frames == (lxp.ExceptionReply(function, DATALOG, INVERTER, register, code),)
    assert answer.notes[0].startswith("refusing the read: register ")


def test_a_write_changes_the_plant_and_says_so():
    answering = responder()
    answer = answering.respond(lxp.WriteSingleRequest(DATALOG, INVERTER, 65, 42))
    assert answer.frames == (lxp.WriteSingleReply(DATALOG, INVERTER, 65, 42),)
    assert answer.changed == (Change(65, 100, 42),)
    assert answer.notes == ("holding register 65 (discharge_power_percent) changed 100 -> 42",)
    assert answering.plant.holding[65] == 42
    again = answering.respond(lxp.WriteSingleRequest(DATALOG, INVERTER, 65, 42))
    assert again.changed == () and again.notes == ("write left the registers unchanged",)


def test_a_refused_multi_write_changes_nothing():
    answering = responder()
    answer = answering.respond(lxp.WriteMultiRequest(DATALOG, INVERTER, 64, (50, 50, 101)))
    assert answer.frames == (lxp.ExceptionReply(lxp.DeviceFunction.WRITE_MULTI, DATALOG,
                                                INVERTER, 64, lxp.ExceptionCode.ILLEGAL_VALUE),)
    assert answer.changes == ()
    assert answering.plant.holding.read(64, 3) == (100, 100, 100)


def test_parameter_0_is_the_broadcast_interval():
    answering = responder(interval=120.0)
    (reply,) = answering.respond(lxp.ReadParamRequest(DATALOG, 0)).frames
    assert reply.number == 120
    answer = answering.respond(lxp.WriteParamRequest(DATALOG, 0, (30).to_bytes(2, "little")))
    assert answer.frames == (lxp.WriteParamReply(DATALOG, 0, 0),) and answer.interval == 30.0
    assert answering.interval == 30.0
    refused = answering.respond(lxp.WriteParamRequest(DATALOG, 0, b"\x00\x00"))
    assert refused.frames == (lxp.WriteParamReply(DATALOG, 0, 1),) and refused.interval is None
    assert answering.interval == 30.0


def test_other_parameters_are_answered_empty():
    answer = responder().respond(lxp.ReadParamRequest(DATALOG, 7))
    assert answer.frames == (lxp.ReadParamReply(DATALOG, 7, b""),)
    assert answer.notes == ("parameter 7 is not simulated",)


@pytest.mark.parametrize(
    ("datalog", "inverter", "ours"),
    [(DATALOG, INVERTER, True), (DATALOG, ANY_INVERTER, True), ("OTHERDL001", INVERTER, False),
     (DATALOG, "OTHERINV01", False)],
)
def test_requests_are_answered_for_this_dongle_and_inverter_only(datalog, inverter, ours):
    request = lxp.ReadRequest(READ_HOLD, datalog, inverter, 0, 40)
    assert responder().addressed_to_us(request) is ours


def test_a_reply_is_not_a_request():
    with pytest.raises(TypeError, match="not a request"):
        responder().respond(lxp.WriteSingleReply(DATALOG, INVERTER, 65, 1))


def test_broadcasts_come_as_bursts_or_one_frame():
    bursts = responder().broadcast()
    assert [(f.register, len(f.values), f.protocol) for f in bursts] == [
        (0, 40, 2), (40, 40, 2), (80, 40, 2)]
    (whole,) = responder(format=BroadcastFormat.ALL127).broadcast()
    assert (whole.register, len(whole.values), whole.protocol) == (0, 127, 5)
    assert whole.values[:120] == tuple(v for frame in bursts for v in frame.values)


def test_foreign_traffic_cycles_through_its_kinds():
    answering = responder()
    frames = [answering.foreign_frame(index) for index in range(2 * len(FOREIGN_KINDS))]
    assert frames[: len(FOREIGN_KINDS)] == frames[len(FOREIGN_KINDS):]
    assert {type(frame).__name__ for frame in frames} == {
        "ReadReply", "WriteSingleReply", "WriteParamReply", "WriteParamRequest", "ExceptionReply"}
    for frame in frames:
        lxp.build(frame)  # every one can be sent


def test_an_answer_lists_only_real_changes_as_changed():
    answer = Answer(changes=(Change(1, 2, 2), Change(3, 4, 5)))
    assert answer.changed == (Change(3, 4, 5),)
