"""Discovery proven in a real Home Assistant: mosquitto, two simulated inverters, the bridge.

One Home Assistant start for the whole module (it takes a few seconds): the
tests share it, in file order; the last one disconnects an inverter. Home
Assistant is asked through its own REST and websocket APIs, as a dashboard
or an automation would; nothing here skips (scripts/setup-env.sh installs
Home Assistant, and its absence is a failure).
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import attrs
import pytest_twisted
from e2e_support import MqttProbe, poll_until
from ha_support import HomeAssistant
from twisted.internet import reactor, task

from octolux import lxp
from octolux.config.ini import Config, HomeAssistantConfig, InverterConfig, MqttConfig, ServerConfig
from octolux.device.commands import Topics
from octolux.device.settings import SETTINGS, format_time, format_time_slot
from octolux.homeassistant.entities import inverter_entities
from octolux.homeassistant.payloads import Device, config_topic, discovery_config
from octolux.lxp.holding import decode_time, encode_time
from octolux.lxp.inputs import STATUS_TEXTS, to_signed16
from octolux.service.tap import build_service
from simulator.dongle import start_simulator

HA_PREFIX = "ha-e2e"  # discovery prefix: its own, on the session's shared broker
PREFIX = "octolux-ha"
SERIALS = (("SIMDL00001", "SIMINV0001"), ("SIMDL00002", "SIMINV0002"))
NAMES = ("house", "garage")
DEVICE_NAMES = ("Home battery", None)  # the second one gets the default name
WAIT = 30.0  # seconds for Home Assistant to catch up with something
STALE_TOPIC = f"{HA_PREFIX}/sensor/octolux_siminv0001/old_value/config"
STALE_ENTITY = "sensor.octolux_siminv0001_old_value"
PREDBAT_DOC = Path(__file__).resolve().parent.parent / "docs" / "predbat.md"


@attrs.define
class Home:
    """Everything the tests drive: Home Assistant, the simulated inverters, the bridge."""

    ha: HomeAssistant
    dongles: list
    probe: MqttProbe
    config: Config
    service: object = None

    def topics(self, index: int) -> Topics:
        return Topics(PREFIX, NAMES[index])

    def device(self, index: int) -> Device:
        serial = SERIALS[index][1]
        return Device(serial, DEVICE_NAMES[index] or f"LuxPower {serial}")

    def entity_ids(self, index: int, topics: Topics | None = None) -> dict[str, dict]:
        """entity id -> discovery config, of every entity offered for inverter ``index``."""
        device, topics = self.device(index), topics or self.topics(index)
        configs = {}
        for entity in inverter_entities(topics):
            config = discovery_config(entity, device, topics)
            configs[f"{entity.component}.{config['object_id']}"] = config
        return configs

    def config_topics(self, index: int) -> list[str]:
        """The config topic of every entity offered for inverter ``index``."""
        node = self.device(index).node_id
        return [config_topic(HA_PREFIX, entity.component, node, entity.key)
                for entity in inverter_entities(self.topics(index))]

    async def states(self) -> dict[str, dict]:
        return await self.ha.states(reactor)

    async def until_states(self, condition, what: str, timeout: float = WAIT, wrong=None):
        """Poll Home Assistant's states until ``condition(states)`` is truthy; return it.

        ``wrong(states)``, if given, says what is still wrong when time is up.
        """
        last = {}

        async def check():
            nonlocal last
            last = await self.states()
            return condition(last)

        deadline = reactor.seconds() + timeout
        while True:
            result = await check()
            if result:
                return result
            if reactor.seconds() > deadline:
                detail = wrong(last) if wrong is not None else ""
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {detail};"
                                     f" Home Assistant log:\n{self.ha.log_tail(10)}")
            await task.deferLater(reactor, 0.25, lambda: None)


def _config() -> Config:
    return Config(
        inverters=tuple(
            InverterConfig(name=name, host="127.0.0.1", port=0, serial=serial, datalog=datalog,
                           command_timeout=5.0, device_name=device_name)
            for name, (datalog, serial), device_name in zip(NAMES, SERIALS, DEVICE_NAMES,
                                                            strict=True)
        ),
        server=ServerConfig(port=0),
        homeassistant=HomeAssistantConfig(enabled=True, prefix=HA_PREFIX),
    )


@pytest_twisted.async_yield_fixture(scope="module")
async def home(mosquitto, tmp_path_factory):
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{HA_PREFIX}/#", f"{PREFIX}/#"])
    await probe.ready(reactor)
    dongles = []
    ha = HomeAssistant(tmp_path_factory.mktemp("homeassistant"), mosquitto.host, mosquitto.port,
                       HA_PREFIX)
    home = None
    try:
        for n, (datalog, serial) in enumerate(SERIALS):
            dongles.append(await start_simulator(
                reactor, datalog=datalog, inverter=serial, interval=2.0, burst_gap=0.05,
                first_burst_delay=0.1, seed=n,
            ).addTimeout(5, reactor))
        await ha.start(reactor, lambda: [m for m in probe.on(f"{HA_PREFIX}/status")
                                         if m.text == "online"])
        # What an older bridge offered and this one no longer does: Home
        # Assistant has it, until the bridge clears it.
        probe.publish(STALE_TOPIC, json.dumps({
            "name": "Old value", "unique_id": "octolux_siminv0001_old_value",
            "object_id": "octolux_siminv0001_old_value", "state_topic": f"{PREFIX}/old",
            "device": {"identifiers": ["octolux_siminv0001"]},
        }), retain=True)
        await poll_until(reactor, lambda: ha.log_text().count(STALE_ENTITY) > 0, WAIT,
                         "Home Assistant to discover the stale entity", ha.log_tail)
        config = _config()
        config = attrs.evolve(
            config,
            inverters=tuple(attrs.evolve(inverter, port=dongle.port)
                            for inverter, dongle in zip(config.inverters, dongles, strict=True)),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=PREFIX),
        )
        home = Home(ha, dongles, probe, config)
        home.service = build_service(config, reactor)
        home.service.startService()
        print(f"\nHome Assistant: up with MQTT in {ha.started_in:.1f} s,"
              f" RSS {ha.rss_kib() // 1024} MiB")
        yield home
    finally:
        if home is not None and home.service is not None:
            await home.service.stopService().addTimeout(10, reactor)
        await ha.stop(reactor)
        for dongle in dongles:
            await dongle.stop().addTimeout(5, reactor)
        await probe.close(reactor)


def _published(config: dict) -> bool:
    """Does the bridge publish a value for this entity here (the simulator has blocks 1-3)?

    A button has no state until pressed.
    """
    return config.get("enabled_by_default", True) and "state_topic" in config


async def _until_every_entity_has_a_value(home, expected: dict[str, dict]) -> dict[str, dict]:
    """Home Assistant's states once every entity of ``expected`` that has a value shows one."""
    enabled = {entity_id for entity_id, config in expected.items() if _published(config)}

    def missing(states):
        return {e: states.get(e, {}).get("state") for e in enabled
                if states.get(e, {}).get("state") in (None, "unknown", "unavailable")}

    return await home.until_states(lambda states: None if missing(states) else states,
                                   f"{len(enabled)} entities with values", wrong=missing)


@pytest_twisted.ensureDeferred
async def test_every_entity_appears_with_a_valid_state(home):
    expected = {**home.entity_ids(0), **home.entity_ids(1)}
    enabled = {entity_id for entity_id, config in expected.items() if _published(config)}
    states = await _until_every_entity_has_a_value(home, expected)
    for entity_id in enabled:
        config, attributes = expected[entity_id], states[entity_id]["attributes"]
        for key, attribute in (("device_class", "device_class"),
                               ("unit_of_measurement", "unit_of_measurement"),
                               ("state_class", "state_class")):
            assert attributes.get(attribute) == config.get(key), (entity_id, key)
        if config.get("state_class"):
            float(states[entity_id]["state"])  # a number, as the state class promises
        for key in ("min", "max", "step", "pattern", "mode"):  # numbers and texts
            if key in config:
                assert attributes.get(key) == config[key], (entity_id, key)
    assert states["binary_sensor.octolux_siminv0001_connection"]["state"] == "on"
    assert states["sensor.octolux_siminv0001_inverter_serial"]["state"] == "SIMINV0001"
    assert states["sensor.octolux_siminv0002_inverter_serial"]["state"] == "SIMINV0002"
    assert states["sensor.octolux_siminv0001_fault_codes"]["state"] == "none"
    assert states["sensor.octolux_siminv0001_status_text"]["state"] in STATUS_TEXTS.values()


@pytest_twisted.ensureDeferred
async def test_the_registry_has_one_device_per_inverter_and_every_entity(home):
    entities = await home.ha.ws(reactor, "config/entity_registry/list")
    devices = await home.ha.ws(reactor, "config/device_registry/list")
    ours = {device["id"]: device for device in devices
            if any(i[0] == "mqtt" and i[1].startswith("octolux_") for i in device["identifiers"])}
    assert sorted(device["name"] for device in ours.values()) == [
        "Home battery", "LuxPower SIMINV0002"]
    for device in ours.values():
        assert device["manufacturer"] == "LuxPower"
        assert device["serial_number"] in ("SIMINV0001", "SIMINV0002")
        # The bridge reads the holding registers on connect: registers 7-10 tell it.
        assert device["sw_version"] == "BAAA-0A0A"
        assert device["model"] == "LXP-3600 ACS"  # from the firmware code
    registry = {entry["entity_id"]: entry for entry in entities if entry["platform"] == "mqtt"}
    for index in (0, 1):
        for entity_id, config in home.entity_ids(index).items():
            entry = registry.get(entity_id)
            assert entry is not None, f"{entity_id} is not in Home Assistant's registry"
            assert entry["unique_id"] == config["unique_id"]
            assert entry["entity_category"] == config.get("entity_category")
            assert ours[entry["device_id"]]["serial_number"] == SERIALS[index][1]
            disabled = config.get("enabled_by_default") is False
            assert (entry["disabled_by"] == "integration") == disabled, entity_id
    assert len({entry["unique_id"] for entry in registry.values()}) == len(registry)


@pytest_twisted.ensureDeferred
async def test_an_entity_no_longer_offered_is_cleared_from_home_assistant(home):
    cleared = await home.probe.until(
        reactor, lambda: [m for m in home.probe.on(STALE_TOPIC) if m.payload == b""], WAIT,
        "the stale config cleared")
    assert cleared
    await home.until_states(lambda states: STALE_ENTITY not in states,
                            f"{STALE_ENTITY} gone from Home Assistant")
    entities = await home.ha.ws(reactor, "config/entity_registry/list")
    assert STALE_ENTITY not in [entry["entity_id"] for entry in entities]


@pytest_twisted.ensureDeferred
async def test_configs_are_sent_again_when_home_assistant_announces_itself(home):
    topic = next(iter(home.entity_ids(0).values()))["unique_id"].removeprefix(
        "octolux_siminv0001_")
    config_topic = f"{HA_PREFIX}/sensor/octolux_siminv0001/{topic}/config"
    before = len(home.probe.on(config_topic))
    home.probe.publish(f"{HA_PREFIX}/status", "online")
    again = await home.probe.next_on(reactor, config_topic, after=before, timeout=WAIT)
    assert json.loads(again.payload)["unique_id"] == f"octolux_siminv0001_{topic}"


async def _until_plant(dongle, condition, what: str):
    """Poll the simulated inverter (in this process) until ``condition()``."""
    return await poll_until(reactor, condition, WAIT, what,
                            lambda: f"requests: {list(dongle.requests)[-5:]}")


def _target(setting, current: int) -> int:
    """A value in the setting's range that differs from ``current``."""
    middle = (setting.minimum + setting.maximum) // 2 + 1
    return middle if middle != current else middle + 1


@pytest_twisted.ensureDeferred
async def test_every_control_drives_the_inverter_and_its_state_follows(home):
    dongle, ha = home.dongles[0], home.ha
    plant = dongle.plant
    node = "octolux_siminv0001"
    expected: dict[str, str] = {}  # entity id -> the state Home Assistant must end up showing
    driven = 0
    for name, setting in SETTINGS.items():
        if not setting.writable or setting.kind == "clock":
            continue
        if not dongle.config.model.model.has(setting.feature):
            continue  # a setting of other models: its control starts disabled
        register = setting.registers[0]
        if setting.kind == "bit":
            entity_id = f"switch.{node}_{name}"
            on = not plant.holding[register] >> setting.bit & 1
            await ha.call_service(reactor, "switch", "turn_on" if on else "turn_off",
                                  entity_id=entity_id)
            await _until_plant(dongle, lambda r=register, b=setting.bit, on=on:
                               bool(plant.holding[r] >> b & 1) == on, f"{name} {on}")
            expected[entity_id] = "on" if on else "off"
        elif setting.kind in ("percent", "number"):
            entity_id = f"number.{node}_{name}"
            value = _target(setting, to_signed16(plant.holding[register]))
            await ha.call_service(reactor, "number", "set_value", entity_id=entity_id,
                                  value=value)
            await _until_plant(dongle, lambda r=register, v=value:
                               to_signed16(plant.holding[r]) == v, f"{name} = {value}")
            expected[entity_id] = str(float(value))
        elif setting.kind == "time":  # one end of a slot: that register alone
            entity_id = f"select.{node}_{name}"
            option = f"{driven % 24:02}:{driven * 7 % 60:02}:00"
            await ha.call_service(reactor, "select", "select_option", entity_id=entity_id,
                                  option=option)
            await _until_plant(dongle, lambda r=register, t=option[:5]:
                               format_time(decode_time(plant.holding[r])) == t,
                               f"{name} = {option}")
        else:  # a time slot
            entity_id = f"text.{node}_{name}"
            slot = f"{driven % 24:02}:15-{(driven + 3) % 24:02}:45"
            await ha.call_service(reactor, "text", "set_value", entity_id=entity_id, value=slot)
            start, end = setting.registers
            await _until_plant(dongle, lambda s=start, e=end, t=slot: format_time_slot(
                decode_time(plant.holding[s]), decode_time(plant.holding[e])) == t,
                f"{name} = {slot}")
        driven += 1
        expected.setdefault(entity_id, "")  # a slot's: read back from the inverter below

    # The selects wrote the slots' registers again: each text and select shows
    # what the inverter holds now.
    for name, setting in SETTINGS.items():
        if not dongle.config.model.model.has(setting.feature):
            continue
        if setting.kind == "time_slot":
            start, end = setting.registers
            expected[f"text.{node}_{name}"] = format_time_slot(
                decode_time(plant.holding[start]), decode_time(plant.holding[end]))
        elif setting.kind == "time":
            expected[f"select.{node}_{name}"] = (
                format_time(decode_time(plant.holding[setting.registers[0]])) + ":00")

    def follows(states):
        wrong = {e: states[e]["state"] for e, want in expected.items()
                 if _normal(states[e]["state"]) != want}
        return states if not wrong else None

    await home.until_states(follows, f"the {driven} controls' states to follow",
                            wrong=lambda states: {e: states[e]["state"] for e in expected})

    # The buttons: the clock is written (registers 12-14 at once), then every register read.
    writes = len([r for r in dongle.requests if isinstance(r, lxp.WriteMultiRequest)])
    await ha.call_service(reactor, "button", "press", entity_id=f"button.{node}_sync_time")
    await _until_plant(dongle, lambda: len([r for r in dongle.requests if isinstance(
        r, lxp.WriteMultiRequest) and r.register == 12]) > writes, "the clock written")
    reads = _hold_reads(dongle)
    await ha.call_service(reactor, "button", "press", entity_id=f"button.{node}_refresh")
    await _until_plant(dongle, lambda: _hold_reads(dongle) >= reads + 6,
                       "every holding register read again")
    states = await home.states()
    for button in ("sync_time", "refresh"):  # a button's state is when it was last pressed
        assert states[f"button.{node}_{button}"]["state"] not in ("unknown", "unavailable")
    assert driven == len(expected) == 53


def _predbat_entities(serial: str) -> list[str]:
    """The entity ids of docs/predbat.md's apps.yaml, for the inverter ``serial``."""
    block = PREDBAT_DOC.read_text().split("```yaml", 1)[1].split("```", 1)[0]
    found = re.findall(r"\b(?:sensor|switch|number|select)\.octolux_\{octolux_serial\}_\w+",
                       block)
    return sorted({entity.replace("{octolux_serial}", serial.lower()) for entity in found})


def _writes_since(dongle, mark) -> list:
    """The write requests the simulated inverter has had since request ``mark``."""
    requests = list(dongle.requests)
    after = next(i for i in range(len(requests) - 1, -1, -1) if requests[i] is mark) + 1
    return [r for r in requests[after:]
            if isinstance(r, lxp.WriteSingleRequest | lxp.WriteMultiRequest)]


@pytest_twisted.ensureDeferred
async def test_predbat_drives_the_inverter_through_home_assistant(home):
    dongle, ha = home.dongles[0], home.ha
    plant = dongle.plant
    entities = _predbat_entities("SIMINV0001")
    assert len(entities) == 24
    states = await home.states()
    # Everything Predbat reads has a value of the kind it expects.
    for entity_id in entities:
        state = states[entity_id]["state"]
        assert state not in ("unknown", "unavailable"), entity_id
        if entity_id.startswith(("sensor.", "number.")) and not entity_id.endswith("_clock"):
            float(state)
    assert float(states["sensor.octolux_siminv0001_bat_capacity_kwh"]["state"]) > 0

    async def until_state(entity_id, want):
        await home.until_states(
            lambda states: _normal(states[entity_id]["state"]) == _normal(want),
            f"{entity_id} = {want}", wrong=lambda states: states[entity_id]["state"])

    # Windows: Predbat selects a start, then an end, each an HH:MM:SS option;
    # each choice writes its own register and nothing else.
    for entity, option, register in (
        ("select.octolux_siminv0001_ac_charge_slot_1_start", "23:31:00", 68),
        ("select.octolux_siminv0001_ac_charge_slot_1_end", "05:29:00", 69),
        ("select.octolux_siminv0001_forced_discharge_slot_1_start", "16:05:00", 84),
        ("select.octolux_siminv0001_forced_discharge_slot_1_end", "19:00:00", 85),
    ):
        assert entity in entities
        mark = dongle.requests[-1]
        await ha.call_service(reactor, "select", "select_option", entity_id=entity,
                              option=option)
        raw = encode_time(datetime.time.fromisoformat(option))
        await _until_plant(dongle, lambda r=register, v=raw: plant.holding[r] == v,
                           f"{entity} = {option}")
        assert [(w.register, w.value) for w in _writes_since(dongle, mark)] == [(register, raw)]
        await until_state(entity, option)

    # Charge and discharge on and off, and freeze export.
    for name, bit in (("ac_charge", (21, 7)), ("forced_discharge", (21, 10)),
                      ("charge_last", (110, 4))):
        entity = f"switch.octolux_siminv0001_{name}"
        assert entity in entities
        for on in (True, False):
            await ha.call_service(reactor, "switch", "turn_on" if on else "turn_off",
                                  entity_id=entity)
            await _until_plant(dongle, lambda r=bit[0], b=bit[1], on=on:
                               bool(plant.holding[r] >> b & 1) == on, f"{name} {on}")
            await until_state(entity, "on" if on else "off")

    # Rates in amps, and the SOCs.
    for name, value, register in (("charge_current_limit", 37, 101),
                                  ("discharge_current_limit", 52, 102),
                                  ("charge_amount_pct", 95, 67),
                                  ("forced_discharge_soc", 21, 83),
                                  ("discharge_cutoff_soc", 12, 105)):
        entity = f"number.octolux_siminv0001_{name}"
        assert entity in entities
        mark = dongle.requests[-1]
        await ha.call_service(reactor, "number", "set_value", entity_id=entity, value=value)
        await _until_plant(dongle, lambda r=register, v=value: plant.holding[r] == v,
                           f"{name} = {value}")
        assert [(w.register, w.value) for w in _writes_since(dongle, mark)] == [
            (register, value)]
        await until_state(entity, str(value))
    assert home.ha.problems() == []


def _normal(state: str) -> str:
    """A number's state as "42.0" (Home Assistant shows 42 or 42.0), others as they are."""
    try:
        return str(float(state)) if ":" not in state else state
    except ValueError:
        return state


def _hold_reads(dongle) -> int:
    return len([r for r in dongle.requests if isinstance(r, lxp.ReadRequest)
                and r.function is lxp.DeviceFunction.READ_HOLD])


@pytest_twisted.ensureDeferred
async def test_home_assistant_logged_no_discovery_warning(home):
    # After the first test, every entity has been discovered and has a state.
    assert home.ha.problems() == []


def _births(home) -> int:
    """How many times Home Assistant has announced itself so far."""
    return len([m for m in home.probe.on(f"{HA_PREFIX}/status") if m.text == "online"])


@pytest_twisted.ensureDeferred
async def test_after_home_assistant_restarts_every_entity_is_back_with_a_value(home):
    expected = {**home.entity_ids(0), **home.entity_ids(1)}
    sent = {topic: len(home.probe.on(topic))
            for topic in home.config_topics(0) + home.config_topics(1)}
    births = _births(home)
    await home.ha.restart(reactor, lambda: _births(home) > births)
    # The bridge answers the new process's birth message with every config again.
    await home.probe.until(
        reactor, lambda: all(len(home.probe.on(t)) > n for t, n in sent.items()), WAIT,
        "every config published again")
    await _until_every_entity_has_a_value(home, expected)
    assert home.ha.problems() == []  # the log of the new process (it rotates the old one)
    print(f"\nHome Assistant: restarted, up with MQTT in {home.ha.started_in:.1f} s")


@pytest_twisted.ensureDeferred
async def test_a_disconnected_inverter_makes_its_entities_unavailable(home):
    second, first = home.entity_ids(1), home.entity_ids(0)
    await home.dongles[1].stop().addTimeout(5, reactor)

    def second_unavailable(states):
        gone = all(states[e]["state"] == "unavailable" for e in second
                   if _published(second[e]) and not e.startswith("binary_sensor."))
        return states if gone else None

    states = await home.until_states(second_unavailable, "the garage inverter unavailable")
    assert states["binary_sensor.octolux_siminv0002_connection"]["state"] == "off"
    assert all(states[e]["state"] != "unavailable" for e in first if _published(first[e]))
    assert home.ha.problems() == []


@pytest_twisted.ensureDeferred
async def test_an_inverter_removed_from_the_config_leaves_nothing_behind(home):
    garage = home.entity_ids(1)
    # A second bridge (MQTT prefix octolux-other) serving the same inverter: not ours.
    foreign = f"{HA_PREFIX}/sensor/octolux_siminv0002/other_soc/config"
    home.probe.publish(foreign, json.dumps({
        "name": "SOC", "unique_id": "other_siminv0002_soc", "object_id": "other_siminv0002_soc",
        "state_topic": "octolux-other/inputs/1", "value_template": "{{ value_json.soc }}",
        "availability": [{"topic": "octolux-other/status"}],
        "device": {"identifiers": ["other_siminv0002"], "name": "Other bridge's inverter"},
    }), retain=True)
    try:
        await home.until_states(lambda states: "sensor.other_siminv0002_soc" in states,
                                "the other bridge's entity")
        await home.service.stopService().addTimeout(10, reactor)
        # The garage inverter is taken out of config.ini; the house keeps its serial.
        home.config = attrs.evolve(home.config, inverters=home.config.inverters[:1])
        home.service = build_service(home.config, reactor)
        home.service.startService()

        def left(states):
            return sorted(entity_id for entity_id in garage if entity_id in states)

        await home.until_states(lambda states: not left(states),
                                "the garage inverter's entities gone", wrong=left)
        entities = await home.ha.ws(reactor, "config/entity_registry/list")
        devices = await home.ha.ws(reactor, "config/device_registry/list")
        assert not [entry["entity_id"] for entry in entities if entry["entity_id"] in garage]
        assert [device["serial_number"] for device in devices
                if ["mqtt", "octolux_siminv0002"] in device["identifiers"]] == []
        states = await home.states()
        assert "sensor.other_siminv0002_soc" in states
        # On the broker: every garage config cleared, the other bridge's left alone.
        for topic in home.config_topics(1):
            assert home.probe.on(topic)[-1].payload == b"", topic
        assert home.probe.on(foreign)[-1].payload != b""
        record = f"{PREFIX}/discovery/{HA_PREFIX}/octolux_siminv0002"
        assert home.probe.on(record)[-1].payload == b""
        # The house, now the only inverter, reads its topics without the name: still whole.
        await _until_every_entity_has_a_value(home, home.entity_ids(0, Topics(PREFIX)))
        assert home.ha.problems() == []
    finally:
        home.probe.publish(foreign, b"", retain=True)
