"""A Home Assistant device per battery module, linked to its inverter's device.

When an inverter reports a battery module (``battery/<serial>``) for the first
time, ``BatteryDiscovery`` publishes a retained config per value of it under
``<prefix>/sensor/octolux_battery_<serial>/<key>/config``: one device per
module (``via_device`` its inverter), keyed by the module's serial, as the
firmware rotates more than 4 modules through its slots. Only the values a
module reports have sensors (``octolux.lxp.batteries.FIELDS``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.logger import Logger

from octolux.device.commands import Topics
from octolux.homeassistant.entities import Entity, sensor
from octolux.homeassistant.payloads import MANUFACTURER, ORIGIN, config_topic
from octolux.lxp import batteries

# The firmware is published as one "major.minor" text, not its two bytes.
_FIRMWARE_PARTS = frozenset({"firmware_major", "firmware_minor"})


def node_id(serial: str) -> str:
    """The config topics' level of one module: its serial, in the characters HA allows."""
    return "octolux_battery_" + re.sub(r"[^a-z0-9_-]", "_", serial.lower())


def battery_entities(serial: str, topics: Topics) -> list[Entity]:
    """The sensors of one module, read from its ``battery/<serial>`` JSON."""
    entities = []
    for field in batteries.FIELDS:
        if field.key in _FIRMWARE_PARTS:
            continue
        entity = sensor(field, topics)
        config = {**entity.config, "state_topic": topics.battery(serial)}
        config.pop("enabled_by_default", None)
        if field.key in ("header", "serial") or field.key.endswith("_number"):
            config["entity_category"] = "diagnostic"
        entities.append(Entity("sensor", field.key, entity.name, config))
    entities.append(Entity("sensor", "firmware", "Firmware", {
        "state_topic": topics.battery(serial), "value_template": "{{ value_json.firmware }}",
        "entity_category": "diagnostic",
    }))
    return entities


def battery_messages(prefix: str, serial: str, inverter_node_id: str,
                     topics: Topics) -> dict[str, str]:
    """Config topic -> JSON payload for every sensor of one module."""
    node = node_id(serial)
    device = {
        "identifiers": [node],
        "manufacturer": MANUFACTURER,
        "name": f"Battery {serial}",
        "serial_number": serial,
        "via_device": inverter_node_id,
    }
    messages = {}
    for entity in battery_entities(serial, topics):
        unique_id = f"{node}_{entity.key}"
        messages[config_topic(prefix, entity.component, node, entity.key)] = json.dumps({
            "name": entity.name,
            "unique_id": unique_id,
            "object_id": unique_id,
            **entity.config,
            "availability": [{"topic": topics.status}, {"topic": topics.connection}],
            "availability_mode": "all",
            "device": device,
            "origin": ORIGIN,
        }, separators=(",", ":"))
    return messages


class BatteryDiscovery:
    """Publishes each battery module's device and sensors once, when first reported."""

    log = Logger()

    def __init__(self, inverter, publisher, topics: Topics, prefix: str):
        self.inverter = inverter  # for its serial: the modules' devices hang off its device
        self.publisher = publisher
        self.topics = topics
        self.prefix = prefix
        self.published: set[str] = set()

    def batteries_received(self, modules: dict[str, dict[str, Any]]) -> None:
        """A ``BatteryObserver``: configs for each module not published yet."""
        if self.inverter.serial is None:
            return
        inverter_node = f"octolux_{self.inverter.serial.lower()}"
        for serial in sorted(modules):
            if serial in self.published:
                continue
            self.published.add(serial)
            self.log.info("{name}: Home Assistant device for battery module {serial}",
                          name=self.inverter.name, serial=serial)
            for topic, payload in battery_messages(self.prefix, serial, inverter_node,
                                                   self.topics).items():
                self.publisher.publish(topic, payload, qos=1, retain=True)

    def broker_connected(self) -> None:
        """A new broker session: publish the modules seen again when they next report."""
        self.published.clear()
