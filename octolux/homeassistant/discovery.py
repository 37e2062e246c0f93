"""Home Assistant MQTT discovery: one device per inverter, an entity for every value and control.

The payloads are built here from the bridge's own tables (the input fields of
``octolux.lxp.inputs``, the settings of ``octolux.device.settings`` and the topics of
``commands.Topics``), so that every entity reads a topic the bridge publishes
and every control writes the command topic a person would use: there is no
second way in. This part is pure (``discovery_messages``).
``HomeAssistantDiscovery`` keeps the retained configs on the broker current;
``tap.build_service`` wires it to MQTT.

Each entity has its own retained config topic,
``<prefix>/<component>/octolux_<serial>/<key>/config``, a form every Home
Assistant release still in use reads. Entities are available while the
bridge is ``online`` and the inverter's datalogger is connected.

    python -m octolux.homeassistant.discovery --list > docs/homeassistant.md   # what appears
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.logger import Logger

from octolux import __version__
from octolux.device.commands import Topics
from octolux.device.settings import SETTINGS, Setting
from octolux.lxp import holding, inputs
from octolux.mqtt.client import OFFLINE, ONLINE, Message

MANUFACTURER = "LuxPower"
ORIGIN = {"name": "octolux", "sw_version": __version__}

# -- sensors: what Home Assistant needs to know beyond the field table ---------------

# By unit: (device_class, state_class). Home Assistant checks that the unit
# fits the class, and that a state class only goes with numbers.
_SENSOR_CLASSES: dict[str, tuple[str | None, str]] = {
    "kWh": ("energy", "total_increasing"),  # the _day counters too: they reset at midnight
    "W": ("power", "measurement"),
    "VA": ("apparent_power", "measurement"),
    "V": ("voltage", "measurement"),
    "A": ("current", "measurement"),
    "Hz": ("frequency", "measurement"),
    "°C": ("temperature", "measurement"),
    "s": ("duration", "total_increasing"),
    "%": (None, "measurement"),
    "Ah": (None, "measurement"),
}
# Fields without a unit that are quantities nonetheless; every other unitless
# field is a code (status, fault bits, BMS words) or text: no state class.
_UNITLESS_QUANTITIES: dict[str, tuple[str | None, str]] = {
    "pf": ("power_factor", "measurement"),
    "bat_count": (None, "measurement"),
    "bat_cycle_count": (None, "total_increasing"),
}
_DEVICE_CLASS_BY_KEY = {"soc": "battery"}
# Of interest when something is wrong, not on a dashboard: Home Assistant
# files them under "Diagnostic". Temperatures and codes are added below.
_DIAGNOSTIC_KEYS = frozenset({
    "v_bus_1", "v_bus_2", "soh", "runtime", "max_chg_curr", "max_dischg_curr",
    "charge_volt_ref", "dischg_cut_volt", "max_cell_voltage", "min_cell_voltage",
    "max_cell_temp", "min_cell_temp", "bat_capacity", "bat_count", "bat_cycle_count",
    "v_bat_inv", "inverter_serial", "pf",
})
# inputs/4 only exists on some models: its sensors start disabled, to be
# enabled by whoever has such a model, instead of sitting "unknown" on the rest.
_MODEL_SPECIFIC_BLOCKS = frozenset({4})
# Text that belongs on a dashboard, unlike the other unitless fields (codes).
_MAIN_TEXT_KEYS = frozenset({"status_text"})
# Lists of names (JSON arrays): shown as one line, "none" when empty.
_LIST_KINDS = frozenset({inputs.Kind.FAULT_NAMES, inputs.Kind.WARNING_NAMES})
# Names where the field's description, cut at its first colon or bracket, is not one.
_NAMES = {
    "status": "Status code",
    "status_text": "Status",
    "fault_codes": "Faults",
    "warning_codes": "Warnings",
}


@attrs.frozen
class Entity:
    """One Home Assistant entity of an inverter: its platform, its key and its own config."""

    component: str  # sensor, binary_sensor, ...
    key: str  # unique within the inverter: the input key or command name
    name: str
    config: Mapping[str, Any]  # the component's own keys: state_topic, device_class, ...
    # False: the availability is the bridge's status alone (the connection's own entity)
    needs_connection: bool = True


def _name(description: str) -> str:
    name = re.split(r"[:;(]", description, maxsplit=1)[0].strip().rstrip(",")
    return name[:1].upper() + name[1:]


def _value(key: str) -> str:
    return "{{ value_json." + key + " }}"


def _names(key: str) -> str:
    return "{{ value_json." + key + " | join(', ') or 'none' }}"


def sensor(field: inputs.InputField, topics: Topics) -> Entity:
    """The sensor of one input field: read from its ``inputs/<n>`` JSON."""
    config: dict[str, Any] = {
        "state_topic": topics.inputs(field.block),
        "value_template": _names(field.key) if field.kind in _LIST_KINDS else _value(field.key),
    }
    if field.unit:
        device_class, state_class = _SENSOR_CLASSES[field.unit]
        config["unit_of_measurement"] = field.unit
    else:
        device_class, state_class = _UNITLESS_QUANTITIES.get(field.key, (None, None))
    device_class = _DEVICE_CLASS_BY_KEY.get(field.key, device_class)
    if device_class is not None:
        config["device_class"] = device_class
    if state_class is not None:
        config["state_class"] = state_class
    code = not field.unit and state_class is None and field.key not in _MAIN_TEXT_KEYS
    if field.key in _DIAGNOSTIC_KEYS or field.unit == "°C" or code:
        config["entity_category"] = "diagnostic"
    if field.block in _MODEL_SPECIFIC_BLOCKS:
        config["enabled_by_default"] = False
    return Entity("sensor", field.key, _NAMES.get(field.key, _name(field.description)), config)


def connection_sensor(topics: Topics) -> Entity:
    """On while the bridge is connected to the inverter's datalogger."""
    return Entity("binary_sensor", "connection", "Datalogger connection", {
        "state_topic": topics.connection,
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
    }, needs_connection=False)


# -- controls: the settings table, read from ``settings``, written by ``cmd/<name>`` --------

# The controls of the founding spec's commands: on the dashboard. Every other
# setting is filed under "Configuration".
_PRIMARY_CONTROLS = frozenset({
    "ac_charge", "forced_discharge", "charge_priority",
    "charge_pct", "discharge_pct", "charge_amount_pct",
})
# Percentages that are a state of charge, not a power rate.
_SOC_REGISTERS = frozenset({
    holding.AC_CHARGE_SOC_LIMIT, holding.CHARGE_PRIORITY_SOC_LIMIT,
    holding.FORCED_DISCHARGE_SOC_LIMIT, holding.DISCHARGE_CUTOFF_SOC,
    holding.EPS_DISCHARGE_CUTOFF_SOC, holding.AC_CHARGE_START_SOC, holding.AC_CHARGE_END_SOC,
})
_NUMBER_CLASSES = {"W": "power"}
TIME_SLOT_PATTERN = r"^\d\d:\d\d-\d\d:\d\d$"
_SETTING_NAMES = {
    "eps": "EPS (backup output)",
    "normal_or_standby": "Inverter on (off: standby)",
    "feed_in_grid": "Export to the grid",
    "clock": "Inverter clock",
}
ON, OFF = "on", "off"
OFF = "no"  # what a switch sends; the bridge reads them as MQ.md's booleans


def _setting_value(name: str) -> str:
    """The setting from the ``settings`` JSON; empty (ignored) while it is not known."""
    return "{{ value_json." + name + " if '" + name + "' in value_json else '' }}"


def _setting_switch(name: str) -> str:
    return ("{{ ('" + ON + "' if value_json." + name + " else '" + OFF + "') if '" + name
            + "' in value_json else '' }}")


def control(setting: Setting, topics: Topics) -> Entity:
    """The entity of one setting: a switch, number or text that writes ``cmd/<name>``.

    Settings that are not commands (the grid-protection bits) and the clock
    are shown, read only.
    """
    name = _SETTING_NAMES.get(setting.name, _name(setting.description))
    state = {"state_topic": topics.settings}
    writes = {"command_topic": topics.command(setting.name)}
    category = {} if setting.name in _PRIMARY_CONTROLS else {"entity_category": "config"}
    kind = setting.kind
    if kind == "bit" and not setting.writable:
        return Entity("binary_sensor", setting.name, name, {
            **state, "value_template": _setting_switch(setting.name),
            "payload_on": ON, "payload_off": OFF, "entity_category": "diagnostic",
        })
    if kind == "clock":
        return Entity("sensor", setting.name, name, {
            **state, "value_template": _setting_value(setting.name),
            "entity_category": "diagnostic",
        })
    if kind == "bit":
        return Entity("switch", setting.name, name, {
            **state, **writes, **category, "value_template": _setting_switch(setting.name),
            "payload_on": ON, "payload_off": OFF,
        })
    if kind in ("percent", "number"):
        config = {
            **state, **writes, **category, "value_template": _setting_value(setting.name),
            "min": setting.minimum, "max": setting.maximum, "step": 1,
            "unit_of_measurement": setting.unit,
        }
        device_class = ("battery" if setting.registers[0] in _SOC_REGISTERS
                        else _NUMBER_CLASSES.get(setting.unit))
        if device_class is not None:
            config["device_class"] = device_class
        if kind == "number":
            config["mode"] = "box"  # a slider over -1000..1000 W is hard to hit
        return Entity("number", setting.name, name, config)
    # a time slot
    return Entity("text", setting.name, name, {
        **state, **writes, **category, "value_template": _setting_value(setting.name),
        "pattern": TIME_SLOT_PATTERN, "min": 11, "max": 11,
    })


def buttons(topics: Topics) -> tuple[Entity, ...]:
    """Set the inverter's clock now; read every register again."""
    return (
        Entity("button", "sync_time", "Set the clock to now", {
            "command_topic": topics.command("sync_time"), "payload_press": "now",
            "entity_category": "config",
        }),
        Entity("button", "refresh", "Read all registers again", {
            "command_topic": topics.command("refresh"), "payload_press": "refresh",
            "entity_category": "diagnostic",
        }),
    )


def inverter_entities(topics: Topics) -> tuple[Entity, ...]:
    """Every entity the bridge offers for one inverter."""
    return (
        *(sensor(field, topics) for field in inputs.FIELDS),
        connection_sensor(topics),
        *(control(setting, topics) for setting in SETTINGS.values()),
        *buttons(topics),
    )



# -- the device -------------------------------------------------------------------

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


def discovery_messages(prefix: str, device: Device, topics: Topics) -> dict[str, str]:
    """Config topic -> JSON payload, for every entity of one inverter."""
    return {
        config_topic(prefix, entity.component, device.node_id, entity.key):
            json.dumps(discovery_config(entity, device, topics), separators=(",", ":"))
        for entity in inverter_entities(topics)
    }


# -- keeping them on the broker ------------------------------------------------------


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
                 name: str | None = None, *, subscribe, sweeper: OrphanSweeper | None = None):
        self.inverter = inverter
        self.publisher = publisher
        self.topics = topics
        self.prefix = prefix
        self.name = name
        self.device: Device | None = None
        self._subscribe = subscribe
        self._sweeper = sweeper
        self._registers: dict[int, int] = {}
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
                             holding.firmware(self._registers), holding.model(self._registers))
        self._messages = discovery_messages(self.prefix, self.device, self.topics)
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
        """Republish when the firmware (and so the model) becomes known or changes."""
        firmware_registers = {
            register: value for register, value in registers.items()
            if register in holding.FIRMWARE_CODE + holding.FIRMWARE_VERSIONS
        }
        self._registers.update(firmware_registers)
        if self._identify():
            self.publish_all()
            return
        if not firmware_registers or self.device is None:
            return
        known = attrs.evolve(self.device, sw_version=holding.firmware(self._registers),
                             model=holding.model(self._registers))
        if known != self.device:
            self.device = known
            self._messages = discovery_messages(self.prefix, self.device, self.topics)
            self.publish_all()

    def inputs_received(self, blocks) -> None:
        """Publish the configs if this is how the inverter's serial became known."""
        if self._identify():
            self.publish_all()

    def connection_changed(self, connected: bool) -> None:
        """Publish the configs if the serial became known (the availability is the bridge's)."""
        if self._identify():
            self.publish_all()


# -- inverters no longer served: their configs cleared ------------------------------------


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


# -- the list for the docs -----------------------------------------------------------------


_INTRODUCTION = """\
# Home Assistant entities

Generated by `python -m octolux.homeassistant.discovery --list` from the same tables as
[mqtt.md](mqtt.md); do not edit by hand. With `[homeassistant] enabled = yes`,
each inverter is one device in Home Assistant with these entities. Entity ids
are `<component>.octolux_<serial>_<key>` (the serial in lower case); topics are
shown with the default prefix `octolux` and one inverter. A sensor, switch,
number or text reads the key shown from its topic; a control writes the
command topic shown, the same command a person would publish. Every entity is
available while `octolux/status` and `octolux/connection` are both `online`
(the connection's own binary sensor needs only the first).
"""


def _counts() -> str:
    counts: dict[str, int] = {}
    for entity in inverter_entities(Topics()):
        counts[entity.component] = counts.get(entity.component, 0) + 1
    return ", ".join(f"{count} {component}" for component, count in counts.items())


def entity_table(topics: Topics | None = None) -> list[str]:
    """A Markdown table of every entity of one inverter and the topics behind it."""
    topics = topics or Topics()
    rows = ["| entity | name | reads | writes | kind |", "|---|---|---|---|---|"]
    for entity in inverter_entities(topics):
        config = entity.config
        reads = ""
        if "state_topic" in config:
            key = re.search(r"value_json\.(\w+)", config.get("value_template", ""))
            reads = f"`{config['state_topic']}`" + (f" `{key.group(1)}`" if key else "")
        writes = f"`{config['command_topic']}`" if "command_topic" in config else ""
        details = [str(config[key]) for key in ("device_class", "state_class",
                                                "unit_of_measurement", "entity_category")
                   if config.get(key)]
        if "min" in config and entity.component == "number":
            details.append(f"{config['min']} to {config['max']}")
        if "pattern" in config:
            details.append("HH:MM-HH:MM")
        if config.get("enabled_by_default") is False:
            details.append("disabled by default")
        rows.append(f"| `{entity.component}.octolux_<serial>_{entity.key}` | {entity.name} "
                    f"| {reads} | {writes} | {', '.join(details)} |")
    return rows


def render() -> str:
    """docs/homeassistant.md."""
    return "\n".join([_INTRODUCTION, f"Per inverter: {_counts()}.", "", *entity_table(), ""])


def main(argv: list[str]) -> int:
    """``python -m octolux.homeassistant.discovery --list``: print docs/homeassistant.md."""
    if argv != ["--list"]:
        print("usage: python -m octolux.homeassistant.discovery --list", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
