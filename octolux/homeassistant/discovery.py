"""The discovery service: one inverter's retained configs kept current on the broker.

``tap.build_service`` wires a ``HomeAssistantDiscovery`` per inverter to MQTT,
with one ``OrphanSweeper`` (``octolux.homeassistant.sweeper``) for them all.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from octolux.device.commands import Topics
from octolux.homeassistant.payloads import (
    Device,
    config_topic,
    default_device_name,
    discovery_messages,
)
from octolux.homeassistant.sweeper import OrphanSweeper
from octolux.lxp import holding, models
from octolux.mqtt.client import ONLINE, Message

# The registers the device's firmware and model are read from.
_FIRMWARE_REGISTERS = frozenset((*models.FIRMWARE_CODE, *holding.FIRMWARE_VERSIONS,
                                  models.DEVICE_TYPE))


class HomeAssistantDiscovery:
    """Keeps one inverter's retained discovery configs on the broker current.

    Publishes them on every connection to the broker (``broker_connected``),
    whenever Home Assistant announces itself on ``<prefix>/status``
    (``home_assistant_status``) and when the inverter's firmware becomes
    known. A retained config under this inverter's node id that is no longer
    offered (an entity an older version had) is cleared (``config_seen``,
    subscribed with ``subscribe``); the configs of inverters no longer served
    at all are ``OrphanSweeper``'s. Also an inverter observer: an inverter
    whose serial is learned from its frames (server mode) has no device, and
    so no entities, until then.
    """

    log = Logger()

    def __init__(self, inverter, publisher, topics: Topics, prefix: str,
                 name: str | None = None, *, subscribe, sweeper: OrphanSweeper | None = None,
                 plan: bool = False):
        self.inverter = inverter
        self.plan = plan  # the battery automation runs for it: its plan entities too
        self.publisher = publisher
        self.topics = topics
        self.prefix = prefix
        self.name = name
        self.device: Device | None = None
        self._subscribe = subscribe
        self._sweeper = sweeper
        self._messages: dict[str, str] = {}
        if sweeper is not None:
            sweeper.add(self)
        self._identify()

    def _identify(self) -> bool:
        """Make the device once the serial is known; True if this call made it."""
        serial = self.inverter.serial
        if self.device is not None or serial is None:
            return False
        self.device = Device(serial, self.name or default_device_name(serial),
                             holding.firmware(self.inverter.registers),
                             models.model_name(self.inverter.registers))
        self._messages = discovery_messages(self.prefix, self.device, self.topics,
                                            plan=self.plan)
        self._subscribe(self.own_configs, self.config_seen)
        if self._sweeper is not None:
            self._sweeper.identified(self)
        return True

    @property
    def status_topic(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.prefix}/status"

    @property
    def own_configs(self) -> str:
        """The subscription filter matching every config topic of this inverter."""
        return config_topic(self.prefix, "+", self.device.node_id, "+")

    def publish_all(self) -> None:
        """Publish every config, retained (none before the serial is known)."""
        if self._sweeper is not None and self.device is not None:
            # The record first: configs on the broker without one could never be swept.
            self._sweeper.record(self)
        for topic, payload in self._messages.items():
            self.publisher.publish(topic, payload, qos=1, retain=True)

    def broker_connected(self) -> None:
        """A (re)connection: the broker may have lost what we retained."""
        self.publish_all()

    def home_assistant_status(self, message: Message) -> None:
        """Home Assistant (re)started: it may have forgotten every entity."""
        if message.payload == ONLINE.encode():
            self.publish_all()

    def config_seen(self, message: Message) -> None:
        """A retained config under our node id: clear it if it is not one we offer."""
        if message.retained and message.payload and message.topic not in self._messages:
            self.log.info("Home Assistant: clearing {topic}, an entity no longer offered",
                          topic=message.topic)
            self.publisher.publish(message.topic, b"", qos=1, retain=True)

    # -- InverterObserver ---------------------------------------------------------

    def registers_received(self, registers: dict[int, int]) -> None:
        """Republish when the firmware (and so the model) becomes known or changes.

        The values are read from the inverter's register store, which has them already.
        """
        if self._identify():
            self.publish_all()
            return
        if self.device is None or _FIRMWARE_REGISTERS.isdisjoint(registers):
            return
        store = self.inverter.registers
        known = attrs.evolve(self.device, sw_version=holding.firmware(store),
                             model=models.model_name(store))
        if known != self.device:
            self.device = known
            self._messages = discovery_messages(self.prefix, self.device, self.topics,
                                            plan=self.plan)
            self.publish_all()

    def inputs_received(self, blocks) -> None:
        """Publish the configs if this is how the inverter's serial became known."""
        if self._identify():
            self.publish_all()

    def connection_changed(self, connected: bool) -> None:
        """Publish the configs if the serial became known (the availability is the bridge's)."""
        if self._identify():
            self.publish_all()
