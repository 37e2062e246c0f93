"""The bridge against each dongle kind and several models, with real TCP and mosquitto.

Each test starts the simulator as one model behind one kind of dongle, the
bridge in this process, and a probe on the broker: what the model has reaches
MQTT (its own input blocks, per-battery data), what it lacks does not.
"""

from __future__ import annotations

import itertools
import json
import sqlite3

import pytest
import pytest_twisted
from e2e_support import MqttProbe
from twisted.internet import reactor

from octolux import lxp
from octolux.config.ini import (
    Config,
    HistoryConfig,
    HomeAssistantConfig,
    InverterConfig,
    MqttConfig,
    ServerConfig,
)
from octolux.lxp import batteries, inputs, models
from octolux.service.tap import build_service
from simulator.dongle import start_simulator

_prefixes = itertools.count()
WAIT = 15.0  # seconds for anything to reach the broker


class Rig:
    """A simulated dongle, the bridge and a probe on the broker."""

    def __init__(self, mosquitto, dongle, prefix: str, **sections):
        self.dongle = dongle
        self.prefix = prefix
        config = Config(**sections,
            inverters=(InverterConfig(
                name="inverter", host="127.0.0.1", port=dongle.port,
                serial=dongle.config.inverter, datalog=dongle.config.datalog,
                command_timeout=5.0,
            ),),
            server=ServerConfig(port=0),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=prefix),
        )
        self.service = build_service(config, reactor)
        self.inverter = [s for s in self.service if s.name == "inverter"][0]
        self.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#"])

    @property
    def ha(self) -> str:
        """The Home Assistant discovery prefix of this rig."""
        return f"ha-{self.prefix}"

    def on(self, rest: str) -> list:
        return self.probe.on(f"{self.prefix}/{rest}")

    async def until(self, condition, what: str):
        return await self.probe.until(reactor, condition, WAIT, what)

    async def json_on(self, rest: str) -> dict:
        (message, *_) = await self.until(lambda: self.on(rest), rest)
        return json.loads(message.payload)


async def started(mosquitto, *, history: str | None = None, **settings) -> Rig:
    """The simulator (``settings``), the bridge (with Home Assistant discovery, and the
    history in the SQLite file ``history`` if given) and the probe, started."""
    dongle = await start_simulator(reactor, interval=2.0, burst_gap=0.05, first_burst_delay=0.1,
                                   seed=3, **settings).addTimeout(5, reactor)
    prefix = f"models-{next(_prefixes)}"
    sections = {"homeassistant": HomeAssistantConfig(enabled=True, prefix=f"ha-{prefix}")}
    if history is not None:
        sections["history"] = HistoryConfig(path=history)
    rig = Rig(mosquitto, dongle, prefix, **sections)
    rig.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#", f"ha-{prefix}/#"])
    await rig.probe.ready(reactor)
    rig.service.startService()
    return rig


async def stopped(rig: Rig) -> None:
    await rig.service.stopService().addTimeout(10, reactor)
    await rig.dongle.stop().addTimeout(5, reactor)
    await rig.probe.close(reactor)


@pytest.mark.parametrize(("dongle", "model"), [
    ("ba", "lxp-3600-acs"), ("bj", "lxp-lb-eu"), ("dg", "eg4-18kpv"), ("ba", "sna"),
    ("dg", "eg4-6000xp"),
])
@pytest_twisted.ensureDeferred
async def test_each_dongle_and_model_reaches_mqtt_with_what_the_model_has(mosquitto, dongle,
                                                                          model):
    rig = await started(mosquitto, dongle=dongle, model=model)
    try:
        first = await rig.json_on("inputs/1")
        assert 0 <= first["soc"] <= 100
        hold19 = await rig.until(lambda: rig.on("hold/19"), "hold/19")
        assert int(hold19[0].text) == rig.dongle.config.model.device_type
        await rig.until(lambda: rig.inverter.model.model is not None, "the model identified")
        assert rig.inverter.model.model.slug == model
        if model == "lxp-3600-acs":
            # Only blocks 1-3: no input block past them is asked of it.
            await rig.json_on("inputs/3")
            assert not [r for r in rig.dongle.requests if isinstance(r, lxp.ReadRequest)
                        and r.function == lxp.DeviceFunction.READ_INPUT
                        and 120 <= r.register < batteries.FIRST_REGISTER]
            assert (await rig.json_on("inputs/3"))["parallel_count"] == 0  # not reported
            return
        simulated = rig.dongle.config.model.model
        wanted = models.input_blocks(simulated)
        assert wanted != (1, 2, 3)  # each model here has blocks of its own
        published = {block: await rig.json_on(f"inputs/{block}") for block in wanted}
        for values in published.values():  # a part the model lacks reads 0
            assert not [key for key, value in values.items()
                        if not simulated.has(inputs.FIELDS_BY_KEY[key].feature) and value]
        if simulated.has("load"):
            assert published[5]["p_load_meter"] > 0
        if simulated.has("split_phase"):
            assert published[5]["v_grid_l1"] == pytest.approx(published[5]["v_grid_l2"])
            assert "p_to_user_l1" in published[6]
        assert not [block for block in (4, 5, 6) if block not in wanted and rig.on(
            f"inputs/{block}")]
    finally:
        await stopped(rig)


@pytest.mark.parametrize("modules", [1, 4, 6])
@pytest_twisted.ensureDeferred
async def test_each_battery_module_reaches_mqtt_by_its_serial(mosquitto, modules):
    rig = await started(mosquitto, model="eg4-18kpv", dongle="dg", batteries=modules)
    try:
        serials = [f"SIMBAT{n:04d}" for n in range(1, modules + 1)]
        await rig.until(lambda: all(rig.on(f"battery/{serial}") for serial in serials),
                        f"battery/<serial> for {modules} modules")
        for serial in serials:
            module = json.loads(rig.on(f"battery/{serial}")[-1].payload)
            assert module["serial"] == serial and module["soh"] == 98
            assert set(module) <= {*batteries.FIELDS_BY_KEY, "firmware"} - {
                "firmware_major", "firmware_minor"}
        assert not rig.on(f"battery/SIMBAT{modules + 1:04d}")
        # Retained: a client subscribing later gets every module at once.
        late = MqttProbe(mosquitto.host, mosquitto.port, [f"{rig.prefix}/battery/#"])
        await late.ready(reactor)
        try:
            seen = await late.until(
                reactor, lambda: late.messages if len(late.messages) >= modules else None,
                WAIT, "the retained battery/<serial>")
            assert all(message.retain for message in seen[:modules])  # those came first
        finally:
            await late.close(reactor)
    finally:
        await stopped(rig)


@pytest_twisted.ensureDeferred
async def test_a_model_without_battery_registers_is_asked_once_a_connection(mosquitto):
    rig = await started(mosquitto, model="lxp-lb-eu", batteries=0)
    try:
        await rig.until(lambda: len(rig.on("inputs/3")) >= 3, "three bursts")
        battery_reads = [r for r in rig.dongle.requests if isinstance(r, lxp.ReadRequest)
                         and r.register >= batteries.FIRST_REGISTER]
        assert len(battery_reads) == 1  # refused (ILLEGAL_ADDRESS): not asked again
        assert not [m for m in rig.probe.messages if "/battery/" in m.topic]
    finally:
        await stopped(rig)


async def command(rig: Rig, name: str, payload: bytes) -> str:
    before = len(rig.on(f"result/{name}"))
    rig.probe.publish(f"{rig.prefix}/cmd/{name}", payload)
    results = await rig.until(lambda: rig.on(f"result/{name}")[before:], f"result/{name}")
    return results[0].text


@pytest_twisted.ensureDeferred
async def test_the_settings_of_an_off_grid_model_are_commands_and_settings_keys(mosquitto):
    rig = await started(mosquitto, model="eg4-6000xp", dongle="bj")
    try:
        settings = await rig.until(
            lambda: [m for m in rig.on("settings") if "output_priority" in json.loads(m.payload)],
            "settings with output_priority")
        values = json.loads(settings[-1].payload)
        assert values["battery_nominal_voltage"] == 512 and values["gen_charge_end_soc"] == 90
        assert "grid_peak_shaving" not in values  # no peak shaving on this model
        assert await command(rig, "output_priority", b"1") == "OK"
        assert rig.dongle.plant.holding[145] == 1
        assert await command(rig, "ac_first_slot_1", b"01:30-05:00") == "OK"
        assert rig.dongle.plant.holding.read(152, 2) == (1 | 30 << 8, 5)
        assert await command(rig, "grid_peak_shaving", b"on") == "FAIL"
        # Register 21 goes out unsigned, bit 15 (feed-in) and all, on every model.
        assert await command(rig, "eps", b"on") == "OK"
        assert rig.dongle.plant.holding[21] == 0xF354 | 1
        echoes = [r for r in rig.dongle.requests if isinstance(r, lxp.WriteSingleRequest)]
        assert [(w.register, w.value) for w in echoes if w.register == 21] == [(21, 0xF355)]
    finally:
        await stopped(rig)


@pytest_twisted.ensureDeferred
async def test_a_setting_the_model_lacks_fails_and_writes_nothing(mosquitto):
    rig = await started(mosquitto)  # the LXP-3600 ACS
    try:
        await rig.until(lambda: rig.inverter.model.model is not None, "the model identified")
        assert await command(rig, "output_priority", b"1") == "FAIL"
        assert await command(rig, "quick_charge", b"on") == "FAIL"
        assert not [r for r in rig.dongle.requests
                    if isinstance(r, lxp.WriteSingleRequest | lxp.WriteMultiRequest)]
        values = json.loads(rig.on("settings")[-1].payload)
        assert not {"output_priority", "gen_charge_end_soc", "quick_charge"} & set(values)
    finally:
        await stopped(rig)


@pytest_twisted.ensureDeferred
async def test_each_module_is_a_home_assistant_device_of_its_inverter_and_has_history(
        mosquitto, tmp_path):
    path = tmp_path / "history.sqlite"
    rig = await started(mosquitto, history=str(path), model="eg4-18kpv", batteries=6)
    try:
        serials = [f"SIMBAT{n:04d}" for n in range(1, 7)]
        configs = await rig.until(
            lambda: [m for m in rig.probe.messages if m.topic.endswith("/soc/config")
                     and "octolux_battery_" in m.topic] if all(
                rig.probe.on(f"{rig.ha}/sensor/octolux_battery_{s.lower()}/soc/config")
                for s in serials) else None,
            "a Home Assistant device for each of 6 modules")
        device = json.loads(configs[0].payload)["device"]
        assert device["via_device"] == f"octolux_{rig.dongle.config.inverter.lower()}"
        assert json.loads(configs[0].payload)["state_topic"].startswith(f"{rig.prefix}/battery/")
        await rig.until(lambda: all(rig.on(f"battery/{serial}") for serial in serials),
                        "battery/<serial> for 6 modules")
    finally:
        await stopped(rig)
    with sqlite3.connect(path) as connection:
        keys = {key for (key,) in connection.execute(
            "SELECT key FROM octolux_series WHERE key LIKE 'battery/%/soc'")}
    assert keys == {f"battery/{serial}/soc" for serial in serials}
