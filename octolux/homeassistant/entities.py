"""The entity tables: what Home Assistant shows of one inverter, from the bridge's own tables.

Pure. Every entity is built from the input fields of ``octolux.lxp.inputs``,
the settings of ``octolux.device.settings`` and the topics of
``commands.Topics``, so that every entity reads a topic the bridge publishes
and every control writes the command topic a person would use: there is no
second way in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from octolux.device.commands import Topics
from octolux.device.settings import SETTINGS, Setting
from octolux.lxp import holding, inputs
from octolux.mqtt.client import OFFLINE, ONLINE

# -- sensors: what Home Assistant needs to know beyond the field table ---------------

# By unit: (device_class, state_class). Home Assistant checks that the unit
# fits the class, and that a state class only goes with numbers.
_SENSOR_CLASSES: dict[str, tuple[str | None, str]] = {
    "kWh": ("energy", "total_increasing"),  # the _day counters too: they reset at midnight
    "W": ("power", "measurement"),
    "VA": ("apparent_power", "measurement"),
    "V": ("voltage", "measurement"),
    "A": ("current", "measurement"),
    "mA": ("current", "measurement"),
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
# Units whose usual classes do not fit a key: a countdown is no running total.
_CLASSES_BY_KEY = {"quick_charge_remaining": ("duration", "measurement")}
_DEVICE_CLASS_BY_KEY = {"soc": "battery"}
# Of interest when something is wrong, not on a dashboard: Home Assistant
# files them under "Diagnostic". Temperatures and codes are added below.
_DIAGNOSTIC_KEYS = frozenset({
    "v_bus_1", "v_bus_2", "soh", "runtime", "max_chg_curr", "max_dischg_curr",
    "charge_volt_ref", "dischg_cut_volt", "max_cell_voltage", "min_cell_voltage",
    "max_cell_temp", "min_cell_temp", "bat_capacity", "bat_count", "bat_cycle_count",
    "v_bat_inv", "inverter_serial", "pf",
})
# A field of an optional part (a generator, split-phase legs, ...: its
# ``feature``) exists on some models only: its sensor starts disabled, to be
# enabled by whoever has such a model, instead of sitting "unknown" on the rest.
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
        device_class, state_class = _CLASSES_BY_KEY.get(field.key, _SENSOR_CLASSES[field.unit])
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
    if field.feature is not None:
        config["enabled_by_default"] = False
    return Entity("sensor", field.key, _NAMES.get(field.key, _name(field.description)), config)


def battery_energy_sensor(topics: Topics) -> Entity:
    """The battery's capacity in kWh (Predbat's ``soc_max``): its Ah times its voltage.

    The BMS reports amp-hours only. The voltage is the one the inverter
    measures (``v_bat_inv``, in the same JSON), as Predbat's own LuxPower
    guide does; it moves a few percent with the state of charge.
    """
    capacity = inputs.FIELDS_BY_KEY["bat_capacity"]  # v_bat_inv is in the same block
    return Entity("sensor", "bat_capacity_kwh", "Battery capacity (energy)", {
        "state_topic": topics.inputs(capacity.block),
        "value_template": (
            "{{ (value_json.bat_capacity * value_json.v_bat_inv / 1000) | round(2)"
            " if 'bat_capacity' in value_json and 'v_bat_inv' in value_json else '' }}"),
        "unit_of_measurement": "kWh",
        "device_class": "energy_storage",
        "state_class": "measurement",
        "entity_category": "diagnostic",
    })


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
_NUMBER_CLASSES = {"W": "power", "A": "current"}
TIME_SLOT_PATTERN = r"^\d\d:\d\d-\d\d:\d\d$"
# One end of a slot is a select (MQTT discovery has no time entity) of every
# minute of the day, as HH:MM:SS: the form Predbat writes with
# charge_time_entity_is_option. The register holds minutes, so any minute
# Predbat picks (its clock skew settings move a window by single minutes)
# must be an option.
TIME_OPTIONS = tuple(f"{hour:02}:{minute:02}:00" for hour in range(24) for minute in range(60))
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
    if setting.feature is not None:
        # On some models only: enabled by whoever has one, as the inputs of parts are.
        state["enabled_by_default"] = False
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
    if kind == "time":
        return Entity("select", setting.name, name, {
            **state, **writes, **category,
            # "None": no value yet, or registers that hold no time (an empty
            # string would be logged as an invalid option).
            "value_template": ("{{ value_json." + setting.name + " ~ ':00' if value_json.get('"
                               + setting.name + "') else 'None' }}"),
            "command_template": "{{ value[:5] }}",  # HH:MM, what cmd/<name> takes
            "options": list(TIME_OPTIONS),
        })
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


def plan_entities(topics: Topics) -> tuple[Entity, ...]:
    """The battery automation's plan (``plan``, with ``[octopus]``): this half-hour's
    price and action, the next charge, the planner's summary; and ``cmd/plan_pause``."""
    state = {"state_topic": topics.plan}
    return (
        Entity("sensor", "plan_price", "Electricity price now", {
            **state, "value_template": "{{ value_json.now.price if value_json.now else '' }}",
            "unit_of_measurement": "p/kWh", "state_class": "measurement",
        }),
        Entity("sensor", "plan_action", "Battery plan now", {
            **state, "value_template": "{{ value_json.now.action if value_json.now else '' }}",
        }),
        Entity("sensor", "plan_next_charge", "Next planned charge", {
            **state, "device_class": "timestamp",
            "value_template": "{{ value_json.next_charge or None }}",
        }),
        Entity("sensor", "plan_summary", "Battery plan", {
            **state, "value_template": "{{ value_json.summary[:250] }}",
            "entity_category": "diagnostic",
        }),
        Entity("button", "plan_pause", "Pause the battery plan until midnight", {
            "command_topic": topics.command("plan_pause"), "payload_press": "pause",
        }),
    )


def inverter_entities(topics: Topics, *, plan: bool = False) -> tuple[Entity, ...]:
    """Every entity the bridge offers for one inverter (``plan``: it runs the automation)."""
    return (
        *(sensor(field, topics) for field in inputs.FIELDS),
        battery_energy_sensor(topics),
        connection_sensor(topics),
        *(control(setting, topics) for setting in SETTINGS.values()),
        *buttons(topics),
        *(plan_entities(topics) if plan else ()),
    )
