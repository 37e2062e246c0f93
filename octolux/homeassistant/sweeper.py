"""The orphan sweeper: the retained configs of inverters this bridge no longer serves, cleared."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs
from twisted.logger import Logger

from octolux.device.commands import Topics
from octolux.homeassistant.payloads import config_topic
from octolux.mqtt.client import Message

if TYPE_CHECKING:  # the sweeper only reads what discovery hands it
    from octolux.homeassistant.discovery import HomeAssistantDiscovery


@attrs.frozen
class DiscoveryRecord:
    """That a bridge published configs for one node id under one discovery prefix."""

    prefix: str  # the discovery prefix
    node_id: str
    inverter: str  # the inverter's name (its config.ini section) when it was published

    def payload(self) -> str:
        """The retained JSON of the record."""
        return json.dumps(attrs.asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, payload: bytes) -> DiscoveryRecord | None:
        """The record in a retained payload; None for anything else."""
        try:
            fields = json.loads(payload)
            record = cls(fields["prefix"], fields["node_id"], fields["inverter"])
        except (ValueError, TypeError, KeyError):
            return None
        if not all(isinstance(value, str) and value for value in attrs.astuple(record)):
            return None
        return record


RECORDS = "discovery"  # the level of a bridge's topics under which it keeps its records


def record_topic(mqtt_prefix: str, prefix: str, node_id: str) -> str:
    """``<mqtt prefix>/discovery/<discovery prefix>/<node id>``: one node's record."""
    return f"{mqtt_prefix}/{RECORDS}/{prefix}/{node_id}"


def _availability_topics(payload: bytes) -> set[str]:
    """The availability topics of a discovery config; empty if it is not one."""
    try:
        config = json.loads(payload)
        return {entry["topic"] for entry in config.get("availability", ())}
    except (ValueError, TypeError, KeyError, AttributeError):
        return set()


class OrphanSweeper:
    """Clears the retained configs of the inverters this bridge no longer serves.

    Retained configs outlive the bridge that published them: remove an
    inverter from config.ini, change its serial or the discovery prefix, and
    Home Assistant would keep a device that nobody updates. So each node id
    the bridge publishes configs for is recorded, retained, under the bridge's
    own MQTT prefix (``record_topic``): another bridge, with its own prefix,
    has its own records, and other software none. The broker replays the
    records on every connection, one small message per inverter ever served;
    a record of a node no longer offered is swept: one subscription to that
    node's config topics, which replays at most its own entities and then
    stays silent (nobody publishes there any more), and each retained config
    there whose availability is this bridge's status topic is cleared. Home
    Assistant removes an entity whose config is cleared, and a device with no
    entity left. Nothing scans the whole discovery prefix, where 10,000
    inverters would be 1.5 million configs.

    An inverter whose serial is not known yet (server mode, no serial in
    config.ini) keeps its recorded node until the serial is learned; with
    ``keep_unknown`` (``[listener] accept_unknown``) the nodes of dongles no
    section names are kept, since they may dial in again.
    """

    log = Logger()

    def __init__(self, publisher, subscribe, topics: Topics, prefix: str, *,
                 keep_unknown: bool = False):
        self.publisher = publisher
        self._subscribe = subscribe
        self.topics = topics  # the bridge's: its status topic is every config's availability
        self.prefix = prefix
        self.keep_unknown = keep_unknown
        self._inverters: set[str] = set()  # names of the inverters with discovery
        self._offered: set[str] = set()  # node ids with a device, under self.prefix
        self._node_of: dict[str, str] = {}  # inverter name -> its node id, once its serial is known
        self._waiting: dict[str, list[DiscoveryRecord]] = {}  # inverter name -> its records
        self._swept: set[tuple[str, str]] = set()  # (prefix, node id) subscribed for sweeping

    def record_topic(self, prefix: str, node_id: str) -> str:
        """Where this bridge records ``node_id`` under discovery prefix ``prefix``."""
        return record_topic(self.topics.prefix, prefix, node_id)

    @property
    def records(self) -> str:
        """The subscription filter matching every record of this bridge."""
        return f"{self.topics.prefix}/{RECORDS}/#"

    def add(self, discovery: HomeAssistantDiscovery) -> None:
        """An inverter with discovery (before or after it has a serial)."""
        self._inverters.add(discovery.inverter.name)

    def identified(self, discovery: HomeAssistantDiscovery) -> None:
        """``discovery``'s device is made: its node is offered, its name's old nodes are not."""
        node_id = discovery.device.node_id
        self._offered.add(node_id)
        self._node_of[discovery.inverter.name] = node_id
        for record in self._waiting.pop(discovery.inverter.name, []):
            self._judge(record)

    def record(self, discovery: HomeAssistantDiscovery) -> None:
        """Record, retained, that ``discovery``'s configs are about to be published."""
        record = DiscoveryRecord(self.prefix, discovery.device.node_id, discovery.inverter.name)
        self.publisher.publish(self.record_topic(record.prefix, record.node_id),
                               record.payload(), qos=1, retain=True)

    def record_seen(self, message: Message) -> None:
        """A record replayed by the broker: sweep its node if no inverter offers it now."""
        if not (message.retained and message.payload):
            return  # our own records coming back live, or cleared ones
        record = DiscoveryRecord.parse(message.payload)
        if record is None or message.topic != self.record_topic(record.prefix, record.node_id):
            return  # not a record (an inverter named "discovery" has topics here)
        self._judge(record)

    def _judge(self, record: DiscoveryRecord) -> None:
        if self._offers(record.prefix, record.node_id):
            return
        if record.inverter in self._inverters and record.inverter not in self._node_of:
            # Its serial is not known yet: it may still turn out to be this node.
            self._waiting.setdefault(record.inverter, []).append(record)
            return
        if record.inverter not in self._inverters and self.keep_unknown:
            return  # a dongle no section names, which may dial in again
        self._sweep(record)

    def _offers(self, prefix: str, node_id: str) -> bool:
        return prefix == self.prefix and node_id in self._offered

    def _sweep(self, record: DiscoveryRecord) -> None:
        key = (record.prefix, record.node_id)
        if key in self._swept:
            return
        self._swept.add(key)
        self.log.info("Home Assistant: clearing the entities of {node} under {prefix}/,"
                      " no longer served", node=record.node_id, prefix=record.prefix)
        self._subscribe(config_topic(record.prefix, "+", record.node_id, "+"),
                        lambda message: self._orphan_config_seen(record, message))
        self.publisher.publish(self.record_topic(record.prefix, record.node_id), b"",
                               qos=1, retain=True)

    def _orphan_config_seen(self, record: DiscoveryRecord, message: Message) -> None:
        """A retained config of a swept node: cleared if this bridge published it."""
        if not (message.retained and message.payload):
            return
        if self._offers(record.prefix, record.node_id):
            return  # its inverter came back since (a dongle dialling in)
        if self.topics.status not in _availability_topics(message.payload):
            return  # another bridge's, or other software's
        self.publisher.publish(message.topic, b"", qos=1, retain=True)
