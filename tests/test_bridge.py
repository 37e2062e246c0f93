"""InverterBridge: what the inverter reports goes out on MQTT; commands get exactly one result.

The inverter here is a small fake of the ``Inverter`` interface (a collaborator,
not the thing under test); the end-to-end tests use the real one.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.logger import LogLevel, capturedLogs, formatEvent

from octolux.device.commands import Topics
from octolux.device.inverter import CommandFailed
from octolux.device.registers import RegisterValues
from octolux.device.settings import SETTING_REGISTERS
from octolux.lxp.inputs import BLOCK_KEYS
from octolux.mqtt.bridge import CommandRouter, InverterBridge
from octolux.mqtt.client import Message


class FakeInverter:
    """Answers nothing by itself: each request's Deferred is kept for the test to fire.

    Keeps a register store as the real one does, and reports what arrives in
    it (``receive``) to its observers.
    """

    name = "inverter"

    def __init__(self):
        self.requests: list[tuple] = []
        self.pending: list[Deferred] = []
        self.registers = RegisterValues()
        self.observers: list = []

    def add_observer(self, observer) -> None:
        self.observers.append(observer)

    def receive(self, registers: dict[int, int]) -> None:
        """Register values arrived: into the store, then to the observers."""
        self.registers.update(registers)
        for observer in self.observers:
            observer.registers_received(registers)

    def _request(self, *call) -> Deferred:
        self.requests.append(call)
        d = Deferred()
        self.pending.append(d)
        return d

    def read_hold(self, register, count=1):
        return self._request("read_hold", register, count)

    def read_input(self, register, count=40):
        return self._request("read_input", register, count)

    def write_single(self, register, value):
        return self._request("write_single", register, value)

    def set_bit(self, register, bit, on):
        return self._request("set_bit", register, bit, on)


class FakePublisher:
    def __init__(self):
        self.published: list[tuple[str, str, int, bool]] = []

    def publish(self, topic, payload, *, qos=0, retain=False, coalesce=False, batch=False):
        self.published.append((topic, payload, qos, retain))

    def messages(self) -> list[tuple[str, str]]:
        return [(topic, payload) for topic, payload, _, _ in self.published]


@pytest.fixture
def inverter():
    return FakeInverter()


@pytest.fixture
def publisher():
    return FakePublisher()


@pytest.fixture
def bridge(inverter, publisher):
    bridge = InverterBridge(inverter, publisher, Topics())
    inverter.add_observer(bridge)
    return bridge


def command(name: str, payload: bytes, *, retained: bool = False) -> Message:
    return Message(f"octolux/cmd/{name}", payload, retained)


def test_each_input_block_is_published_as_compact_json(bridge, publisher):
    blocks = {
        2: {"e_pv_all": 1675.6, "t_inner": 43},
        1: {"status": 32, "v_bat": 49.4, "e_eps_day": 0.0},
    }
    bridge.inputs_received(blocks)
    assert publisher.messages() == [
        ("octolux/inputs/1", '{"status":32,"v_bat":49.4,"e_eps_day":0.0}'),
        ("octolux/inputs/2", '{"e_pv_all":1675.6,"t_inner":43}'),
    ]
    # QoS 1 (a short broker outage delays them, as in the original tool), not retained.
    assert {(qos, retain) for _, _, qos, retain in publisher.published} == {(1, False)}


def test_input_keys_keep_their_table_order(bridge, publisher):
    values = {key: 0 for key in BLOCK_KEYS[3]}
    bridge.inputs_received({3: values})
    ((topic, payload),) = publisher.messages()
    assert list(json.loads(payload)) == list(BLOCK_KEYS[3])


def test_every_register_value_is_published_retained(bridge, inverter, publisher):
    inverter.receive({65: 50, 21: 0x80, 64: 100, 200: 7})
    holds = [(topic, payload, qos, retain) for topic, payload, qos, retain in publisher.published
             if "/hold/" in topic]
    assert holds == [
        ("octolux/hold/21", "128", 0, True),
        ("octolux/hold/64", "100", 0, True),
        ("octolux/hold/65", "50", 0, True),
        ("octolux/hold/200", "7", 0, True),
    ]


def settings_published(publisher) -> list[dict]:
    return [json.loads(payload) for topic, payload, qos, retain in publisher.published
            if topic == "octolux/settings" and qos == 1 and retain]


def read_on_connecting(inverter, values: dict[int, int], *, refused=()) -> None:
    """The six 40-register blocks read on connecting, ``values`` or 0; ``refused`` blocks none."""
    for first in range(0, 240, 40):
        if first not in refused:
            inverter.receive({r: values.get(r, 0) for r in range(first, first + 40)})


def test_settings_are_published_retained_once_its_registers_are_read(bridge, inverter, publisher):
    # Five of the six blocks hold setting registers: one settings message, not five.
    read_on_connecting(inverter, {21: 0x80 | 1 << 15, 64: 30, 65: 40, 68: 0x1E01, 69: 0x0005})
    (settings,) = settings_published(publisher)
    assert settings["ac_charge"] is True and settings["feed_in_grid"] is True
    assert settings["eps"] is False and settings["charge_pct"] == 30
    assert settings["ac_charge_slot_1"] == "01:30-05:00"
    assert settings["discharge_pct"] == 40
    assert publisher.published[-1][0] == "octolux/settings"  # with the block of the last


def test_a_model_without_some_setting_registers_gets_its_settings_after_the_read(
    bridge, inverter, publisher
):
    read_on_connecting(inverter, {64: 30}, refused=(120,))  # register 125 refused
    (settings,) = settings_published(publisher)
    assert settings["charge_pct"] == 30
    assert publisher.published[-1][0] == "octolux/settings"  # at the block past them all


def test_settings_are_republished_only_when_they_change(bridge, inverter, publisher):
    inverter.receive({64: 30})  # not all known yet: nothing
    inverter.receive({register: 0 for register in SETTING_REGISTERS} | {64: 30})
    inverter.receive({64: 30})  # same value again (a re-read)
    inverter.receive({200: 5})  # not a register any setting is read from
    inverter.receive({64: 31})  # changed, whoever changed it
    assert [s["charge_pct"] for s in settings_published(publisher)] == [30, 31]


def test_a_broker_connection_gets_the_retained_state_again(bridge, inverter, publisher):
    # A broker without persistence forgets retained messages when it restarts.
    inverter.connected = True
    bridge.broker_connected()  # the first connection: nothing known but the link
    assert publisher.messages() == [("octolux/connection", "online")]
    inverter.receive({register: 0 for register in SETTING_REGISTERS} | {21: 0x80, 65: 50})
    publisher.published.clear()
    bridge.broker_connected()
    assert publisher.published == [
        ("octolux/connection", "online", 1, True),
        *((f"octolux/hold/{register}", str(inverter.registers[register]), 0, True)
          for register in sorted(SETTING_REGISTERS)),
        ("octolux/settings", publisher.published[-1][1], 1, True),
    ]
    assert settings_published(publisher)[-1]["discharge_pct"] == 50


def test_discharge_pct_writes_register_65_and_reports_ok(bridge, inverter, publisher):
    with capturedLogs() as events:
        running = bridge.command_received(command("discharge_pct", b"50"))
        assert inverter.requests == [("write_single", 65, 50)]
        assert publisher.published == []  # nothing until the inverter answers
        inverter.pending[0].callback(50)
    assert publisher.published == [("octolux/result/discharge_pct", "OK", 1, False)]
    assert running.result == "OK"
    assert "octolux/cmd/discharge_pct '50' -> OK" in [formatEvent(e) for e in events]


def test_ac_charge_sets_bit_7_of_register_21(bridge, inverter, publisher):
    bridge.command_received(command("ac_charge", b"on"))
    assert inverter.requests == [("set_bit", 21, 7, True)]
    inverter.pending[0].callback(0x80)
    assert publisher.messages() == [("octolux/result/ac_charge", "OK")]


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("discharge_pct", b"150"),
        ("discharge_pct", b"abc"),
        ("discharge_pct", b"  "),
        ("charge_pct", b"-1"),
        ("charge_amount_pct", b"50.5"),
        ("ac_charge", b"\n"),
        ("ac_charge", b"\xff\xfe\x00"),
        ("forced_discharge", b"\x00"),
        ("read_hold", b"x"),
        ("read_input", b"9"),
    ],
)
def test_a_bad_payload_fails_without_reaching_the_inverter(
    bridge, inverter, publisher, name, payload
):
    with capturedLogs() as events:
        running = bridge.command_received(command(name, payload))
    assert inverter.requests == []
    assert publisher.messages() == [(f"octolux/result/{name}", "FAIL")]
    assert running.result == "FAIL"
    (line,) = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]
    assert line.startswith(f"octolux/cmd/{name} ") and "-> FAIL (" in line


def test_a_failed_request_is_reported_once_with_its_reason(bridge, inverter, publisher):
    with capturedLogs() as events:
        bridge.command_received(command("discharge_pct", b"50"))
        inverter.pending[0].errback(CommandFailed("no reply within 10 s"))
    assert publisher.messages() == [("octolux/result/discharge_pct", "FAIL")]
    assert "octolux/cmd/discharge_pct '50' -> FAIL (no reply within 10 s)" in [
        formatEvent(e) for e in events
    ]


def test_an_unexpected_error_is_logged_and_fails(bridge, inverter, publisher):
    with capturedLogs() as events:
        bridge.command_received(command("charge_pct", b"10"))
        inverter.pending[0].errback(ZeroDivisionError("bug"))
    assert publisher.messages() == [("octolux/result/charge_pct", "FAIL")]
    assert any(e.get("log_failure") is not None for e in events)


def test_an_unknown_command_fails(bridge, inverter, publisher):
    bridge.command_received(command("self_destruct", b"1"))
    assert inverter.requests == []
    assert publisher.messages() == [("octolux/result/self_destruct", "FAIL")]


def test_a_retained_command_is_not_run(bridge, inverter, publisher):
    # A retained cmd would otherwise run again on every reconnect to the broker.
    with capturedLogs() as events:
        bridge.command_received(command("ac_charge", b"on", retained=True))
    assert inverter.requests == []
    assert publisher.published == []
    assert any("retained" in formatEvent(e) for e in events)


@pytest.mark.parametrize("retained", [True, False])
def test_a_zero_length_message_deleting_a_retained_command_is_ignored(
    bridge, inverter, publisher, retained
):
    # Subscribed before the deletion, the bridge gets it without the retain flag.
    with capturedLogs() as events:
        running = bridge.command_received(command("ac_charge", b"", retained=retained))
    assert running.result is None
    assert inverter.requests == []
    assert publisher.published == []
    assert [e for e in events if e["log_level"] > LogLevel.debug] == []


def test_payloads_are_quoted_in_log_lines(bridge, inverter, publisher):
    with capturedLogs() as events:
        bridge.command_received(command("discharge_pct", b"50 -> OK"))
    (line,) = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.info]
    assert line == (
        "octolux/cmd/discharge_pct '50 -> OK' -> FAIL (not a whole number: '50 -> OK')"
    )


def test_commands_run_as_sent_each_with_its_own_result(bridge, inverter, publisher):
    bridge.command_received(command("discharge_pct", b"10"))
    bridge.command_received(command("discharge_pct", b"20"))
    bridge.command_received(command("read_hold", b"21"))
    assert inverter.requests == [
        ("write_single", 65, 10), ("write_single", 65, 20), ("read_hold", 21, 1),
    ]
    inverter.pending[1].errback(CommandFailed("still queued after 10 s"))
    inverter.pending[0].callback(10)
    inverter.pending[2].callback({21: 0})
    assert publisher.messages() == [
        ("octolux/result/discharge_pct", "FAIL"),
        ("octolux/result/discharge_pct", "OK"),
        ("octolux/result/read_hold", "OK"),
    ]


def test_read_input_asks_for_the_block(bridge, inverter, publisher):
    bridge.command_received(command("read_input", b"2"))
    assert inverter.requests == [("read_input", 40, 40)]


def test_a_synchronous_failure_is_still_one_result(bridge, publisher):
    class Refusing(FakeInverter):
        def write_single(self, register, value):
            return fail(CommandFailed("not running"))

    InverterBridge(Refusing(), publisher, Topics()).command_received(command("charge_pct", b"1"))
    assert publisher.messages() == [("octolux/result/charge_pct", "FAIL")]


def test_named_inverter_topics(inverter, publisher):
    bridge = InverterBridge(inverter, publisher, Topics("octolux", "garage"))
    inverter.add_observer(bridge)
    inverter.receive({65: 1, 240: 0})  # past the setting registers: settings with what is known
    bridge.command_received(Message("octolux/garage/cmd/discharge_pct", b"1"))
    inverter.pending[0].callback(1)
    assert publisher.messages() == [
        ("octolux/garage/hold/65", "1"),
        ("octolux/garage/hold/240", "0"),
        ("octolux/garage/settings", '{"discharge_pct":1}'),
        ("octolux/garage/result/discharge_pct", "OK"),
    ]


# -- CommandRouter: every inverter's commands through one subscription ----------------


class Subscriptions:
    def __init__(self):
        self.made: list[tuple[str, object]] = []

    def subscribe(self, topic_filter, handler):
        self.made.append((topic_filter, handler))


def test_one_subscription_serves_any_number_of_inverters(publisher):
    subscriptions = Subscriptions()
    router = CommandRouter(subscriptions.subscribe, "fleet")
    inverters = [FakeInverter() for _ in range(1000)]
    for index, inverter in enumerate(inverters):
        router.add(InverterBridge(inverter, publisher, Topics("fleet", f"d{index}")))
    assert [topic_filter for topic_filter, _ in subscriptions.made] == ["fleet/+/cmd/#"]
    ((_, handler),) = subscriptions.made
    handler(Message("fleet/d537/cmd/discharge_pct", b"42"))
    assert inverters[537].requests == [("write_single", 65, 42)]
    assert sum(len(inverter.requests) for inverter in inverters) == 1
    inverters[537].pending[0].callback(42)
    assert publisher.messages() == [("fleet/d537/result/discharge_pct", "OK")]


def test_commands_for_no_known_inverter_are_dropped(publisher):
    subscriptions = Subscriptions()
    router = CommandRouter(subscriptions.subscribe, "fleet")
    inverter = FakeInverter()
    router.add(InverterBridge(inverter, publisher, Topics("fleet", "d0")))
    for topic in ("fleet/d1/cmd/discharge_pct", "fleet/cmd/discharge_pct", "fleet/d0/cmd"):
        assert router.command_received(Message(topic, b"1")).result is None
    assert inverter.requests == []
    assert publisher.published == []


def test_an_unnamed_inverter_beside_named_ones_has_its_own_subscription(publisher):
    # Server mode's accept_unknown adds named inverters beside the configured one.
    subscriptions = Subscriptions()
    router = CommandRouter(subscriptions.subscribe, "octolux")
    configured, learned = FakeInverter(), FakeInverter()
    router.add(InverterBridge(configured, publisher, Topics("octolux")))
    router.add(InverterBridge(learned, publisher, Topics("octolux", "BA12345678")))
    router.add(InverterBridge(FakeInverter(), publisher, Topics("octolux", "BA87654321")))
    assert [f for f, _ in subscriptions.made] == ["octolux/cmd/#", "octolux/+/cmd/#"]
    plain, named = (handler for _, handler in subscriptions.made)
    plain(Message("octolux/cmd/charge_pct", b"5"))
    named(Message("octolux/BA12345678/cmd/charge_pct", b"6"))
    named(Message("octolux/cmd/cmd/charge_pct", b"7"))  # no inverter named "cmd"
    assert configured.requests == [("write_single", 64, 5)]
    assert learned.requests == [("write_single", 64, 6)]
