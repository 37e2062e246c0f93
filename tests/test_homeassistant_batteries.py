"""A Home Assistant device per battery module, under its inverter's device."""

from __future__ import annotations

import json

from octolux.device.commands import Topics
from octolux.homeassistant.batteries import BatteryDiscovery, battery_messages, node_id
from octolux.lxp import batteries

TOPICS = Topics("octolux")


class FakePublisher:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))


class FakeInverter:
    name = "house"
    serial = "0123456789"


def test_a_module_has_a_sensor_per_value_it_reports_on_its_own_device():
    messages = battery_messages("homeassistant", "SIMBAT0001", "octolux_0123456789", TOPICS)
    configs = {topic: json.loads(payload) for topic, payload in messages.items()}
    keys = {topic.split("/")[3] for topic in configs}
    assert keys == ({field.key for field in batteries.FIELDS}
                    - {"firmware_major", "firmware_minor"}) | {"firmware"}
    soc = configs["homeassistant/sensor/octolux_battery_simbat0001/soc/config"]
    assert soc["state_topic"] == "octolux/battery/SIMBAT0001"
    assert soc["value_template"] == "{{ value_json.soc }}"
    assert soc["device_class"] == "battery" and soc["unit_of_measurement"] == "%"
    assert soc["device"]["via_device"] == "octolux_0123456789"
    assert soc["device"]["identifiers"] == ["octolux_battery_simbat0001"]
    assert len({config["unique_id"] for config in configs.values()}) == len(configs)


def test_a_serial_is_made_fit_for_a_topic_level():
    assert node_id("AB/12+3#X") == "octolux_battery_ab_12_3_x"


def test_each_module_is_published_once_until_the_broker_session_is_new():
    publisher = FakePublisher()
    discovery = BatteryDiscovery(FakeInverter(), publisher, TOPICS, "homeassistant")
    discovery.batteries_received({"A1": {}, "B2": {}})
    first = len(publisher.published)
    assert first == 2 * len(battery_messages("homeassistant", "A1", "x", TOPICS))
    assert all(retain and qos == 1 for _, _, qos, retain in publisher.published)
    discovery.batteries_received({"A1": {}, "B2": {}})
    assert len(publisher.published) == first
    discovery.broker_connected()
    discovery.batteries_received({"A1": {}})
    assert len(publisher.published) == first + first // 2
