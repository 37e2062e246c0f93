"""MqttService against a real mosquitto: status, subscriptions across reconnects, clean stop."""

from __future__ import annotations

import itertools
import threading

import pytest_twisted
from e2e_support import MqttProbe
from paho.mqtt.enums import MQTTErrorCode
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from octolux.config.ini import MqttConfig
from octolux.mqtt.client import BATCH_DELAY, DRAIN_POLL, IN_FLIGHT, Message, MqttService
from octolux.net.logging import set_level

_prefixes = itertools.count()
_case = SynchronousTestCase()


def prefix() -> str:
    """A topic prefix of its own for each test: the broker is shared by the session."""
    return f"test-mqtt-{next(_prefixes)}"


def paho_threads(service: MqttService) -> list[threading.Thread]:
    client_id = service.config.client_id
    return [t for t in threading.enumerate() if t.name.endswith(client_id) and t.is_alive()]


async def started(mosquitto, base: str, **config) -> tuple[MqttService, list]:
    """An MqttService subscribed to ``<base>/cmd/+``, and the list its handler fills."""
    received = []
    service = MqttService(
        MqttConfig(
            host=mosquitto.host, port=mosquitto.port, client_id=f"octolux-{base}", **config
        ),
        reactor=reactor,
        status_topic=f"{base}/status",
    )

    def handler(message):
        assert threading.current_thread() is threading.main_thread()
        received.append(message)

    service.subscribe(f"{base}/cmd/+", handler)
    service.startService()
    return service, received


@pytest_twisted.ensureDeferred
async def test_online_subscribe_publish_and_offline_on_stop(mosquitto):
    base = prefix()
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{base}/#"])
    await probe.ready(reactor)
    service, received = await started(mosquitto, base)
    try:
        online = await probe.next_on(reactor, f"{base}/status")
        assert online.text == "online"
        await probe.until(reactor, lambda: service.connected, what="service connected")

        probe.publish(f"{base}/cmd/discharge_pct", b"50")
        await probe.until(reactor, lambda: received, what="command delivered")
        assert [(m.topic, m.payload, m.retained) for m in received] == [
            (f"{base}/cmd/discharge_pct", b"50", False)
        ]

        service.publish(f"{base}/hold/65", "50")
        assert (await probe.next_on(reactor, f"{base}/hold/65")).text == "50"
        service.publish(f"{base}/result/discharge_pct", "OK", qos=1)
        assert (await probe.next_on(reactor, f"{base}/result/discharge_pct")).text == "OK"
    finally:
        await service.stopService().addTimeout(10, reactor)
    offline = await probe.next_on(reactor, f"{base}/status", after=1)
    assert offline.text == "offline"
    assert paho_threads(service) == []

    # Both retained: a late subscriber learns the bridge is gone.
    late = MqttProbe(mosquitto.host, mosquitto.port, [f"{base}/status"])
    try:
        status = await late.next_on(reactor, f"{base}/status")
        assert (status.text, status.retain) == ("offline", True)
    finally:
        await late.close(reactor)
        await probe.close(reactor)


@pytest_twisted.ensureDeferred
async def test_a_broker_down_at_start_up_and_restarted_later_costs_only_that_time(mosquitto):
    base = prefix()
    mosquitto.stop()
    try:
        service, received = await started(mosquitto, base)
        assert not service.connected
        service.publish(f"{base}/hold/1", "1")  # dropped, not fatal
    finally:
        await mosquitto.started(reactor)
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{base}/#"])
    try:
        await probe.ready(reactor)
        await probe.until(reactor, lambda: service.connected, 15, "connected after start-up")
        await probe.until(reactor, lambda: probe.on(f"{base}/status"), what="status")

        # The broker restarts: the service reconnects and subscribes again.
        await mosquitto.restarted(reactor)
        await probe.until(reactor, lambda: not service.connected, 10, "the loss noticed")
        await probe.until(reactor, lambda: service.connected, 15, "reconnected")
        probe.clear()
        await probe.ready(reactor)  # the probe reconnects as well
        assert (await probe.next_on(reactor, f"{base}/status")).text == "online"  # retained
        probe.publish(f"{base}/cmd/ac_charge", b"on")
        await probe.until(reactor, lambda: received, what="a command after the restart")
        assert received[-1].payload == b"on"
    finally:
        await service.stopService().addTimeout(10, reactor)
        await probe.close(reactor)
    assert paho_threads(service) == []


@pytest_twisted.ensureDeferred
async def test_a_retained_command_is_marked_as_such(mosquitto):
    base = prefix()
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{base}/#"])
    await probe.ready(reactor)
    probe.publish(f"{base}/cmd/ac_charge", b"on", retain=True)
    await probe.next_on(reactor, f"{base}/cmd/ac_charge")
    service, received = await started(mosquitto, base)
    try:
        await probe.until(reactor, lambda: received, what="the retained command")
        assert received[0].retained is True
        probe.publish(f"{base}/cmd/ac_charge", b"off")
        await probe.until(reactor, lambda: len(received) > 1, what="a live command")
        assert (received[1].payload, received[1].retained) == (b"off", False)
    finally:
        probe.publish(f"{base}/cmd/ac_charge", b"", retain=True)  # clear it
        await service.stopService().addTimeout(10, reactor)
        await probe.close(reactor)


@pytest_twisted.ensureDeferred
async def test_the_password_never_appears_in_the_log(mosquitto):
    base = prefix()
    password = "pw-Zq81-never-logged"
    with capturedLogs() as events:
        service, received = await started(
            mosquitto, base, username="octolux", password=password
        )
        probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{base}/#"])
        try:
            await probe.ready(reactor)
            await probe.until(reactor, lambda: service.connected, what="connected with a user")
            service.publish(f"{base}/hold/1", "1")
            await probe.next_on(reactor, f"{base}/hold/1")
        finally:
            await service.stopService().addTimeout(10, reactor)
            await probe.close(reactor)
    lines = [formatEvent(event) for event in events]
    assert any(f"{mosquitto.host}:{mosquitto.port}" in line for line in lines)
    assert not [line for line in lines if password in line]
    assert not [event for event in events if password in repr(event)]


@pytest_twisted.ensureDeferred
async def test_stop_before_the_broker_was_ever_reached_is_clean(mosquitto):
    base = prefix()
    mosquitto.stop()
    try:
        service, _ = await started(mosquitto, base)
        await service.stopService().addTimeout(10, reactor)
        assert paho_threads(service) == []
    finally:
        await mosquitto.started(reactor)


@pytest_twisted.ensureDeferred
async def test_the_broker_connection_does_not_wait_for_nagle(mosquitto):
    # Without TCP_NODELAY a command's result waits ~40 ms behind its PUBACK.
    import socket

    base = prefix()
    service, _ = await started(mosquitto, base)
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{base}/#"])
    try:
        await probe.ready(reactor)
        await probe.until(reactor, lambda: service.connected, 15, "connected")
        sock = service._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        await service.stopService().addTimeout(10, reactor)
        await probe.close(reactor)


class _SubscribingClient:
    """Records what on_connect subscribes (paho's Client, as far as on_connect uses it)."""

    def __init__(self):
        self.subscribes: list = []

    def subscribe(self, topic, qos=0):
        self.subscribes.append(topic)

    def publish(self, topic, payload, qos=0, retain=False):
        pass


class _Success:
    is_failure = False


class _CallNow(Clock):
    """A clock whose callFromThread calls at once (there is no other thread here)."""

    def callFromThread(self, function, *args):
        function(*args)


def test_a_reconnect_subscribes_every_filter_in_one_subscribe():
    service = MqttService(MqttConfig(host="127.0.0.1", port=1), reactor=_CallNow(),
                          status_topic="t/status")
    for topic_filter in ("t/cmd/+", "t/+/cmd/+", "t/cmd/+"):
        service.subscribe(topic_filter, lambda message: None)
    client = _SubscribingClient()
    service._on_connect(client, None, None, _Success(), None)
    assert client.subscribes == [[("t/cmd/+", 1), ("t/+/cmd/+", 1)]]


def test_each_message_reaches_the_handlers_of_the_filters_it_matches():
    service = MqttService(MqttConfig(host="127.0.0.1", port=1), reactor=_CallNow(),
                          status_topic="t/status")
    seen = []
    service.subscribe("t/+/cmd/+", lambda m: seen.append(("named", m.topic)))
    service.subscribe("t/cmd/+", lambda m: seen.append(("plain", m.topic)))
    service.subscribe("t/cmd/+", lambda m: seen.append(("plain again", m.topic)))
    service.running = True
    for topic in ("t/a/cmd/x", "t/cmd/y", "t/a/b/cmd/z", "u/cmd/y"):
        service._message_received(Message(topic, b"1"))
    assert seen == [("named", "t/a/cmd/x"), ("plain", "t/cmd/y"), ("plain again", "t/cmd/y")]


class _Info:
    """paho's MQTTMessageInfo, as far as the service uses it."""

    def __init__(self, rc=MQTTErrorCode.MQTT_ERR_SUCCESS):
        self.rc = rc
        self.published = False

    def is_published(self) -> bool:
        return self.published


class _PublishingClient:
    """paho's Client, as far as publishing goes: records each message, returns its info."""

    def __init__(self, rc=MQTTErrorCode.MQTT_ERR_SUCCESS):
        self.rc = rc
        self.handed: list[tuple[str, str, int, bool, _Info]] = []

    def publish(self, topic, payload, qos=0, retain=False):
        info = _Info(self.rc)
        self.handed.append((topic, payload, qos, retain, info))
        return info

    def topics(self) -> list[str]:
        return [topic for topic, *_ in self.handed]

    def finish(self, count: int | None = None) -> None:
        """The broker has taken the first ``count`` (all) unfinished messages."""
        for *_, info in [m for m in self.handed if not m[-1].published][:count]:
            info.published = True


def publishing_service(client=None) -> tuple[MqttService, _PublishingClient, _CallNow]:
    clock = _CallNow()
    service = MqttService(MqttConfig(host="127.0.0.1", port=1), reactor=clock,
                          status_topic="t/status")
    service._client = client or _PublishingClient()
    service.connected = True
    return service, service._client, clock


def test_messages_of_one_reactor_turn_are_handed_to_paho_together_at_its_end():
    service, client, clock = publishing_service()
    service.publish("t/inputs/1", "{1}", qos=1)
    service.publish("t/result/ac_charge", "OK", qos=1)
    service.publish("t/connection", "online", qos=1, retain=True)
    assert client.handed == []
    clock.advance(0)
    assert [(topic, payload, qos, retain) for topic, payload, qos, retain, _ in client.handed] == [
        ("t/inputs/1", "{1}", 1, False),
        ("t/result/ac_charge", "OK", 1, False),
        ("t/connection", "online", 1, True),
    ]
    assert clock.getDelayedCalls() == []


def test_a_message_that_may_wait_goes_with_the_next_prompt_one_or_after_the_batch_delay():
    service, client, clock = publishing_service()
    service.publish("t/inputs/1", "{1}", qos=1, batch=True)
    service.publish("t/inputs/2", "{2}", qos=1, batch=True)
    clock.advance(BATCH_DELAY / 2)
    assert client.handed == []
    service.publish("t/result/ac_charge", "OK", qos=1)  # a command waits for it
    clock.advance(0)
    assert client.topics() == ["t/inputs/1", "t/inputs/2", "t/result/ac_charge"]
    service.publish("t/inputs/3", "{3}", qos=1, batch=True)
    clock.advance(BATCH_DELAY * 0.99)
    assert client.topics()[3:] == []
    clock.advance(BATCH_DELAY * 0.01)
    assert client.topics()[3:] == ["t/inputs/3"]
    assert clock.getDelayedCalls() == []


def test_state_waits_coalesced_while_the_broker_is_behind_and_messages_never_wait():
    service, client, clock = publishing_service()
    for register in range(IN_FLIGHT + 100):
        service.publish(f"t/hold/{register}", "1", retain=True, coalesce=True)
    clock.advance(DRAIN_POLL)
    assert len(client.handed) == IN_FLIGHT  # paho's share; the broker has drained none yet
    assert service.backlog() == IN_FLIGHT + 100
    for register in range(IN_FLIGHT, IN_FLIGHT + 100):  # newer values of what waits
        service.publish(f"t/hold/{register}", "2", retain=True, coalesce=True)
    service.publish("t/inputs/1", "{}", qos=1)
    clock.advance(DRAIN_POLL)
    assert client.topics()[IN_FLIGHT:] == ["t/inputs/1"]  # ahead of the state
    client.finish(50)
    clock.advance(DRAIN_POLL)
    # 50 finished, and the input took one place of them.
    assert client.topics()[IN_FLIGHT + 1:] == [
        f"t/hold/{register}" for register in range(IN_FLIGHT, IN_FLIGHT + 49)
    ]
    client.finish()
    clock.advance(DRAIN_POLL)
    assert len(client.handed) == IN_FLIGHT + 101
    assert {payload for topic, payload, *_ in client.handed[IN_FLIGHT + 1:]} == {"2"}
    assert service.backlog() == 51  # handed, not yet finished
    client.finish()
    assert service.backlog() == 0 and service.longest == IN_FLIGHT + 101
    assert clock.getDelayedCalls() == []


def test_qos_0_messages_paho_had_not_written_do_not_count_after_a_disconnect():
    service, client, clock = publishing_service()
    for register in range(IN_FLIGHT):
        service.publish(f"t/hold/{register}", "1", retain=True, coalesce=True)
    service.publish("t/settings", "{}", qos=1, retain=True, coalesce=True)
    clock.advance(DRAIN_POLL)
    assert service.backlog() == IN_FLIGHT + 1
    service._disconnected("connection lost")
    assert service.backlog() == 1  # the settings: paho sends it again after reconnecting


def test_while_the_broker_is_away_messages_wait_here_up_to_the_limit_and_state_coalesced():
    service, client, clock = publishing_service()
    service._disconnected("connection lost")
    with capturedLogs() as events:
        for n in range(service.max_queued + 2):
            service.publish(f"t/inputs/{n}", "{}", qos=1, batch=True)
            service.publish("t/hold/21", str(n), retain=True, coalesce=True)
        clock.advance(BATCH_DELAY)
    assert client.handed == []
    assert service.backlog() == service.max_queued + 1
    assert [formatEvent(e) for e in events] == [
        "MQTT: dropped 1 message(s), 1000 already waiting for broker 127.0.0.1:1"
        " (the last: t/inputs/1000)"
    ]
    service._connected()
    clock.advance(0)
    assert client.topics() == [f"t/inputs/{n}" for n in range(1000)] + ["t/hold/21"]
    assert client.handed[-1][1] == "1001"
    assert service.dropped == 2


def test_whatever_waits_is_handed_to_paho_on_stop_ahead_of_offline():
    class StoppingClient(_PublishingClient):
        def disconnect(self):
            self.handed.append(("disconnect", None, 0, False, None))

        def loop_stop(self):
            self.handed.append(("loop_stop", None, 0, False, None))

    class InlinePool:
        def callInThreadWithCallback(self, on_result, function, *args):
            on_result(True, function(*args))

    service, client, clock = publishing_service(StoppingClient())
    clock.getThreadPool = InlinePool
    for register in range(IN_FLIGHT + 1):
        service.publish(f"t/hold/{register}", "1", retain=True, coalesce=True)
    clock.advance(DRAIN_POLL)
    service.publish("t/result/ac_charge", "OK", qos=1)
    service.running = True
    with capturedLogs() as events:
        _case.successResultOf(service.stopService())
    assert client.topics()[IN_FLIGHT:] == [
        "t/result/ac_charge", f"t/hold/{IN_FLIGHT}", "t/status", "disconnect", "loop_stop"
    ]
    assert [formatEvent(e) for e in events] == [
        f"MQTT: 0 message(s) dropped in all; at most {IN_FLIGHT + 1} waiting at once"
    ]


def test_publishing_builds_no_debug_event_unless_debug_is_on():
    service, client, clock = publishing_service()
    with capturedLogs() as events:
        service.publish("t/inputs/1", "{}")
        clock.advance(DRAIN_POLL)
    assert events == []
    set_level("debug")
    try:
        with capturedLogs() as events:
            service.publish("t/inputs/1", "{}")
            clock.advance(DRAIN_POLL)
    finally:
        set_level("info")
    assert [formatEvent(e) for e in events] == ["published t/inputs/1 {}"]


def test_messages_dropped_on_a_full_queue_are_reported_once_a_minute():
    service, client, clock = publishing_service(
        _PublishingClient(MQTTErrorCode.MQTT_ERR_QUEUE_SIZE)
    )
    with capturedLogs() as events:
        for second in range(0, 130):
            service.publish(f"t/inputs/{second}", "{}", qos=1)
            clock.advance(1)
    warnings = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]
    assert warnings == [
        "MQTT: dropped 1 message(s), 1000 already waiting for broker 127.0.0.1:1"
        " (the last: t/inputs/0)",
        "MQTT: dropped 60 message(s), 1000 already waiting for broker 127.0.0.1:1"
        " (the last: t/inputs/60)",
        "MQTT: dropped 60 message(s), 1000 already waiting for broker 127.0.0.1:1"
        " (the last: t/inputs/120)",
    ]
    assert service.dropped == 130


def test_the_queue_for_the_broker_grows_with_the_fleet():
    def service(inverters):
        return MqttService(MqttConfig(host="127.0.0.1", port=1), reactor=_CallNow(),
                           status_topic="t/status", inverters=inverters)

    assert service(1).max_queued == service(200).max_queued == 1000
    assert service(10_000).max_queued == 50_000
