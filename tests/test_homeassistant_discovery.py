"""Home Assistant discovery without Home Assistant: the payloads, and keeping them on the broker.

tests/test_homeassistant.py shows the same payloads to a real Home Assistant;
these catch the mistakes it would only log (a unit that does not fit its
device class, a template key nobody publishes) one entity at a time.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import attrs
import pytest
import pytest_twisted
from e2e_support import MqttProbe
from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent

from octolux.config.ini import ConfigError, HomeAssistantConfig, MqttConfig, parse_config
from octolux.device.commands import COMMANDS, PayloadError, Topics
from octolux.device.settings import SETTINGS, decode_settings
from octolux.homeassistant.discovery import HomeAssistantDiscovery
from octolux.homeassistant.docs import entity_table, main, render
from octolux.homeassistant.entities import inverter_entities
from octolux.homeassistant.payloads import Device, discovery_config, discovery_messages
from octolux.homeassistant.sweeper import DiscoveryRecord, OrphanSweeper
from octolux.lxp import inputs
from octolux.lxp.holding import firmware
from octolux.lxp.models import MODELS
from octolux.lxp.models import model_name as model
from octolux.mqtt.bridge import InverterBridge
from octolux.mqtt.client import Message, MqttService
from simulator.models import SIMULATED_MODELS
from simulator.registers import default_holding

# The units Home Assistant accepts for each device class used here (its
# DEVICE_CLASS_UNITS), and the state classes it allows with them.
UNITS = {
    "energy": {"Wh", "kWh", "MWh", "GJ", "MJ"},
    "power": {"W", "kW"},
    "apparent_power": {"VA"},
    "voltage": {"V", "mV"},
    "current": {"A", "mA"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "temperature": {"°C", "°F", "K"},
    "duration": {"d", "h", "min", "s", "ms"},
    "battery": {"%"},
    "power_factor": {"%", None},
    "energy_storage": {"Wh", "kWh", "MWh", "GJ", "MJ"},
}
STATE_CLASSES = {
    "energy": {"total", "total_increasing"},
    "duration": {"measurement", "total", "total_increasing"},
}
COMPONENTS = {"sensor", "binary_sensor", "switch", "number", "text", "select", "button"}
TOPICS = Topics()
DEVICE = Device("0123456789", "LuxPower 0123456789")


def configs(topics=TOPICS, device=DEVICE) -> list[dict]:
    return [discovery_config(entity, device, topics) for entity in inverter_entities(topics)]


def test_every_unit_fits_its_device_class_and_state_class():
    classed = [config for config in configs()
               if config.get("device_class") and "payload_on" not in config]
    assert len(classed) > 80
    for config in classed:
        device_class = config["device_class"]
        assert config.get("unit_of_measurement") in UNITS[device_class], config["unique_id"]
        if "command_topic" not in config:  # a sensor; numbers have no state class
            allowed = STATE_CLASSES.get(device_class, {"measurement"})
            assert config.get("state_class") in allowed, config["unique_id"]


def test_energy_counters_are_total_increasing_kwh_and_powers_measurements_in_w():
    by_key = {entity.key: discovery_config(entity, DEVICE, TOPICS)
              for entity in inverter_entities(TOPICS)}
    for key in ("e_pv_all", "e_to_grid_day", "e_chg_all"):
        assert (by_key[key]["device_class"], by_key[key]["state_class"],
                by_key[key]["unit_of_measurement"]) == ("energy", "total_increasing", "kWh")
    for key in ("p_pv", "p_grid", "p_battery", "p_to_user"):
        assert (by_key[key]["device_class"], by_key[key]["state_class"],
                by_key[key]["unit_of_measurement"]) == ("power", "measurement", "W")
    assert by_key["soc"]["device_class"] == "battery"
    assert by_key["soc"]["unit_of_measurement"] == "%"
    for key in ("t_inner", "v_bus_1", "max_cell_voltage", "fault_code", "bat_status_0",
                "inverter_serial"):
        assert by_key[key]["entity_category"] == "diagnostic", key
    for key in ("soc", "p_pv", "e_pv_all", "v_bat", "p_load", "status_text"):
        assert "entity_category" not in by_key[key], key
    assert by_key["fault_codes"]["value_template"] == (
        "{{ value_json.fault_codes | join(', ') or 'none' }}")


def _template_key(config: dict) -> str:
    return re.search(r"value_json\.(\w+)", config["value_template"]).group(1)


def test_every_value_template_key_is_published_on_its_state_topic():
    # Every setting is in the settings JSON once its registers have been read (one
    # of a part some models only have: from a model with that part).
    published = {
        "octolux/settings": {
            name for model in SIMULATED_MODELS.values()
            for name in decode_settings(dict(enumerate(default_holding(model=model))))},
        **{TOPICS.inputs(block): set(keys) for block, keys in inputs.BLOCK_KEYS.items()},
    }
    templated = [config for config in configs() if "value_template" in config]
    assert len(templated) == len(configs()) - 3  # the connection and the two buttons
    for config in templated:
        assert _template_key(config) in published[config["state_topic"]], config["unique_id"]


def test_every_control_writes_a_command_that_takes_what_it_sends():
    controls = [config for config in configs() if "command_topic" in config]
    assert len(controls) == sum(setting.writable and setting.kind != "clock"
                                for setting in SETTINGS.values()) + 2
    for config in controls:
        name = config["command_topic"].removeprefix("octolux/cmd/")
        command = COMMANDS[name]
        if "payload_on" in config:  # a switch
            assert command.parse(config["payload_on"].encode()) is True
            assert command.parse(config["payload_off"].encode()) is False
        elif "payload_press" in config:  # a button
            command.parse(config["payload_press"].encode())
        elif "pattern" in config:  # a text: a time slot
            assert re.match(config["pattern"], "00:00-00:00")
            command.parse(b"22:30-05:00")
            assert not re.match(config["pattern"], "9-5")
        elif "options" in config:  # a select: one end of a time slot, every minute
            assert config["command_template"] == "{{ value[:5] }}"
            assert len(set(config["options"])) == 24 * 60
            for option in config["options"]:
                assert command.parse(option[:5].encode()) == datetime.time.fromisoformat(option)
        else:  # a number: exactly the command's range
            low, high = config["min"], config["max"]
            command.parse(str(low).encode())
            command.parse(str(high).encode())
            for outside in (low - 1, high + 1):
                with pytest.raises(PayloadError):
                    command.parse(str(outside).encode())


def test_each_setting_has_the_entity_of_its_kind():
    components = {entity.key: entity.component for entity in inverter_entities(TOPICS)}
    assert components["ac_charge"] == "switch"
    assert components["drms"] == "binary_sensor"  # not a command: shown, read only
    assert components["charge_amount_pct"] == components["ct_power_offset"] == "number"
    assert components["forced_discharge_slot_2"] == "text"
    assert components["forced_discharge_slot_2_start"] == "select"
    assert components["ac_charge_slot_1_end"] == "select"
    assert components["charge_last"] == "switch"
    assert components["clock"] == "sensor"
    assert components["sync_time"] == components["refresh"] == "button"
    by_key = {entity.key: entity.config for entity in inverter_entities(TOPICS)}
    assert by_key["discharge_cutoff_soc"]["device_class"] == "battery"
    assert (by_key["discharge_cutoff_soc"]["min"], by_key["discharge_cutoff_soc"]["max"]) == (
        10, 90)
    assert "device_class" not in by_key["charge_pct"]
    assert by_key["ct_power_offset"]["device_class"] == "power"
    for limit in ("charge_current_limit", "discharge_current_limit"):
        assert (by_key[limit]["device_class"], by_key[limit]["unit_of_measurement"],
                by_key[limit]["min"], by_key[limit]["max"]) == ("current", "A", 0, 140)
    assert by_key["ac_charge_slot_1_start"]["value_template"] == (
        "{{ value_json.ac_charge_slot_1_start ~ ':00'"
        " if value_json.get('ac_charge_slot_1_start') else 'None' }}")
    assert "entity_category" not in by_key["ac_charge"]
    assert by_key["eps"]["entity_category"] == "config"


def test_text_and_codes_have_no_state_class():
    quantities = ("pf", "bat_count", "bat_cycle_count")
    for entity in inverter_entities(TOPICS):
        field = inputs.FIELDS_BY_KEY.get(entity.key)
        if field is None or entity.key in quantities:
            continue
        if field.kind is inputs.Kind.TEXT or not field.unit:
            assert "state_class" not in entity.config, entity.key


def test_every_entity_is_unique_and_available_only_with_the_bridge_and_its_inverter():
    two = [*configs(Topics("octolux", "house")),
           *configs(Topics("octolux", "garage"), Device("9876543210", "Garage"))]
    assert len({config["unique_id"] for config in two}) == len(two)
    for config in configs():
        topics = [entry["topic"] for entry in config["availability"]]
        if config["unique_id"].endswith("_connection"):
            assert topics == ["octolux/status"]
        else:
            assert topics == ["octolux/status", "octolux/connection"]
        assert config["availability_mode"] == "all"
        assert config["device"]["identifiers"] == ["octolux_0123456789"]
        assert config["device"]["manufacturer"] == "LuxPower"
        assert config["object_id"] == config["unique_id"]


def test_config_topics_are_per_entity_under_the_node_id():
    messages = discovery_messages("homeassistant", DEVICE, TOPICS)
    for topic, payload in messages.items():
        prefix, component, node, key, config = topic.split("/")
        assert (prefix, node, config) == ("homeassistant", "octolux_0123456789", "config")
        assert component in COMPONENTS
        assert json.loads(payload)["unique_id"] == f"octolux_0123456789_{key}"
    assert len(messages) == len(inverter_entities(TOPICS))


def test_inputs_4_sensors_start_disabled():
    for entity in inverter_entities(TOPICS):
        field = inputs.FIELDS_BY_KEY.get(entity.key)
        if field is not None:
            assert (entity.config.get("enabled_by_default") is False) == (
                field.feature is not None)


def test_firmware_from_registers_7_to_10():
    holding = dict(enumerate(default_holding()))
    assert firmware(holding) == "BAAA-0A0A"
    del holding[9]
    assert firmware(holding) is None
    assert firmware({7: 0, 8: 0, 9: 0, 10: 0}) is None  # a code of NULs is no firmware


def _code(text: str) -> dict[int, int]:
    """Registers 7-8 holding a four-letter firmware code."""
    return {7: int.from_bytes(text[:2].encode(), "little"),
            8: int.from_bytes(text[2:].encode(), "little")}


def test_the_model_from_the_firmware_codes_first_two_letters():
    assert model(dict(enumerate(default_holding()))) == "LXP-3600 ACS"  # the simulator
    assert model(_code("BAAA")) == "LXP-3600 ACS"  # the captured unit (tests/vectors)
    assert model(_code("BAAB")) == "LXP-3600 ACS"  # the last two letters: ODM and region
    assert model(_code("FAAB")) == "LXP-LB-8-12K"
    assert model(_code("CEAA")) == "EG4 6000XP/12000XP"  # the SNA-US 12K, as EG4 sells it
    assert model(_code("ZZAA")) is None  # a code nobody has matched: no guess
    assert model({7: 16706}) is None  # register 8 not known yet
    assert model({7: 0, 8: 0}) is None
    assert all(len(letters) == 2 and letters.isupper()
               for entry in MODELS for letters in entry.firmware_letters)


def test_the_entity_list_is_current():
    table = entity_table()
    assert len(table) == 2 + len(inverter_entities(TOPICS, plan=True))
    assert any("`soc`" in row and "battery" in row for row in table)
    assert main(["--nonsense"]) == 2
    docs = Path(__file__).resolve().parent.parent / "docs" / "homeassistant.md"
    assert docs.read_text() == render(), (
        "docs/homeassistant.md is stale: .venv/bin/python -m octolux.homeassistant.docs --list"
        " > docs/homeassistant.md")


# -- keeping the configs on the broker ---------------------------------------------------


class FakePublisher:
    def __init__(self):
        self.published: list[tuple[str, str | bytes, int, bool]] = []

    def publish(self, topic, payload, *, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))


@pytest.fixture
def publisher():
    return FakePublisher()


class FakeInverter:
    def __init__(self, serial=None, name="inverter"):
        self.serial = serial
        self.name = name
        self.connected = False
        self.registers: dict[int, int] = {}  # the register store the observers read


def registers_arrive(discovery, registers: dict[int, int]) -> None:
    """As the inverter reports them: into its store, then to the observer."""
    discovery.inverter.registers.update(registers)
    discovery.registers_received(registers)


@pytest.fixture
def subscriptions():
    return []


@pytest.fixture
def discovery(publisher, subscriptions):
    return HomeAssistantDiscovery(FakeInverter("0123456789"), publisher, TOPICS, "homeassistant",
                                  "Battery", subscribe=lambda *s: subscriptions.append(s))


def test_configs_are_published_retained_on_every_broker_connection(discovery, publisher):
    discovery.broker_connected()
    expected = discovery_messages("homeassistant", Device("0123456789", "Battery"), TOPICS)
    assert {topic: payload for topic, payload, _, _ in publisher.published} == expected
    assert {(qos, retain) for _, _, qos, retain in publisher.published} == {(1, True)}
    discovery.broker_connected()
    assert len(publisher.published) == 2 * len(expected)


def test_configs_are_published_again_when_home_assistant_comes_online(discovery, publisher):
    discovery.home_assistant_status(Message("homeassistant/status", b"offline"))
    assert publisher.published == []
    discovery.home_assistant_status(Message("homeassistant/status", b"online"))
    assert len(publisher.published) == len(inverter_entities(TOPICS))


def test_a_retained_config_no_longer_offered_is_cleared(discovery, publisher, subscriptions):
    assert subscriptions == [("homeassistant/+/octolux_0123456789/+/config",
                              discovery.config_seen)]
    old = "homeassistant/sensor/octolux_0123456789/old_value/config"
    offered = "homeassistant/sensor/octolux_0123456789/soc/config"
    with capturedLogs() as events:
        discovery.config_seen(Message(old, b'{"name":"old"}', retained=True))
    assert publisher.published == [(old, b"", 1, True)]
    assert any(old in formatEvent(event) for event in events)
    # Not cleared: one we offer, an empty one (already cleared), a live message.
    discovery.config_seen(Message(offered, b"{}", retained=True))
    discovery.config_seen(Message(old, b"", retained=True))
    discovery.config_seen(Message(old, b"{}", retained=False))
    assert len(publisher.published) == 1
    assert discovery.own_configs == "homeassistant/+/octolux_0123456789/+/config"


def test_the_firmware_and_model_join_the_device_once_known(discovery, publisher):
    registers_arrive(discovery, {21: 0xF354})
    assert publisher.published == []
    holding = default_holding()
    registers_arrive(discovery, {register: holding[register] for register in range(0, 40)})
    assert publisher.published
    assert {(json.loads(payload)["device"]["sw_version"], json.loads(payload)["device"]["model"])
            for _, payload, _, _ in publisher.published} == {("BAAA-0A0A", "LXP-3600 ACS")}
    publisher.published.clear()
    registers_arrive(discovery, {9: holding[9]})  # the same again: nothing new
    assert publisher.published == []
    registers_arrive(discovery, {**_code("FAAB"), 19: 44})  # another firmware: another model
    assert {json.loads(payload)["device"]["model"]
            for _, payload, _, _ in publisher.published} == {"LXP-LB-8-12K"}


def test_an_inverter_whose_serial_is_learned_gets_its_device_then(publisher, subscriptions):
    inverter = FakeInverter(serial=None)  # server mode, no serial in config.ini
    discovery = HomeAssistantDiscovery(inverter, publisher, TOPICS, "homeassistant",
                                       subscribe=lambda *s: subscriptions.append(s))
    discovery.broker_connected()
    discovery.home_assistant_status(Message("homeassistant/status", b"online"))
    discovery.connection_changed(True)
    registers_arrive(discovery, {7: 16706})
    assert (publisher.published, subscriptions) == ([], [])
    inverter.serial = "0252016063"
    discovery.inputs_received({1: {"soc": 50}})
    assert subscriptions == [("homeassistant/+/octolux_0252016063/+/config",
                              discovery.config_seen)]
    assert len(publisher.published) == len(inverter_entities(TOPICS))
    assert json.loads(publisher.published[0][1])["device"]["name"] == "LuxPower 0252016063"
    discovery.inputs_received({1: {"soc": 51}})
    assert len(publisher.published) == len(inverter_entities(TOPICS))


# -- inverters no longer served ------------------------------------------------------------

BRIDGE = Topics("octolux")
OURS = json.dumps({"name": "SOC", "availability": [{"topic": "octolux/status"},
                                                   {"topic": "octolux/garage/connection"}]})
THEIRS = json.dumps({"name": "SOC", "availability": [{"topic": "other/status"}]})


def _sweeper(publisher, subscriptions, **options):
    return OrphanSweeper(publisher, lambda *s: subscriptions.append(s), BRIDGE, "homeassistant",
                         **options)


def _served(sweeper, publisher, serial, name):
    return HomeAssistantDiscovery(FakeInverter(serial, name), publisher, Topics("octolux", name),
                                  "homeassistant", subscribe=lambda *s: None, sweeper=sweeper)


def _record(node_id, inverter, prefix="homeassistant", retained=True):
    payload = DiscoveryRecord(prefix, node_id, inverter).payload().encode()
    return Message(f"octolux/discovery/{prefix}/{node_id}", payload, retained=retained)


def test_every_node_is_recorded_before_its_configs_are_published(publisher, subscriptions):
    sweeper = _sweeper(publisher, subscriptions)
    discovery = _served(sweeper, publisher, "0123456789", "house")
    discovery.broker_connected()
    topic, payload, qos, retain = publisher.published[0]
    assert (topic, qos, retain) == ("octolux/discovery/homeassistant/octolux_0123456789", 1, True)
    assert DiscoveryRecord.parse(payload.encode()) == DiscoveryRecord(
        "homeassistant", "octolux_0123456789", "house")
    assert len(publisher.published) == 1 + len(inverter_entities(TOPICS))
    assert sweeper.records == "octolux/discovery/#"


def test_the_configs_of_an_inverter_no_longer_served_are_cleared(publisher, subscriptions):
    sweeper = _sweeper(publisher, subscriptions)
    _served(sweeper, publisher, "0123456789", "house")
    with capturedLogs() as events:
        sweeper.record_seen(_record("octolux_9876543210", "garage"))
    assert any("octolux_9876543210" in formatEvent(event) for event in events)
    [(topic_filter, config_seen)] = subscriptions
    assert topic_filter == "homeassistant/+/octolux_9876543210/+/config"
    record = "octolux/discovery/homeassistant/octolux_9876543210"
    assert publisher.published == [(record, b"", 1, True)]
    ours = "homeassistant/sensor/octolux_9876543210/soc/config"
    theirs = "homeassistant/sensor/octolux_9876543210/their_soc/config"
    config_seen(Message(ours, OURS.encode(), retained=True))
    assert publisher.published[-1] == (ours, b"", 1, True)
    # Not cleared: another bridge's config, one that is no config, a live one, a cleared one.
    config_seen(Message(theirs, THEIRS.encode(), retained=True))
    config_seen(Message(theirs, b"not json", retained=True))
    config_seen(Message(ours, OURS.encode(), retained=False))
    config_seen(Message(ours, b"", retained=True))
    assert len(publisher.published) == 2
    # The record replayed again (a broker reconnection before it was cleared): one sweep.
    sweeper.record_seen(_record("octolux_9876543210", "garage"))
    assert len(subscriptions) == 1


def test_records_of_served_nodes_and_other_messages_are_left_alone(publisher, subscriptions):
    sweeper = _sweeper(publisher, subscriptions)
    _served(sweeper, publisher, "0123456789", "house")
    sweeper.record_seen(_record("octolux_0123456789", "house"))
    sweeper.record_seen(_record("octolux_0123456789", "renamed"))  # the same serial
    sweeper.record_seen(_record("octolux_9876543210", "garage", retained=False))  # live
    sweeper.record_seen(Message("octolux/discovery/connection", b"online", retained=True))
    sweeper.record_seen(Message("octolux/discovery/homeassistant/octolux_1", b"{}",
                                retained=True))
    wrong_place = _record("octolux_9876543210", "garage")
    sweeper.record_seen(attrs.evolve(wrong_place, topic="octolux/discovery/x/octolux_1"))
    assert (publisher.published, subscriptions) == ([], [])


def test_a_changed_discovery_prefix_sweeps_the_old_one(publisher, subscriptions):
    sweeper = _sweeper(publisher, subscriptions)
    _served(sweeper, publisher, "0123456789", "house")
    sweeper.record_seen(_record("octolux_0123456789", "house", prefix="ha/old"))
    assert [s[0] for s in subscriptions] == ["ha/old/+/octolux_0123456789/+/config"]


def test_a_node_waits_for_its_inverters_serial_before_it_is_judged(publisher, subscriptions):
    sweeper = _sweeper(publisher, subscriptions)
    same = FakeInverter(None, "house")
    changed = FakeInverter(None, "garage")
    discoveries = [
        HomeAssistantDiscovery(inverter, publisher, Topics("octolux", inverter.name),
                               "homeassistant", subscribe=lambda *s: None, sweeper=sweeper)
        for inverter in (same, changed)
    ]
    sweeper.record_seen(_record("octolux_0123456789", "house"))
    sweeper.record_seen(_record("octolux_9876543210", "garage"))
    assert subscriptions == []
    same.serial = "0123456789"
    discoveries[0].inputs_received({1: {}})
    changed.serial = "1111111111"  # a new inverter behind the same section
    discoveries[1].inputs_received({1: {}})
    assert [s[0] for s in subscriptions] == ["homeassistant/+/octolux_9876543210/+/config"]


def test_unknown_dongles_keep_their_nodes_while_they_are_accepted(publisher, subscriptions):
    kept = _sweeper(publisher, subscriptions, keep_unknown=True)
    kept.record_seen(_record("octolux_0123456789", "BA12345678"))
    assert subscriptions == []
    swept = _sweeper(publisher, subscriptions)
    swept.record_seen(_record("octolux_0123456789", "BA12345678"))
    assert len(subscriptions) == 1


def test_a_swept_node_that_is_served_again_is_not_cleared(publisher, subscriptions):
    sweeper = _sweeper(publisher, subscriptions, keep_unknown=False)
    sweeper.record_seen(_record("octolux_0123456789", "BA12345678"))
    [(_, config_seen)] = subscriptions
    _served(sweeper, publisher, "0123456789", "BA12345678")  # it dialled in after all
    publisher.published.clear()
    config_seen(Message("homeassistant/sensor/octolux_0123456789/soc/config", OURS.encode(),
                        retained=True))
    assert publisher.published == []


# -- the bridge's connection topic ---------------------------------------------------------


def test_the_bridge_publishes_the_datalogger_connection_retained(publisher):
    inverter = FakeInverter()
    bridge = InverterBridge(inverter, publisher, Topics("octolux", "garage"))
    bridge.broker_connected()
    bridge.connection_changed(True)
    bridge.connection_changed(False)
    inverter.connected = True
    bridge.broker_connected()
    assert publisher.published == [
        ("octolux/garage/connection", "offline", 1, True),
        ("octolux/garage/connection", "online", 1, True),
        ("octolux/garage/connection", "offline", 1, True),
        ("octolux/garage/connection", "online", 1, True),
    ]


# -- config.ini ------------------------------------------------------------------------------

LXP = "[lxp]\nhost = 10.0.0.1\nserial = 0123456789\ndatalog = BA12345678\n"
MQTT = "[mqtt]\nuri = mqtt://127.0.0.1\n"


def test_an_original_config_has_discovery_off():
    assert parse_config(LXP + MQTT).homeassistant == HomeAssistantConfig(enabled=False)


def test_the_homeassistant_section():
    config = parse_config(LXP + "device_name = Home battery\n" + MQTT
                          + "[homeassistant]\nenabled = yes\nprefix = /ha/\n")
    assert config.homeassistant == HomeAssistantConfig(enabled=True, prefix="ha")
    assert config.inverters[0].device_name == "Home battery"
    assert parse_config(LXP + MQTT + "[homeassistant]\nenabled = on\n").homeassistant.prefix == (
        "homeassistant")


def test_discovery_without_mqtt_is_off_and_says_so():
    config = parse_config(LXP + "[homeassistant]\nenabled = yes\n")
    assert not config.homeassistant.enabled
    assert config.ignored == (
        "config.ini: [homeassistant] enabled: no [mqtt] uri, so no discovery",)


@pytest.mark.parametrize(("text", "message"), [
    (LXP + MQTT + "[homeassistant]\nenabled = maybe\n",
     "config.ini: [homeassistant] enabled: not yes/no: 'maybe'"),
    (LXP + MQTT + "[homeassistant]\nenabled = yes\nprefix = ha/#\n",
     "config.ini: [homeassistant] prefix: not a usable topic prefix: 'ha/#'"),
])
def test_homeassistant_mistakes_stop_start_up_with_one_line(text, message):
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert str(error.value) == message


# -- on a real broker -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connect_handlers_run_on_every_broker_connection(mosquitto):
    connected = []
    service = MqttService(MqttConfig(mosquitto.host, mosquitto.port), reactor=reactor,
                          status_topic="ha-handlers/status")
    service.add_connect_handler(lambda: connected.append(service.connected))
    probe = MqttProbe(mosquitto.host, mosquitto.port, ["ha-handlers/#"])
    try:
        await probe.ready(reactor)
        service.startService()
        await probe.until(reactor, lambda: connected, what="the first connection")
        await mosquitto.restarted(reactor)
        await probe.until(reactor, lambda: len(connected) == 2, timeout=20,
                          what="the reconnection")
        assert connected == [True, True]
    finally:
        await service.stopService().addTimeout(10, reactor)
        await probe.close(reactor)


# -- wiring ----------------------------------------------------------------------------------


def _subscriptions(text: str) -> tuple[str, ...]:
    from twisted.internet.testing import MemoryReactorClock

    from octolux.service.tap import build_service

    top = build_service(parse_config(text), reactor=MemoryReactorClock())
    mqtt = next(child for child in top if isinstance(child, MqttService))
    return mqtt._topic_filters


def test_discovery_is_wired_per_inverter_only_when_enabled():
    second = "[lxp garage]\nhost = 10.0.0.2\nserial = 9876543210\ndatalog = BA12345679\n"
    assert _subscriptions(LXP + second + MQTT) == ("octolux/+/cmd/#",)
    assert _subscriptions(LXP + second + MQTT + "[homeassistant]\nenabled = yes\n") == (
        "octolux/discovery/#",
        "octolux/+/cmd/#",
        "homeassistant/+/octolux_0123456789/+/config",
        "homeassistant/status",
        "homeassistant/+/octolux_9876543210/+/config",
    )


def test_every_entity_docs_predbat_md_gives_predbat_exists():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "predbat.md").read_text()
    named = set(re.findall(r"\b(\w+)\.octolux_(?:\{octolux_serial\}|<serial>)_(\w+)", doc))
    offered = {(entity.component, entity.key) for entity in inverter_entities(TOPICS)}
    assert len(named) == 24
    assert sorted(named - offered) == []
