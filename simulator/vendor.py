"""A small fake of the vendor's server (port 4346), for tests of dongles that dial out.

It accepts any number of dongle connections, records every frame and every
byte they send, answers heartbeats (as the real server does, so the dongle
keeps broadcasting) unless told not to, and can send a request to a dongle
the way the vendor's app does through its server. Wire format through
``octolux.lxp`` only.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import Logger

from octolux import lxp


class VendorConnection(protocol.Protocol):
    """One dongle's connection to the fake vendor server."""

    factory: FakeVendorServer

    def __init__(self):
        self.decoder = lxp.FrameDecoder(lxp.Direction.FROM_DONGLE)
        self.received = bytearray()  # every byte, as it came
        self.frames: list = []  # every whole frame
        self.lost = defer.Deferred()

    @property
    def datalog(self) -> str | None:
        """The datalog serial of the first frame, once one came."""
        return self.frames[0].datalog if self.frames else None

    def connectionMade(self):
        self.factory.connection_made(self)

    def dataReceived(self, data: bytes):
        self.received += data
        for item in self.decoder.feed(data):
            if isinstance(item, lxp.BadFrame):
                continue
            self.frames.append(item)
            self.factory.frame_received(self, item)

    def connectionLost(self, reason=protocol.connectionDone):
        if self in self.factory.connections:
            self.factory.connections.remove(self)
        self.lost.callback(None)

    def send(self, frame) -> None:
        """Send ``frame`` to the dongle."""
        self.transport.write(lxp.build(frame))


class FakeVendorServer(protocol.Factory):
    """The vendor's server as far as a dongle sees it: heartbeat answers and relayed requests.

    ``frames`` is every frame from every dongle, in order (the latest 10 000);
    ``heartbeats_answered`` counts answers sent. Set ``answer_heartbeats``
    False to play a server that ignores them.
    """

    protocol = VendorConnection
    noisy = False
    log = Logger()

    def __init__(self, answer_heartbeats: bool = True):
        self.answer_heartbeats = answer_heartbeats
        self.heartbeats_answered = 0
        self.connections: list[VendorConnection] = []
        self.frames: collections.deque = collections.deque(maxlen=10_000)
        self._frame_waiters: list[tuple[Callable, defer.Deferred]] = []
        self._connection_waiters: list[defer.Deferred] = []
        self._port = None

    @property
    def port(self) -> int:
        """The TCP port it listens on (after ``start``)."""
        return self._port.getHost().port

    def start(self, reactor, port: int = 0, interface: str = "127.0.0.1") -> defer.Deferred:
        """Listen; fires with this server once listening."""
        listening = TCP4ServerEndpoint(reactor, port, interface=interface).listen(self)

        def listening_on(port):
            self._port = port
            return self

        return listening.addCallback(listening_on)

    def stop(self) -> defer.Deferred:
        """Stop listening and close every connection; fires once they are closed."""
        closing = [connection.lost for connection in self.connections]
        for connection in list(self.connections):
            connection.transport.abortConnection()
        if self._port is not None:
            closing.append(defer.maybeDeferred(self._port.stopListening))
            self._port = None
        return defer.gatherResults(closing).addCallback(lambda _: None)

    def connection_made(self, connection: VendorConnection) -> None:
        """Count ``connection`` in, and give it to whoever waits for one."""
        self.connections.append(connection)
        waiters, self._connection_waiters = self._connection_waiters, []
        for waiter in waiters:
            waiter.callback(connection)

    def frame_received(self, connection: VendorConnection, frame) -> None:
        """Record ``frame``; answer it if it is a heartbeat."""
        self.frames.append(frame)
        if isinstance(frame, lxp.Heartbeat) and self.answer_heartbeats:
            self.heartbeats_answered += 1
            connection.send(lxp.Heartbeat(frame.datalog))
        remaining = []
        for predicate, waiter in self._frame_waiters:
            if predicate(frame):
                waiter.callback(frame)
            else:
                remaining.append((predicate, waiter))
        self._frame_waiters = remaining

    def when_frame(self, predicate: Callable[[object], bool]) -> defer.Deferred:
        """The first frame matching ``predicate``, already received or still to come."""
        for frame in self.frames:
            if predicate(frame):
                return defer.succeed(frame)
        waiter: defer.Deferred = defer.Deferred()
        self._frame_waiters.append((predicate, waiter))
        return waiter

    def when_connected(self) -> defer.Deferred:
        """A Deferred that fires with a connection once one is made."""
        if self.connections:
            return defer.succeed(self.connections[0])
        waiter: defer.Deferred = defer.Deferred()
        self._connection_waiters.append(waiter)
        return waiter
