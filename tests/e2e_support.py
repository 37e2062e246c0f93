"""Helpers for the tests on real sockets: ``MqttProbe`` watches the broker, ``get`` asks HTTP,
``EventStream`` reads server-sent events.

Not a test module (it defines no tests); its name keeps it with the e2e tests.
The probe's paho thread only appends to a locked list; the tests poll that
list from the reactor with ``deferLater``, so nothing here touches Twisted
from another thread.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import attrs
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from twisted.internet import defer, protocol, task, threads
from twisted.web.client import Agent

POLL = 0.02  # seconds between looks at the received messages
_ids = itertools.count()


@attrs.frozen
class Seen:
    """One message the probe received."""

    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival, to order messages across topics

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


async def poll_until(reactor, condition, timeout: float, what: str, context=lambda: ""):
    """Poll ``condition()`` every POLL seconds until it is truthy; return its value.

    Fails after ``timeout`` seconds with ``what`` and ``context()`` in the message.
    """
    deadline = reactor.seconds() + timeout
    while True:
        result = condition()
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; {context()}")
        await task.deferLater(reactor, POLL, lambda: None)


class MqttProbe:
    """Subscribes to ``topics`` on a broker and records everything it receives."""

    def __init__(self, host: str, port: int, topics=("#",)):
        self._lock = threading.Lock()
        self._messages: list[Seen] = []
        self._topics = tuple(topics)
        self._subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"probe-{next(_ids)}-{time.monotonic_ns()}",
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async(host, port)
        self.client.loop_start()

    # paho thread
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._subscribed.clear()
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subscribed.set()

    def _on_message(self, client, userdata, message):
        seen = Seen(message.topic, bytes(message.payload), bool(message.retain), time.monotonic())
        with self._lock:
            self._messages.append(seen)

    # reactor thread
    @property
    def messages(self) -> list[Seen]:
        with self._lock:
            return list(self._messages)

    def on(self, topic: str) -> list[Seen]:
        """Every message received on ``topic`` so far."""
        return [m for m in self.messages if m.topic == topic]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    async def ready(self, reactor, timeout: float = 10.0) -> None:
        """Wait until the probe is connected and subscribed."""
        await self.until(reactor, self._subscribed.is_set, timeout, "probe subscribed")

    async def until(self, reactor, condition, timeout: float = 10.0, what: str = "condition"):
        """Poll ``condition()`` until it returns something truthy; return that."""
        def seen() -> str:
            return ", ".join(f"{m.topic}={m.text[:40]!r}" for m in self.messages[-30:])

        return await poll_until(reactor, condition, timeout, what, seen)

    async def next_on(self, reactor, topic: str, *, after: int = 0, timeout: float = 10.0) -> Seen:
        """The first message on ``topic`` beyond the first ``after`` ones."""
        def arrived():
            seen = self.on(topic)
            return seen[after] if len(seen) > after else None

        return await self.until(reactor, arrived, timeout, f"a message on {topic}")

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish with QoS 1 (paho queues it; it goes out from the probe's thread)."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    async def close(self, reactor) -> None:
        """Disconnect, and join the probe's thread off the reactor thread."""
        self.client.disconnect()
        await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), self.client.loop_stop
        ).addTimeout(10, reactor)


class _Body(protocol.Protocol):
    def __init__(self):
        self.chunks = []
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.chunks))


def read_body(response) -> defer.Deferred:
    """The response body (twisted's readBody warns about Agent's own transport)."""
    body = _Body()
    response.deliverBody(body)
    return body.done


async def get(reactor, url: str, timeout: float = 5.0):
    """GET ``url``: (response, body bytes)."""
    response = await Agent(reactor).request(b"GET", url.encode()).addTimeout(timeout, reactor)
    return response, await read_body(response).addTimeout(timeout, reactor)


class EventStream(protocol.Protocol):
    """Collects a server-sent event stream (the page's ``/api/events``)."""

    def __init__(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data

    def events(self) -> list[tuple[str, dict]]:
        """(event name, its JSON data) of every whole event so far."""
        found = []
        for block in self.data.decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                found.append((lines["event"], json.loads(lines["data"])))
        return found
