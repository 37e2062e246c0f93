"""End to end, in one process: the simulator, the whole bridge (build_service) and a real mosquitto.

Real TCP to the simulated datalogger, the real Inverter, the real paho thread
and broker; the test watches the broker with its own paho client. The
process-level variant (both sides as `twistd -n`) is tests/test_e2e_process.py.
"""

from __future__ import annotations

import itertools
import json

import pytest
import pytest_twisted
from e2e_support import MqttProbe, get
from support import free_port
from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from octolux import lxp
from octolux.config.ini import Config, InverterConfig, MqttConfig, ServerConfig
from octolux.service.tap import build_service
from simulator.dongle import start_simulator

# Seconds: more than the bridge's first reconnection delay (1.5 s plus up to
# 1 s of jitter) plus the 2 s a queued request must have left to be sent
# (requests.SEND_MARGIN), short enough for the failure cases to finish quickly.
COMMAND_TIMEOUT = 5.0
_prefixes = itertools.count()

# Every key MQ.md shows, by topic: the contract for inputs/1..3.
MQ_MD_KEYS = {
    1: ["status", "v_bat", "soc", "p_pv", "p_charge", "p_discharge", "v_acr", "f_ac", "p_inv",
        "p_rec", "v_eps", "f_eps", "p_to_grid", "p_to_user", "e_pv_day", "e_inv_day",
        "e_rec_day", "e_chg_day", "e_dischg_day", "e_eps_day", "e_to_grid_day",
        "e_to_user_day", "v_bus_1", "v_bus_2"],
    2: ["e_pv_all", "e_inv_all", "e_rec_all", "e_chg_all", "e_dischg_all", "e_eps_all",
        "e_to_grid_all", "e_to_user_all", "t_inner", "t_rad_1", "t_rad_2"],
    3: ["max_chg_curr", "max_dischg_curr", "charge_volt_ref", "dischg_cut_volt",
        "bat_status_0", "bat_status_1", "bat_status_2", "bat_status_3", "bat_status_4",
        "bat_status_5", "bat_status_6", "bat_status_7", "bat_status_8", "bat_status_9",
        "bat_status_inv"],
}


class Rig:
    """A simulator, the bridge in this process and a probe on the broker."""

    def __init__(self, mosquitto, dongle, prefix, **inverter_options):
        self.mosquitto = mosquitto
        self.dongle = dongle
        self.prefix = prefix
        self.port = dongle.port
        self.config = Config(
            inverters=(InverterConfig(
                name="inverter",
                host="127.0.0.1",
                port=dongle.port,
                serial=dongle.config.inverter,
                datalog=dongle.config.datalog,
                command_timeout=COMMAND_TIMEOUT,
                **inverter_options,  # read_only, sync_time, ... (tests/test_e2e_settings.py)
            ),),
            server=ServerConfig(port=0),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=prefix),
        )
        self.service = build_service(self.config, reactor)
        self.inverter = [s for s in self.service if s.name == "inverter"][0]
        self.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#"])

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"

    async def until(self, condition, what: str, timeout: float = 10.0):
        return await self.probe.until(reactor, condition, timeout, what)

    async def next_on(self, rest: str, *, after: int = 0, timeout: float = 10.0):
        return await self.probe.next_on(reactor, self.topic(rest), after=after, timeout=timeout)

    async def command(self, name: str, payload: bytes, timeout: float = 10.0) -> str:
        """Send ``cmd/<name>`` and return its one result."""
        before = len(self.probe.on(self.topic(f"result/{name}")))
        self.probe.publish(self.topic(f"cmd/{name}"), payload)
        result = await self.next_on(f"result/{name}", after=before, timeout=timeout)
        return result.text

    async def hold(self, register: int, predicate, what: str) -> int:
        """Wait for a ``hold/<register>`` whose value satisfies ``predicate``; return the value.

        A bit command publishes the register twice: the value read, then the ack.
        """
        seen = await self.until(
            lambda: [int(m.text) for m in self.probe.on(self.topic(f"hold/{register}"))
                     if predicate(int(m.text))],
            what,
        )
        return seen[-1]

    def writes(self) -> list:
        return [r for r in self.dongle.requests if isinstance(r, lxp.WriteSingleRequest)]


@pytest_twisted.async_yield_fixture()
async def rig(mosquitto):
    # A port below the ephemeral range: one test restarts the simulator on the
    # same port, and an ephemeral one may meanwhile go to an outgoing connection.
    dongle = await start_simulator(
        reactor, port=free_port(), interval=2.0, burst_gap=0.05, first_burst_delay=0.1, seed=1
    ).addTimeout(5, reactor)
    rig = Rig(mosquitto, dongle, f"e2e-{next(_prefixes)}")
    await rig.probe.ready(reactor)
    rig.service.startService()
    try:
        await rig.until(lambda: rig.probe.on(rig.topic("status")), "status online")
        await rig.until(lambda: rig.inverter.connected, "the bridge connected to the simulator")
        yield rig
    finally:
        await rig.service.stopService().addTimeout(10, reactor)
        await rig.dongle.stop().addTimeout(5, reactor)
        await rig.probe.close(reactor)


@pytest_twisted.ensureDeferred
async def test_inputs_1_2_3_arrive_with_every_mq_md_key(rig):
    for block, keys in MQ_MD_KEYS.items():
        message = await rig.next_on(f"inputs/{block}")
        values = json.loads(message.payload)
        assert [key for key in keys if key not in values] == []
        # Compact, as MQ.md shows (text values such as status_text have spaces of their own).
        assert message.payload.decode() == json.dumps(values, separators=(",", ":"))
    assert rig.probe.on(rig.topic("status"))[0].text == "online"


@pytest_twisted.ensureDeferred
async def test_discharge_pct_50_gives_ok_and_hold_65(rig):
    assert await rig.command("discharge_pct", b"50") == "OK"
    hold = await rig.until(
        lambda: [m for m in rig.probe.on(rig.topic("hold/65")) if m.text == "50"], "hold/65 50"
    )
    assert hold[0].text == "50"
    assert rig.dongle.plant.holding[65] == 50
    assert [(w.register, w.value) for w in rig.writes()] == [(65, 50)]


@pytest_twisted.ensureDeferred
async def test_ac_charge_sets_and_clears_bit_7_of_register_21(rig):
    original = rig.dongle.plant.holding[21]
    assert not original & 0x80
    assert await rig.command("ac_charge", b"on") == "OK"
    # Only bit 7 changed.
    assert await rig.hold(21, lambda v: v & 0x80, "hold/21 with bit 7 set") == original | 0x80
    assert rig.dongle.plant.holding[21] == original | 0x80
    rig.probe.clear()
    assert await rig.command("ac_charge", b"off") == "OK"
    assert await rig.hold(21, lambda v: not v & 0x80, "hold/21 with bit 7 clear") == original
    assert rig.dongle.plant.holding[21] == original


@pytest_twisted.ensureDeferred
async def test_bad_payloads_fail_and_never_reach_the_simulator(rig):
    for name, payload in [
        ("discharge_pct", b"150"),
        ("discharge_pct", b"fifty"),
        ("charge_pct", b" "),
        ("charge_amount_pct", b"-5"),
        ("ac_charge", b"\t"),
        ("forced_discharge", b"\xff\xfe\x00\x01"),
        ("read_hold", b"nope"),
        ("read_input", b"7"),
    ]:
        assert await rig.command(name, payload) == "FAIL", (name, payload)
    # Proof that commands still work, and that nothing before this one was written.
    assert await rig.command("charge_pct", b"40") == "OK"
    assert [(w.register, w.value) for w in rig.writes()] == [(64, 40)]
    assert len(rig.probe.on(rig.topic("result/discharge_pct"))) == 2  # exactly once each


@pytest_twisted.ensureDeferred
async def test_deleting_a_retained_command_is_no_command(rig):
    # The way the bridge's warning about a retained command suggests: an empty
    # retained message. The broker forwards it, without the retain flag.
    results = len(rig.probe.on(rig.topic("result/charge_pct")))
    rig.probe.publish(rig.topic("cmd/charge_pct"), b"", retain=True)
    assert await rig.command("charge_pct", b"45") == "OK"
    # Had the deletion been taken for a command, its FAIL would have come first.
    assert [m.text for m in rig.probe.on(rig.topic("result/charge_pct"))[results:]] == ["OK"]


@pytest_twisted.ensureDeferred
async def test_the_other_commands(rig):
    assert await rig.command("charge_priority", b"on") == "OK"
    await rig.hold(21, lambda v: v & 1 << 11, "hold/21 with bit 11 set")
    assert await rig.command("forced_discharge", b"true") == "OK"
    await rig.hold(21, lambda v: v & 1 << 10 and v & 1 << 11, "hold/21 with bits 10 and 11 set")
    assert await rig.command("charge_amount_pct", b"90") == "OK"
    await rig.hold(67, lambda v: v == 90, "hold/67 90")
    before = len(rig.probe.on(rig.topic("hold/64")))
    assert await rig.command("read_hold", b"64") == "OK"
    read = await rig.next_on("hold/64", after=before)
    assert read.text == str(rig.dongle.plant.holding[64])
    before = len(rig.probe.on(rig.topic("inputs/2")))
    assert await rig.command("read_input", b"2") == "OK"
    await rig.next_on("inputs/2", after=before)


@pytest_twisted.ensureDeferred
async def test_a_write_made_by_another_client_is_published(rig):
    # The vendor's app or cloud writes through the same dongle: the dongle sends
    # the ack to every client, and the bridge publishes it.
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", rig.port)
    other = await endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
    try:
        other.transport.write(lxp.build(lxp.WriteSingleRequest(
            rig.dongle.config.datalog, rig.dongle.config.inverter, 66, 33
        )))
        await rig.hold(66, lambda v: v == 33, "hold/66 33")
    finally:
        other.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_the_bridge_reconnects_after_the_simulator_drops_it(rig):
    await rig.dongle.drop_clients().addTimeout(5, reactor)
    await rig.until(lambda: not rig.inverter.connected, "the drop noticed")
    await rig.until(lambda: rig.inverter.connected, "reconnected", timeout=15)
    assert await rig.command("discharge_pct", b"20") == "OK"
    assert rig.dongle.plant.holding[65] == 20


@pytest_twisted.ensureDeferred
async def test_a_command_waits_for_the_reconnection(rig):
    await rig.dongle.drop_clients().addTimeout(5, reactor)
    await rig.until(lambda: not rig.inverter.connected, "the drop noticed")
    # Sent while disconnected; the reconnection comes within the command timeout.
    assert await rig.command("discharge_pct", b"30") == "OK"
    assert [(w.register, w.value) for w in rig.writes()] == [(65, 30)]
    assert len(rig.probe.on(rig.topic("result/discharge_pct"))) == 1


@pytest_twisted.ensureDeferred
async def test_a_command_that_failed_while_disconnected_is_never_executed(rig, mosquitto):
    port = rig.port
    await rig.dongle.stop().addTimeout(5, reactor)
    await rig.until(lambda: not rig.inverter.connected, "the loss noticed")
    assert await rig.command("discharge_pct", b"10") == "FAIL"
    # The datalogger comes back on the same port; the bridge reconnects.
    rig.dongle = await start_simulator(
        reactor, port=port, interval=2.0, burst_gap=0.05, first_burst_delay=0.1, seed=1
    ).addTimeout(5, reactor)
    await rig.until(lambda: rig.inverter.connected, "reconnected", timeout=15)
    assert await rig.command("charge_pct", b"11") == "OK"
    assert [(w.register, w.value) for w in rig.writes()] == [(64, 11)]
    assert len(rig.probe.on(rig.topic("result/discharge_pct"))) == 1


@pytest_twisted.ensureDeferred
async def test_commands_work_again_after_the_broker_restarts(rig, mosquitto):
    await mosquitto.restarted(reactor)
    await rig.probe.ready(reactor)
    rig.probe.clear()
    await rig.until(lambda: rig.probe.on(rig.topic("status")), "status again")
    # The bridge may still be waiting for its reconnect: it subscribes on connect.
    mqtt = rig.service.mqtt
    await rig.until(lambda: mqtt.connected, "the bridge reconnected to the broker", timeout=15)
    assert await rig.command("discharge_pct", b"60") == "OK"
    assert rig.dongle.plant.holding[65] == 60


@pytest_twisted.ensureDeferred
async def test_the_http_api_serves_inputs_and_registers(rig):
    await rig.next_on("inputs/3")
    assert await rig.command("discharge_pct", b"45") == "OK"
    api = [s for s in rig.service if hasattr(s, "site")][0]
    base = f"http://127.0.0.1:{api.port}/api"
    response, body = await get(reactor, f"{base}/inputs")
    assert response.code == 200
    assert {key for keys in MQ_MD_KEYS.values() for key in keys} <= set(json.loads(body))
    response, body = await get(reactor, f"{base}/registers")
    assert json.loads(body)["65"] == 45


@pytest.mark.parametrize("broadcast", ["all127"])
@pytest_twisted.ensureDeferred
async def test_a_127_register_frame_publishes_all_three_blocks(mosquitto, broadcast):
    dongle = await start_simulator(
        reactor, format=broadcast, interval=2.0, first_burst_delay=0.1, seed=2
    ).addTimeout(5, reactor)
    rig = Rig(mosquitto, dongle, f"e2e-{next(_prefixes)}")
    await rig.probe.ready(reactor)
    rig.service.startService()
    try:
        for block, keys in MQ_MD_KEYS.items():
            values = json.loads((await rig.next_on(f"inputs/{block}")).payload)
            assert [key for key in keys if key not in values] == []
    finally:
        await rig.service.stopService().addTimeout(10, reactor)
        await dongle.stop().addTimeout(5, reactor)
        await rig.probe.close(reactor)


@pytest_twisted.ensureDeferred
async def test_two_inverters_have_topics_under_their_names(mosquitto):
    main = await start_simulator(reactor, interval=2.0, first_burst_delay=0.1, seed=3,
                                 datalog="SIMDL00011", inverter="SIMINV0011")
    garage = await start_simulator(reactor, interval=2.0, first_burst_delay=0.1, seed=4,
                                   datalog="SIMDL00012", inverter="SIMINV0012")
    prefix = f"e2e-{next(_prefixes)}"
    config = Config(
        inverters=tuple(
            InverterConfig(name=name, host="127.0.0.1", port=dongle.port,
                           serial=dongle.config.inverter, datalog=dongle.config.datalog,
                           command_timeout=COMMAND_TIMEOUT)
            for name, dongle in (("main", main), ("garage", garage))
        ),
        server=ServerConfig(port=0),
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=prefix),
    )
    top = build_service(config, reactor)
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#"])
    try:
        await probe.ready(reactor)
        top.startService()
        for name in ("main", "garage"):
            await probe.next_on(reactor, f"{prefix}/{name}/inputs/1")
        assert (await probe.next_on(reactor, f"{prefix}/status")).text == "online"
        probe.publish(f"{prefix}/garage/cmd/discharge_pct", b"25")
        result = await probe.next_on(reactor, f"{prefix}/garage/result/discharge_pct")
        assert result.text == "OK"
        await probe.until(
            reactor, lambda: [m for m in probe.on(f"{prefix}/garage/hold/65") if m.text == "25"],
            what="garage/hold/65 25",
        )
        assert garage.plant.holding[65] == 25
        assert [r for r in main.requests if isinstance(r, lxp.WriteSingleRequest)] == []
        assert not [m for m in probe.messages if m.topic.startswith(f"{prefix}/inputs/")]
    finally:
        await top.stopService().addTimeout(10, reactor)
        await main.stop().addTimeout(5, reactor)
        await garage.stop().addTimeout(5, reactor)
        await probe.close(reactor)
