"""End to end, issue 9: retained state from the start, every new command, read_only, sync_time.

The simulator, the whole bridge (build_service) in this process and a real
mosquitto, as in tests/test_e2e.py (whose Rig this shares). What reaches the
simulator is checked on its request log (``dongle.requests``).
"""

from __future__ import annotations

import datetime
import itertools
import json

import pytest_twisted
from e2e_support import MqttProbe
from test_e2e import Rig
from twisted.internet import reactor

from octolux import lxp
from octolux.lxp import holding
from simulator.dongle import start_simulator

_prefixes = itertools.count()
WRITES = (lxp.WriteSingleRequest, lxp.WriteMultiRequest, lxp.WriteParamRequest)


async def started_rig(mosquitto, *, clock_offset: float = 0.0, **inverter_options) -> Rig:
    dongle = await start_simulator(
        reactor, interval=30.0, first_burst_delay=0.1, burst_gap=0.05, seed=9,
        clock_offset=clock_offset,
    ).addTimeout(5, reactor)
    rig = Rig(mosquitto, dongle, f"e2e-settings-{next(_prefixes)}", **inverter_options)
    await rig.probe.ready(reactor)
    rig.service.startService()
    await rig.until(lambda: rig.inverter.connected, "the bridge connected to the simulator")
    return rig


async def stopped(rig: Rig) -> None:
    await rig.service.stopService().addTimeout(10, reactor)
    await rig.dongle.stop().addTimeout(5, reactor)
    await rig.probe.close(reactor)


def settings(rig: Rig) -> dict:
    """The latest settings JSON the probe saw ({} before any)."""
    seen = rig.probe.on(rig.topic("settings"))
    return json.loads(seen[-1].payload) if seen else {}


async def all_settings(rig: Rig) -> dict:
    """Wait until the read on connecting has reached register 161 (the last block)."""
    return await rig.until(lambda: "ac_charge_end_soc" in settings(rig) and settings(rig),
                           "settings with every register read")


def writes(rig: Rig) -> list:
    return [r for r in rig.dongle.requests if isinstance(r, WRITES)]


@pytest_twisted.async_yield_fixture()
async def rig(mosquitto):
    rig = await started_rig(mosquitto)
    try:
        yield rig
    finally:
        await stopped(rig)


@pytest_twisted.ensureDeferred
async def test_a_late_subscriber_gets_every_holding_register_and_the_settings(rig, mosquitto):
    await all_settings(rig)
    assert writes(rig) == []  # reading the state wrote nothing
    late = MqttProbe(mosquitto.host, mosquitto.port, [rig.topic("#")])
    try:
        await late.ready(reactor)
        holds = await late.until(
            reactor,
            lambda: len({m.topic for m in late.messages if "/hold/" in m.topic}) == 240
            and late.on(rig.topic("settings")),
            what="retained hold/0-239 and settings",
        )
        assert holds
        messages = late.messages
        assert all(m.retain for m in messages if "/hold/" in m.topic or m.topic.endswith("ings"))
        plant = rig.dongle.plant.holding
        hold = {int(m.topic.rsplit("/", 1)[1]): int(m.text) for m in messages
                if "/hold/" in m.topic}
        assert hold[65] == plant[65] and hold[21] == plant[21] and hold[239] == plant[239]
        (latest,) = late.on(rig.topic("settings"))
        values = json.loads(latest.payload)
        assert values["discharge_pct"] == plant[65]
        assert values["feed_in_grid"] is bool(plant[21] & 1 << 15)
        assert values["ac_charge_slot_1"] == "00:00-00:00"
        assert datetime.datetime.fromisoformat(values["clock"]).year >= 2017
    finally:
        await late.close(reactor)


@pytest_twisted.ensureDeferred
async def test_a_broker_restarted_without_persistence_gets_the_state_again(rig, mosquitto):
    await all_settings(rig)
    before = len(rig.probe.messages)
    await mosquitto.restarted(reactor)  # the test broker runs with persistence false
    mqtt = rig.service.mqtt
    await rig.until(lambda: mqtt.connected, "the bridge reconnected to the broker", timeout=15)
    await rig.probe.ready(reactor)

    def state_after_restart(probe, since=0):
        seen = probe.messages[since:]
        return (len({m.topic for m in seen if "/hold/" in m.topic}) == 240
                and any(m.topic == rig.topic("settings") for m in seen)
                and any(m.topic == rig.topic("connection") for m in seen))

    # The bridge publishes the state again at its own pace: wait until all of
    # it has reached the broker (the rig's probe sees it, live or retained)...
    await rig.until(lambda: state_after_restart(rig.probe, before),
                    "hold/0-239, settings and connection published again")
    # ...then a client subscribing now gets all of it from the broker, retained.
    late = MqttProbe(mosquitto.host, mosquitto.port, [rig.topic("#")])
    try:
        await late.ready(reactor)
        await late.until(reactor, lambda: state_after_restart(late),
                         what="retained hold/0-239, settings and connection")
        assert all(m.retain for m in late.messages if "/inputs/" not in m.topic)
        (latest,) = late.on(rig.topic("settings"))
        assert json.loads(latest.payload)["discharge_pct"] == rig.dongle.plant.holding[65]
        assert late.on(rig.topic("connection"))[-1].text == "online"
    finally:
        await late.close(reactor)


# (command, payload, {register: value the simulator must then hold}, settings key, value)
ROUND_TRIPS = [
    ("ac_charge_pct", b"40", {66: 40}, "ac_charge_pct", 40),
    ("charge_priority_pct", b"41", {74: 41}, "charge_priority_pct", 41),
    ("charge_priority_soc", b"42", {75: 42}, "charge_priority_soc", 42),
    ("forced_discharge_pct", b"43", {82: 43}, "forced_discharge_pct", 43),
    ("forced_discharge_soc", b"44", {83: 44}, "forced_discharge_soc", 44),
    ("discharge_cutoff_soc", b"15", {105: 15}, "discharge_cutoff_soc", 15),
    ("eps_cutoff_soc", b"20", {125: 20}, "eps_cutoff_soc", 20),
    ("ac_charge_start_soc", b"30", {160: 30}, "ac_charge_start_soc", 30),
    ("ac_charge_end_soc", b"95", {161: 95}, "ac_charge_end_soc", 95),
    ("ct_power_offset", b"-200", {119: 0x10000 - 200}, "ct_power_offset", -200),
    ("ac_charge_slot_1", b"23:30-05:00", {68: 0x1E17, 69: 0x0005}, "ac_charge_slot_1",
     "23:30-05:00"),
    ("charge_priority_slot_3", b"12:05-13:00", {80: 0x050C, 81: 0x000D},
     "charge_priority_slot_3", "12:05-13:00"),
    ("forced_discharge_slot_2", b"16:00-19:30", {86: 16, 87: 0x1E13},
     "forced_discharge_slot_2", "16:00-19:30"),
    ("set_hold/67", b"85", {67: 85}, "charge_amount_pct", 85),
    ("eps", b"on", {}, "eps", True),
    ("feed_in_grid", b"off", {}, "feed_in_grid", False),
    ("micro_grid", b"on", {110: 4}, "micro_grid", True),
]


@pytest_twisted.ensureDeferred
async def test_each_new_command_round_trips(rig):
    await all_settings(rig)
    for name, payload, registers, key, value in ROUND_TRIPS:
        assert await rig.command(name, payload) == "OK", name
        plant = rig.dongle.plant.holding
        assert {r: plant[r] for r in registers} == registers, name
        await rig.until(lambda key=key, value=value: settings(rig).get(key) == value,
                        f"settings.{key} == {value!r}")
    assert rig.dongle.plant.holding[21] & 1 and not rig.dongle.plant.holding[21] & 1 << 15
    # The slots' registers arrived on hold/ too, retained.
    await rig.hold(68, lambda v: v == 0x1E17, "hold/68 23:30")


@pytest_twisted.ensureDeferred
async def test_the_clock_and_sync_time_set_the_simulators_clock(rig):
    await all_settings(rig)
    assert await rig.command("clock", b"2030-01-02T03:04:05") == "OK"
    clock = rig.dongle.plant.clock
    assert datetime.datetime(2030, 1, 2, 3, 4, 5) <= clock < datetime.datetime(2030, 1, 2, 3, 5)
    await rig.until(lambda: settings(rig)["clock"] == "2030-01-02T03:04:05", "settings.clock")
    before = datetime.datetime.now()
    assert await rig.command("sync_time", b"now") == "OK"
    after = datetime.datetime.now()
    clock = rig.dongle.plant.clock.replace(microsecond=0)
    assert before.replace(microsecond=0) <= clock <= after
    multi = [w for w in writes(rig) if isinstance(w, lxp.WriteMultiRequest)]
    assert [(w.register, len(w.values)) for w in multi] == [(12, 3), (12, 3)]


@pytest_twisted.ensureDeferred
async def test_a_bit_already_as_asked_is_not_written(rig):
    await all_settings(rig)
    assert rig.dongle.plant.holding[21] & 1 << 15  # feed-in on, as the simulator starts
    assert await rig.command("feed_in_grid", b"on") == "OK"
    assert await rig.command("ac_charge", b"off") == "OK"
    assert writes(rig) == []


@pytest_twisted.ensureDeferred
async def test_bad_payloads_fail_and_nothing_is_written(rig):
    await all_settings(rig)
    for name, payload in [
        ("ac_charge_slot_1", b"25:00-01:00"),
        ("ac_charge_slot_1", b"9-5"),
        ("ac_charge_slot_2", b" "),  # (a zero-length message is no command at all)
        ("forced_discharge_slot_1", b"10:00-10:60"),
        ("discharge_cutoff_soc", b"5"),
        ("eps_cutoff_soc", b"101"),
        ("ct_power_offset", b"5000"),
        ("clock", b"yesterday"),
        ("sync_time", b"soon"),
        ("set_hold/0", b"1"),  # not a register known to be writable
        ("set_hold/65", b"101"),
        ("set_hold/12", b"1"),  # the clock: written whole only
        ("set_hold/x", b"1"),
        ("refresh", b" "),
        ("no_such_command", b"1"),
    ]:
        assert await rig.command(name, payload) == "FAIL", (name, payload)
    assert writes(rig) == []
    # One proof the commands still work.
    assert await rig.command("ac_charge_slot_2", b"01:00-02:00") == "OK"
    assert [(w.register, w.value) for w in writes(rig)] == [(70, 1), (71, 2)]


@pytest_twisted.ensureDeferred
async def test_refresh_reads_every_register_and_input_block_again(rig):
    await all_settings(rig)
    before = {n: len(rig.probe.on(rig.topic(f"hold/{n}"))) for n in (0, 120, 239)}
    inputs_before = {b: len(rig.probe.on(rig.topic(f"inputs/{b}"))) for b in (1, 2, 3)}
    rig.dongle.plant.holding.write(65, 33)  # changed behind the bridge's back (no ack sent)
    assert await rig.command("refresh", b"1") == "OK"
    for register, count in before.items():
        await rig.next_on(f"hold/{register}", after=count)
    for block, count in inputs_before.items():
        await rig.next_on(f"inputs/{block}", after=count)
    await rig.until(lambda: settings(rig)["discharge_pct"] == 33, "settings.discharge_pct 33")


@pytest_twisted.ensureDeferred
async def test_read_only_refuses_every_writing_command_and_sends_no_write(mosquitto):
    rig = await started_rig(mosquitto, read_only=True)
    try:
        await all_settings(rig)
        for name, payload in [
            ("ac_charge", b"on"), ("feed_in_grid", b"off"), ("discharge_pct", b"50"),
            ("ac_charge_pct", b"40"), ("ac_charge_slot_1", b"01:00-02:00"),
            ("clock", b"2030-01-02T03:04:05"), ("sync_time", b"now"), ("set_hold/66", b"33"),
        ]:
            assert await rig.command(name, payload) == "FAIL", name
        assert await rig.command("read_hold", b"21") == "OK"  # reading is fine
        assert writes(rig) == []
    finally:
        await stopped(rig)


@pytest_twisted.ensureDeferred
async def test_sync_time_in_the_config_corrects_a_drifted_clock_on_connecting(mosquitto):
    rig = await started_rig(mosquitto, clock_offset=-3600.0, sync_time=True,
                            set_hold_any_register=True)
    try:
        await rig.until(lambda: abs(rig.dongle.plant.clock_offset.total_seconds()) < 5,
                        "the simulator's clock set to the local time")
        (multi,) = [w for w in writes(rig) if isinstance(w, lxp.WriteMultiRequest)]
        assert multi.register == 12
        # set_hold_any_register: a register outside the table is written (the clock's
        # year and month, as they are).
        value = holding.encode_clock(rig.dongle.plant.clock)[0]
        assert await rig.command("set_hold/12", str(value).encode()) == "OK"
        assert writes(rig)[-1] == lxp.WriteSingleRequest(
            rig.dongle.config.datalog, rig.dongle.config.inverter, 12, value)
    finally:
        await stopped(rig)
