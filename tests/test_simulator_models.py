"""The simulator's models, dongle kinds and battery modules, without sockets."""

from __future__ import annotations

import datetime

import pytest
from twisted.python import usage

from octolux import lxp
from octolux.lxp import batteries, models
from octolux.lxp.inputs import decode_input_blocks
from simulator import tap
from simulator.models import SIMULATED_MODELS, DongleKind
from simulator.plant import Plant
from simulator.responder import Responder

DATALOG, INVERTER = "SIMDL00001", "SIMINV0001"
NOON = datetime.datetime(2024, 6, 21, 12, 0)
READ_HOLD, READ_INPUT = lxp.DeviceFunction.READ_HOLD, lxp.DeviceFunction.READ_INPUT


def responder(model="lxp-3600-acs", dongle=DongleKind.BA, batteries_=0) -> Responder:
    plant = Plant(start=NOON, seed=1, model=SIMULATED_MODELS[model], batteries=batteries_)
    return Responder(DATALOG, INVERTER, plant, dongle=dongle)


def read(answering, function, register, count):
    (reply,) = answering.respond(lxp.ReadRequest(function, DATALOG, INVERTER, register,
                                                 count)).frames
    return reply


@pytest.mark.parametrize("slug", sorted(SIMULATED_MODELS))
def test_each_model_says_what_it_is_in_registers_7_to_19(slug):
    reply = read(responder(slug), READ_HOLD, 0, 40)
    assert models.identify(reply.registers).slug == slug


def test_the_default_is_the_captured_lxp_3600_acs():
    holding = dict(enumerate(Plant(seed=1).read_holding(0, 40)))
    assert models.firmware_code(holding) == "BAAA" and holding[19] == 4


@pytest.mark.parametrize(("slug", "answers"), [("lxp-3600-acs", False), ("eg4-18kpv", True),
                                               ("sna", True)])
def test_only_newer_models_answer_input_registers_past_159(slug, answers):
    reply = read(responder(slug), READ_INPUT, 160, 40)
    assert isinstance(reply, lxp.ReadReply) is answers


def test_a_split_phase_model_reports_its_legs_and_others_do_not():
    eg4 = decode_input_blocks(160, read(responder("eg4-18kpv"), READ_INPUT, 160, 40).values)
    assert eg4[5]["v_grid_l1"] == pytest.approx(120, abs=5)
    assert eg4[5]["p_load_meter"] > 0
    lb = read(responder("lxp-lb-eu"), READ_INPUT, 160, 40).values
    assert lb[193 - 160] == 0  # no legs on a European model


def test_a_ba_dongle_replies_with_address_1_and_a_bj_or_dg_with_address_0_protocol_5():
    assert read(responder(), READ_HOLD, 0, 40).address == 1
    for kind in (DongleKind.BJ, DongleKind.DG):
        answering = responder("lxp-lb-eu", kind)
        reply = read(answering, READ_HOLD, 0, 40)
        assert (reply.address, reply.protocol) == (0, 5)
        refused = read(answering, READ_HOLD, 240, 40)
        assert isinstance(refused, lxp.ExceptionReply) and refused.address == 0
        (echo,) = answering.respond(lxp.WriteSingleRequest(DATALOG, INVERTER, 65, 40)).frames
        assert (echo.address, echo.value) == (0, 40)


def test_bj_and_dg_dongles_push_holding_0_79_and_three_127_register_frames():
    answering = responder("sna", DongleKind.DG)
    (push,) = answering.connect_push()
    assert (push.function, push.register, len(push.values), push.address) == (READ_HOLD, 0, 80, 0)
    frames = answering.broadcast()
    assert [(f.register, len(f.values), f.protocol, f.address) for f in frames] == [
        (0, 127, 5, 0), (127, 127, 5, 0), (254, 127, 5, 0)]
    assert responder().connect_push() == []


def test_a_model_without_battery_modules_refuses_the_battery_registers():
    reply = read(responder(), READ_INPUT, batteries.FIRST_REGISTER, 30)
    assert isinstance(reply, lxp.ExceptionReply)
    assert reply.code == lxp.ExceptionCode.ILLEGAL_ADDRESS


@pytest.mark.parametrize("count", [1, 4])
def test_up_to_4_modules_sit_in_their_slots(count):
    answering = responder("eg4-18kpv", batteries_=count)
    reply = read(answering, READ_INPUT, batteries.FIRST_REGISTER, 120)
    modules = batteries.decode_modules(reply.register, reply.values)
    assert sorted(modules) == [f"SIMBAT{n:04d}" for n in range(1, count + 1)]
    assert all(module["soh"] == 98 and module["capacity"] > 0 for module in modules.values())
    registers = read(answering, READ_INPUT, 80, 40).values
    assert registers[96 - 80] == count  # bat_count


def test_more_than_4_modules_rotate_through_the_4_slots():
    answering = responder("eg4-18kpv", batteries_=6)
    seen = set()
    for _ in range(3):
        reply = read(answering, READ_INPUT, batteries.FIRST_REGISTER, 120)
        modules = batteries.decode_modules(reply.register, reply.values)
        assert len(modules) == 4
        seen |= set(modules)
    assert seen == {f"SIMBAT{n:04d}" for n in range(1, 7)}
    past = read(answering, READ_INPUT, batteries.LAST_REGISTER, 2)
    assert isinstance(past, lxp.ExceptionReply)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--dongle", "xx"], "--dongle must be 'ba', 'bj' or 'dg'"),
    (["--model", "nope"], "--model must be one of lxp-3600-acs"),
    (["--batteries", "-1"], "at least 0"),
])
def test_the_simulator_refuses_an_unknown_dongle_model_or_battery_count(arguments, message):
    with pytest.raises(usage.UsageError, match=message):
        tap.Options().parseOptions(arguments)


def test_the_simulator_options_reach_the_dongle():
    options = tap.Options()
    options.parseOptions(["--dongle", "bj", "--model", "eg4-6000xp", "--batteries", "6"])
    (config,) = options.configs
    assert (config.dongle, config.model.slug, config.batteries) == (DongleKind.BJ,
                                                                    "eg4-6000xp", 6)


@pytest.mark.parametrize("slug", sorted(SIMULATED_MODELS))
def test_register_21_takes_and_echoes_16_unsigned_bits_on_every_model(slug):
    answering = responder(slug)
    (echo,) = answering.respond(lxp.WriteSingleRequest(DATALOG, INVERTER, 21, 0xF355)).frames
    assert echo.value == 0xF355 and answering.plant.holding[21] == 0xF355
