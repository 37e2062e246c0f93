"""The MQTT broker connection: paho-mqtt's network loop in its own thread, seen from Twisted.

paho runs its loop in a thread started by ``startService``. Its callbacks do
the little that must happen on that thread (subscribe and announce ``online``
in ``on_connect``, so every reconnect re-subscribes) and hand everything else
to the reactor with ``reactor.callFromThread``; nothing else crosses over.
Publishing happens on the reactor thread, in batches: ``publish`` puts a
message in an ``Outbox``, and at the end of the reactor's turn (``BATCH_DELAY``
later for a message that may wait, ``batch=True``) everything waiting is
handed to paho at once, so paho's thread wakes once per batch rather than once
per message. Retained state (``coalesce=True``) is handed only as far as the
broker drains it (``IN_FLIGHT``); meanwhile a newer value replaces a waiting
one. The broker is logged as host:port only: the password never
reaches a log line.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import socket
import ssl
import sys
from collections.abc import Callable

import attrs
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher
from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from octolux.config.ini import MqttConfig
from octolux.mqtt.outbox import Outbox, Outgoing
from octolux.net.logging import debug_enabled

ONLINE = "online"
OFFLINE = "offline"
KEEPALIVE = 60  # seconds
RECONNECT_MIN_DELAY = 1  # seconds; paho doubles it per failed attempt ...
RECONNECT_MAX_DELAY = 30  # ... up to this
# Messages wait (in the Outbox) while the broker is away; a long outage must
# not grow that queue without bound.
MAX_QUEUED_MESSAGES = 1000
# ... or this many per inverter, if more: 10,000 inverters connecting at once
# have their connection state and first inputs on the way together.
QUEUED_PER_INVERTER = 5
# Messages dropped because that queue is full are reported once in this many seconds.
DROP_REPORT_INTERVAL = 60.0
# paho's thread wakes once per batch handed to it: a standalone paho client
# publishing 250 QoS 1 messages a second used ~320 us of CPU a message one at a
# time, ~140 us in batches of 5, ~60 us in batches of 100 (bench/README.md). A
# message goes with all those published in the same turn of the reactor (a
# command's result at once), and one that may wait (an input block, every 2
# minutes) up to this long (seconds): at 250 input messages a second (10,000
# dongles) batches of ~25.
BATCH_DELAY = 0.1
# While state waits for the broker to drain paho's share, look again this often.
DRAIN_POLL = 0.004
# Retained state is handed to paho only while fewer messages than this are
# in paho's hands (QoS 0: not yet written to the socket; QoS 1: not yet
# acknowledged): what the broker has not drained waits coalesced in the Outbox.
IN_FLIGHT = 2000


@attrs.frozen
class Message:
    """A message received on a subscribed topic."""

    topic: str
    payload: bytes
    # True when the broker replays a retained message on subscribing, rather
    # than forwarding a message somebody has just published.
    retained: bool = False


MessageHandler = Callable[[Message], object]


def _no_delay(client, userdata, sock) -> None:
    """paho's socket-open callback (paho's thread): switch off Nagle's algorithm.

    A command's PUBACK and its result are small writes back to back; with
    Nagle, the result waits for the broker's delayed ACK, ~40 ms a command.
    """
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def paho_client(config: MqttConfig, status_topic: str, max_queued: int) -> paho.Client:
    """A paho client set up from ``[mqtt]``: login, TLS, last will, limits; no callbacks."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=config.client_id or f"octolux-{secrets.token_hex(4)}",
        clean_session=True,
        protocol=paho.MQTTv311,
    )
    # An exception in a callback would otherwise end paho's thread for good.
    client.suppress_exceptions = True
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls:
        # Verifies the certificate and the host name; ca_file replaces the system CAs.
        client.tls_set_context(ssl.create_default_context(cafile=config.ca_file))
    client.will_set(status_topic, OFFLINE, qos=1, retain=True)
    client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
    client.max_queued_messages_set(max_queued)
    # No window of paho's own: what the Outbox hands over is sent at once
    # (not 20 at a time, paho's default), and with a window every PUBACK
    # walks all of paho's unacknowledged messages (_update_inflight).
    client.max_inflight_messages_set(0)
    client.on_socket_open = _no_delay
    return client


class MqttService(service.Service):
    """One broker connection: ``publish`` from the reactor thread, handlers called on it.

    ``status_topic`` carries ``online`` (published on every connect) and
    ``offline`` (the last will, and published on a clean stop), both retained.
    """

    log = Logger()

    def __init__(
        self,
        config: MqttConfig,
        *,
        reactor,
        status_topic: str,
        inverters: int = 1,  # how many inverters publish through it: sizes the queue
    ):
        self.config = config
        self.max_queued = max(MAX_QUEUED_MESSAGES, QUEUED_PER_INVERTER * inverters)
        self._reactor = reactor
        self._status_topic = status_topic
        self._client: paho.Client | None = None
        # Replaced, never mutated: the paho thread reads it in on_connect.
        self._topic_filters: tuple[str, ...] = ()
        # topic filter -> its handlers, as a trie: a message costs the levels of
        # its topic, not a match against every filter.
        self._handlers = MQTTMatcher()
        self._connect_failed_logged = False
        self._connect_handlers: list[Callable[[], object]] = []
        self.connected = False  # as last seen on the reactor thread
        self._dropped = 0  # messages dropped on a full queue since the last report
        self._next_drop_report = 0.0
        self.dropped = 0  # ... since the start
        self._outbox = Outbox()
        self._flush_call = None  # the pending _flush, if any
        # What paho has been handed and has not finished (written a QoS 0
        # message, had a QoS 1 one acknowledged), oldest first, with its QoS.
        self._unfinished: collections.deque[tuple[paho.MQTTMessageInfo, int]] = (
            collections.deque()
        )
        self.longest = 0  # the most messages seen waiting (Outbox and paho) at once

    # -- the reactor side -----------------------------------------------------

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        """Call ``handler(message)`` on the reactor thread for each message matching the filter.

        Kept across reconnections: the subscription is made again on every connect.
        """
        try:
            self._handlers[topic_filter].append(handler)
            return  # already subscribed to this filter
        except KeyError:
            self._handlers[topic_filter] = [handler]
        self._topic_filters += (topic_filter,)
        if self._client is not None:
            # Even if not connected as far as this thread knows: paho's thread
            # may be connecting right now, past reading the subscriptions. A
            # SUBSCRIBE while disconnected is refused harmlessly, and a second
            # one for the same filter is harmless too.
            self._client.subscribe(topic_filter, qos=1)

    def add_connect_handler(self, handler: Callable[[], object]) -> None:
        """Call ``handler()`` on the reactor thread after every connection to the broker.

        For what must be (re)published each time: a retained message the
        broker may have lost, or that a crash left stale.
        """
        self._connect_handlers.append(handler)

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 0, retain: bool = False,
                coalesce: bool = False, batch: bool = False) -> None:
        """Send one message at the end of this reactor turn; QoS 0 is lost while the broker is away.

        ``batch``: the message may wait up to BATCH_DELAY, to go with others.
        ``coalesce``: the message is state of which only the latest value
        counts (a retained register value): while the broker is behind it
        waits, and a newer value for its topic replaces it. Any other message
        is handed to paho at the next flush, ahead of waiting state.
        """
        if self._client is None:
            self.log.debug("MQTT not started: dropped {topic}", topic=topic)
            return
        if not coalesce and self._outbox.messages >= self.max_queued:
            self._queue_full(topic)  # a long outage: the newest go
            return
        self._outbox.put(Outgoing(topic, payload, qos, retain), coalesce=coalesce)
        delay = BATCH_DELAY if batch else 0.0
        flush = self._flush_call
        if flush is None:
            self._flush_call = self._reactor.callLater(delay, self._flush)
        elif not batch and flush.getTime() > self._reactor.seconds() + delay:
            flush.reset(delay)  # sooner, taking the batch along

    def backlog(self) -> int:
        """Messages not yet through to the broker: waiting here, or in paho's hands."""
        return len(self._outbox) + self._in_flight()

    def _in_flight(self) -> int:
        unfinished = self._unfinished
        # Finished in order, mostly: QoS 0 ones as written, QoS 1 ones as the
        # broker acknowledges them. One finished behind an unfinished one
        # counts a little longer, which only holds state back a little.
        while unfinished and unfinished[0][0].is_published():
            unfinished.popleft()
        return len(unfinished)

    def _flush(self) -> None:
        """Hand paho every message waiting, and as much state as the broker has room for."""
        self._flush_call = None
        client = self._client
        if client is None or not self.connected:
            # Kept here meanwhile, not in paho: state stays coalesced, and
            # paho's queue holds no message whose end it cannot report.
            return
        in_flight = self._in_flight()
        self.longest = max(self.longest, in_flight + len(self._outbox))
        for message in self._outbox.take(IN_FLIGHT - in_flight):
            self._hand(client, message)
        if self._outbox.state:
            # State waits for the broker to drain what paho has: look again soon.
            self._flush_call = self._reactor.callLater(DRAIN_POLL, self._flush)

    def _hand(self, client: paho.Client, message: Outgoing) -> None:
        topic, qos = message.topic, message.qos
        info = client.publish(topic, message.payload, qos=qos, retain=message.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._unfinished.append((info, qos))
            # Guarded: even a filtered-out event costs its building, per message.
            if debug_enabled():
                self.log.debug("published {topic} {payload}", topic=topic, payload=message.payload)
        elif info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0:
            # The broker lost a moment ago: paho sends it after reconnecting.
            # (Not counted in flight: paho's info never says when it went.)
            self.log.debug("queued until the broker is back: {topic}", topic=topic)
        elif info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self._queue_full(topic)
        else:
            self.log.debug(
                "not published ({error}): {topic}", topic=topic, error=paho.error_string(info.rc)
            )

    def _queue_full(self, topic: str) -> None:
        """A message lost: say so, but at most once per DROP_REPORT_INTERVAL."""
        self._dropped += 1
        self.dropped += 1
        now = self._reactor.seconds()
        if now < self._next_drop_report:
            return
        self._next_drop_report = now + DROP_REPORT_INTERVAL
        self.log.warn(
            "MQTT: dropped {count} message(s), {limit} already waiting for broker {address}"
            " (the last: {topic})",
            count=self._dropped,
            limit=self.max_queued,
            address=self.config.address,
            topic=topic,
        )
        self._dropped = 0

    def startService(self) -> None:
        """Create the client and start paho's thread; it connects, and reconnects, by itself."""
        super().startService()
        self._client = client = self._make_client()
        self.log.info(
            "Connecting to MQTT broker {address}{tls}",
            address=self.config.address,
            tls=" (TLS)" if self.config.tls else "",
        )
        client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE)
        client.loop_start()

    def stopService(self) -> Deferred:
        """Publish ``offline``, disconnect and join paho's thread (off the reactor thread)."""
        super().stopService()
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        client, self._client = self._client, None
        if client is None:
            return defer.succeed(None)
        # Whatever waits goes out ahead of offline, room or not.
        for message in self._outbox.take(len(self._outbox)):
            self._hand(client, message)
        self.log.info(
            "MQTT: {dropped} message(s) dropped in all; at most {longest} waiting at once",
            dropped=self.dropped, longest=self.longest,
        )
        # The will is not sent on a clean disconnect: say offline ourselves. It
        # is queued ahead of DISCONNECT, so the broker has it before we go.
        client.publish(self._status_topic, OFFLINE, qos=1, retain=True)
        client.disconnect()
        # loop_stop() joins the thread, which may be sleeping in a reconnect
        # back-off or a connect timeout: never block the reactor on that.
        return threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), _loop_stop, client
        )

    def _make_client(self) -> paho.Client:
        client = paho_client(self.config, self._status_topic, self.max_queued)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connected(self) -> None:
        self.connected = True
        self._connect_failed_logged = False
        self.log.info("Connected to MQTT broker {address}", address=self.config.address)
        if self._flush_call is None:  # what waited for the broker
            self._flush_call = self._reactor.callLater(0, self._flush)
        for handler in self._connect_handlers:
            try:
                handler()
            except Exception:
                self.log.failure("after connecting to MQTT broker {address}",
                                 address=self.config.address)

    def _refused(self, reason: str) -> None:
        self._failed_once(self.log.error, "MQTT broker {address} refused the connection", reason)

    def _connect_failed(self, reason: str) -> None:
        self._failed_once(self.log.warn, "Cannot reach MQTT broker {address}", reason)

    def _failed_once(self, emit, what: str, reason: str) -> None:
        # Logged once per outage, not on every retry.
        if not self._connect_failed_logged:
            self._connect_failed_logged = True
            emit(what + ": {reason}; retrying", address=self.config.address, reason=reason)

    def _disconnected(self, reason: str) -> None:
        # paho forgets the QoS 0 messages it had not written: never finished.
        self._unfinished = collections.deque(
            (info, qos) for info, qos in self._unfinished if qos > 0 or info.is_published()
        )
        was_connected, self.connected = self.connected, False
        if not was_connected:
            return
        if self.running:
            self.log.warn(
                "Lost MQTT broker {address} ({reason}); reconnecting",
                address=self.config.address,
                reason=reason,
            )
        else:
            self.log.info("Disconnected from MQTT broker {address}", address=self.config.address)

    def _message_received(self, message: Message) -> None:
        if not self.running:
            return
        for handlers in self._handlers.iter_match(message.topic):
            for handler in handlers:
                handler(message)

    # -- the paho thread: keep these short; only callFromThread reaches Twisted.

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._reactor.callFromThread(self._refused, str(reason_code))
            return
        # Here, not on the reactor thread, so no message can slip in between
        # the connection and the subscriptions. One SUBSCRIBE for them all.
        topic_filters = self._topic_filters
        if topic_filters:
            client.subscribe([(topic_filter, 1) for topic_filter in topic_filters])
        client.publish(self._status_topic, ONLINE, qos=1, retain=True)
        self._reactor.callFromThread(self._connected)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError`, without the error;
        # the error is still the one being handled (a refusal, a bad certificate).
        error = sys.exc_info()[1]
        reason = str(error) if error is not None else "connection failed"
        self._reactor.callFromThread(self._connect_failed, reason)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._reactor.callFromThread(self._disconnected, str(reason_code))

    def _on_message(self, client, userdata, message) -> None:
        self._reactor.callFromThread(
            self._message_received,
            Message(message.topic, bytes(message.payload), bool(message.retain)),
        )


def _loop_stop(client: paho.Client) -> None:
    """Join paho's thread; run in the thread pool."""
    # paho#872: loop_stop() can race its own thread clearing _thread.
    with contextlib.suppress(AttributeError):
        client.loop_stop()
