"""The bridge between one inverter and MQTT.

``InverterBridge`` observes an ``Inverter``: every input block and every
holding register value it reports goes out on ``inputs/<n>`` and
``hold/<register>`` (retained), whoever asked for it, ``settings``
(retained) whenever a register it is decoded from changes, and whether its
datalogger is connected on ``connection`` (retained). It hands the
``cmd/<name>`` messages to the inverter's ``CommandRunner`` and publishes
every result the runner reports on ``result/<name>`` (``OK`` or ``FAIL``),
the page's commands' too: exactly one per command.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from octolux.device.commands import Topics, describe_payload
from octolux.device.runner import CommandResult, CommandRunner
from octolux.device.settings import SETTING_REGISTERS, decode_settings
from octolux.mqtt.client import OFFLINE, ONLINE, Message


class Publisher(Protocol):
    """Where the bridge publishes (``MqttService`` in production)."""

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 0, retain: bool = False,
                coalesce: bool = False, batch: bool = False):
        """Send one message; with ``coalesce``, a newer one for its topic may replace it unsent;
        with ``batch``, it may wait a moment to go with others."""


# Built once: json.dumps with any option builds a new encoder per call, and
# this runs for every input message (30,000 a minute with 10,000 dongles).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def to_json(values: dict[str, Any]) -> str:
    """A JSON object as MQ.md shows it: compact, keys in their table order."""
    return _COMPACT_JSON.encode(values)


_LAST_SETTING_REGISTER = max(SETTING_REGISTERS)


def _digest(text: str) -> bytes:
    """16 bytes that tell one settings JSON from another (a collision is a 2**-128 chance)."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class InverterBridge:
    """Publishes what one inverter reports, runs the commands sent to it, publishes results.

    Wire it with ``inverter.add_observer(bridge)`` and
    ``mqtt.subscribe(topics.commands, bridge.command_received)`` (or a
    ``CommandRouter``). ``runner`` is the inverter's ``CommandRunner``, shared
    with whatever else sends commands (the page); by default one of its own.
    """

    log = Logger()

    def __init__(self, inverter, publisher: Publisher, topics: Topics,
                 runner: CommandRunner | None = None):
        self.inverter = inverter
        self.publisher = publisher
        self.topics = topics
        self.runner = CommandRunner(inverter) if runner is None else runner
        self.runner.listeners.append(self.result_received)
        # A digest of the settings JSON last published, not the JSON (1.8 KB an
        # inverter, 18 MB for 10,000): what it says is in the register store.
        self._settings_digest: bytes | None = None

    # -- InverterObserver: the inverter reported something --------------------

    def inputs_received(self, blocks: dict[int, dict[str, Any]]) -> None:
        """Publish each input block on ``inputs/<n>``.

        QoS 1, as the original tool did: a short broker outage delays them
        rather than losing them (paho's queue of them is bounded).
        """
        for block, values in sorted(blocks.items()):
            self.publisher.publish(self.topics.inputs(block), to_json(values), qos=1, batch=True)

    def batteries_received(self, modules: dict[str, dict[str, Any]]) -> None:
        """Publish each battery module on ``battery/<serial>``, retained, QoS 1."""
        for serial, values in sorted(modules.items()):
            self.publisher.publish(self.topics.battery(serial), to_json(values), qos=1,
                                   retain=True)

    def registers_received(self, registers: dict[int, int]) -> None:
        """Publish each register value on ``hold/<register>``, and ``settings`` if it changed.

        Both retained, so that a client subscribing later gets the current
        values at once. ``hold/`` with QoS 0: 240 of them come at every
        connection, and QoS 1 ones would fill paho's bounded queue (which the
        inputs need) on a bridge with several inverters; ``settings``, one
        message that sums them up, with QoS 1, first once every register it
        is read from is known (see ``_settings_due``).
        """
        self._publish_holds(registers)
        if self._settings_due(registers):
            # The inverter's register store has them already: one store, read by everyone.
            settings = to_json(decode_settings(self.inverter.registers))
            digest = _digest(settings)
            if digest != self._settings_digest:
                self._settings_digest = digest
                self._publish_settings(settings)

    def _settings_due(self, registers: dict[int, int]) -> bool:
        """Whether ``settings`` may have changed and is complete enough to publish.

        The read on connecting brings the setting registers in five blocks:
        ``settings`` waits for the last of them rather than going out five
        times, partly. A model without some of them: once a read has passed
        the last setting register.
        """
        if self._settings_digest is not None:  # published: now on every change
            return not SETTING_REGISTERS.isdisjoint(registers)
        if registers and max(registers) > _LAST_SETTING_REGISTER:
            return True
        store = self.inverter.registers
        return all(register in store for register in SETTING_REGISTERS)

    def _publish_holds(self, registers: dict[int, int]) -> None:
        for register, value in sorted(registers.items()):
            self.publisher.publish(self.topics.hold(register), str(value), retain=True,
                                   coalesce=True)

    def _publish_settings(self, settings: str) -> None:
        self.publisher.publish(self.topics.settings, settings, qos=1, retain=True,
                               coalesce=True)

    def connection_changed(self, connected: bool) -> None:
        """Publish ``connection``: ``online`` or ``offline``, retained."""
        self._publish_connection(connected)

    def broker_connected(self) -> None:
        """Publish the retained state again on every broker connection.

        ``connection``: a bridge that died while connected left ``online``
        retained; the will covers the bridge's ``status``, not this. ``hold/*``
        and ``settings``: a broker without persistence forgets retained
        messages when it restarts, and the inverter may not report a register
        again for days, so a client subscribing after the restart would wait
        that long for the state. (On the first connection nothing is known yet.)
        """
        self._publish_connection(self.inverter.connected)
        self._publish_holds(self.inverter.registers)
        if self._settings_digest is not None:
            self._publish_settings(to_json(decode_settings(self.inverter.registers)))

    def _publish_connection(self, connected: bool) -> None:
        self.publisher.publish(
            self.topics.connection, ONLINE if connected else OFFLINE, qos=1, retain=True
        )

    # -- commands ---------------------------------------------------------------

    def command_received(self, message: Message) -> Deferred[str | None]:
        """Run one ``cmd/<name>`` message; fires with the result published (OK or FAIL).

        Fires with None, publishing nothing, for a topic that is not a command,
        a zero-length message and a retained command (see below).
        """
        name = self.topics.command_name(message.topic)
        if name is None:
            return succeed(None)
        if not message.payload:
            # How a retained message is deleted (as the warning below suggests).
            # The broker forwards the deletion to subscribers, and MQTT 3.1.1
            # clears its retain flag on the way: no payload is no command.
            self.log.debug("{topic}: empty message ignored", topic=message.topic)
            return succeed(None)
        if message.retained:
            # A retained command would run again on every reconnect to the
            # broker; a command is meant to run once, when it is sent.
            self.log.warn(
                "{topic} {payload}: ignored, a retained command (clear it with an empty"
                " retained message)",
                topic=message.topic,
                payload=describe_payload(message.payload),
            )
            return succeed(None)
        running = self.runner.run(name, message.payload, source=message.topic)
        return running.addCallback(lambda outcome: outcome.result)

    def result_received(self, outcome: CommandResult) -> None:
        """Publish a command's result on ``result/<name>``, wherever the command came from."""
        self.publisher.publish(self.topics.result(outcome.command), outcome.result, qos=1)


class CommandRouter:
    """Every inverter's commands through one subscription, each message to its bridge by a dict.

    One filter covers all inverters with named topics (``<prefix>/+/cmd/...``),
    and one the inverter without (``<prefix>/cmd/...``), if there is one: a
    broker reconnect sends one SUBSCRIBE, and a message costs the same with 1
    or 10,000 inverters.
    """

    def __init__(self, subscribe, prefix: str):
        """``subscribe(topic_filter, handler)``: ``MqttService.subscribe`` in production."""
        self._subscribe = subscribe
        self._prefix = prefix
        self._named: dict[str, InverterBridge] = {}  # by Topics.inverter

    def add(self, bridge: InverterBridge) -> None:
        """Send ``bridge`` the commands on its topics from now on."""
        name = bridge.topics.inverter
        if name is None:
            self._subscribe(bridge.topics.commands, bridge.command_received)
            return
        if not self._named:
            self._subscribe(Topics(self._prefix, "+").commands, self.command_received)
        self._named[name] = bridge

    def command_received(self, message: Message) -> Deferred[str | None]:
        """Hand ``message`` to the named inverter's bridge (fires with its result)."""
        # <prefix>/<name>/cmd/..., as Topics.base builds it.
        name = message.topic[len(self._prefix) + 1:].partition("/")[0]
        bridge = self._named.get(name)
        if bridge is None:
            return succeed(None)
        return bridge.command_received(message)
