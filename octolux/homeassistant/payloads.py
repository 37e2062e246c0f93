"""The discovery payloads of one inverter: its device, and a retained config per entity.

Pure (``discovery_messages``). Each entity has its own retained config topic,
``<prefix>/<component>/octolux_<serial>/<key>/config``, a form every Home
Assistant release still in use reads. Entities are available while the
bridge is ``online`` and the inverter's datalogger is connected.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from octolux import __version__
from octolux.device.commands import Topics
from octolux.homeassistant.entities import Entity, inverter_entities

MANUFACTURER = "LuxPower"
ORIGIN = {"name": "octolux", "sw_version": __version__}


@attrs.frozen
class Device:
    """The Home Assistant device of one inverter."""

    serial: str  # the inverter's serial: its identity
    name: str
    sw_version: str | None = None
    model: str | None = None

    @property
    def node_id(self) -> str:
        """The level of the config topics that holds this inverter's entities."""
        return f"octolux_{self.serial.lower()}"

    def payload(self) -> dict[str, Any]:
        """The ``device`` object of every config."""
        device = {
            "identifiers": [self.node_id],
            "manufacturer": MANUFACTURER,
            "name": self.name,
            "serial_number": self.serial,
        }
        if self.sw_version is not None:
            device["sw_version"] = self.sw_version
        if self.model is not None:
            device["model"] = self.model
        return device


def default_device_name(serial: str) -> str:
    """The device name when the configuration gives none."""
    return f"{MANUFACTURER} {serial}"


def config_topic(prefix: str, component: str, node_id: str, key: str) -> str:
    """``<prefix>/<component>/<node_id>/<key>/config``."""
    return f"{prefix}/{component}/{node_id}/{key}/config"


def discovery_config(entity: Entity, device: Device, topics: Topics) -> dict[str, Any]:
    """The full discovery payload of one entity."""
    unique_id = f"{device.node_id}_{entity.key}"
    availability = [{"topic": topics.status}]
    if entity.needs_connection:
        availability.append({"topic": topics.connection})
    return {
        "name": entity.name,
        "unique_id": unique_id,
        # The entity id Home Assistant gives it: sensor.octolux_<serial>_<key>.
        "object_id": unique_id,
        **entity.config,
        "availability": availability,
        "availability_mode": "all",
        "device": device.payload(),
        "origin": ORIGIN,
    }


def discovery_messages(prefix: str, device: Device, topics: Topics, *,
                       plan: bool = False) -> dict[str, str]:
    """Config topic -> JSON payload, for every entity of one inverter (``plan``: with the
    battery automation's)."""
    return {
        config_topic(prefix, entity.component, device.node_id, entity.key):
            json.dumps(discovery_config(entity, device, topics), separators=(",", ":"))
        for entity in inverter_entities(topics, plan=plan)
    }
