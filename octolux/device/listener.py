"""Server mode: dataloggers connect to the bridge, as they connect to the vendor's server.

Some dongle firmware closes its port 8000, but every dongle still dials out as
a TCP client (to the vendor's server, port 4346, or to an address set in its
second network setting). A ``DongleListener`` takes those connections. It
knows a connection only by what it says: the datalog serial of its first frame
picks the inverter section (``Route``) it belongs to, and from then on the
connection is handed to that section's ``Inverter`` through the same
``FrameHandler`` methods a connection it dialled itself would use, so
everything above (queue, observers, MQTT, API) is the same in both modes.

A listener on the home network is an open door, so every connection is on a
short leash and costs only itself: it must send a frame naming a known dongle
within ``identify_timeout`` seconds and ``UNIDENTIFIED_BYTES`` bytes, must not
send more than ``FLOOD_BYTES`` in ``FLOOD_WINDOW`` seconds (a dongle sends a
few hundred bytes a minute), and there are at most ``max_connections`` at
once. The framer bounds each connection's buffer.

The bridge answers the dongle's heartbeats itself, as the vendor's server
would (without answers a dongle stops sending data), except while a relay
(``octolux.device.relay``) to the vendor's server is up: then the cloud answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from octolux import lxp
from octolux.config.ini import IDENTIFY_TIMEOUT, MAX_CONNECTIONS
from octolux.device.inverter import Inverter, answer_heartbeat
from octolux.device.relay import CloudLink, Congestion
from octolux.device.serials import OnceEach
from octolux.lxp.splitter import FrameSplitter
from octolux.net.listening import ListeningService
from octolux.net.protocol import LxpProtocol

# The biggest frame is 291 bytes: a real dongle is known long before this.
UNIDENTIFIED_BYTES = 4096
FLOOD_WINDOW = 10.0  # seconds
FLOOD_BYTES = 256 * 1024  # ... per window: a thousand times what a dongle sends


@attrs.define(eq=False)
class Route:
    """An inverter section a listener serves, and how to reach the vendor's server for it."""

    inverter: Inverter
    # Makes an IStreamClientEndpoint to the vendor's server for one dongle
    # connection; None: no relay.
    cloud: Callable[[], object] | None = None
    cloud_address: str | None = None  # "host:port", for the log


class _ListenedProtocol(LxpProtocol):
    """An ``LxpProtocol`` whose raw bytes the connection sees first (leash, relay)."""

    handler: _Connection

    def dataReceived(self, data: bytes) -> None:
        if self.handler.bytes_received(data):
            super().dataReceived(data)


class _ListenerFactory(protocol.Factory):
    """Builds a protocol and its own ``_Connection`` for every accepted connection."""

    noisy = False

    def logPrefix(self) -> str:
        """What Twisted's "starting on PORT" line calls this factory."""
        return "dongle listener"

    def __init__(self, listener: DongleListener, clock, **options):
        self._listener = listener
        self._clock = clock
        self._options = options

    def buildProtocol(self, addr) -> _ListenedProtocol:
        built = _ListenedProtocol(_Connection(self._listener), self._clock, **self._options)
        built.factory = self
        return built


class _Connection:
    """One accepted connection: on a leash until it names its dongle, then its inverter's."""

    log = Logger()

    def __init__(self, listener: DongleListener):
        self.listener = listener
        self.protocol: LxpProtocol | None = None
        self.route: Route | None = None
        self.link: CloudLink | None = None
        self.closed = False
        self.heartbeats_answered = 0
        self.chunks_dropped = 0  # cloud -> dongle, while the dongle was not reading
        clock = listener.clock
        self._clock = clock
        self._identify_call: IDelayedCall | None = None
        self._unidentified_bytes = 0
        self._window_start = clock.seconds()
        self._window_bytes = 0
        # Relaying needs frame boundaries from the very first byte.
        self._splitter = FrameSplitter() if listener.relays else None
        self._congestion = Congestion()

    # -- FrameHandler ---------------------------------------------------------------

    def connection_made(self, protocol: LxpProtocol) -> None:
        self.protocol = protocol
        if not self.listener.admit(self):
            self.close("too many connections", quiet=True)
            return
        if self._splitter is not None:
            protocol.transport.registerProducer(self._congestion, True)
        self._identify_call = self._clock.callLater(
            self.listener.identify_timeout, self._not_identified)

    def bytes_received(self, data: bytes) -> bool:
        """Keep the leash, relay whole frames; False: the connection is closing, drop ``data``."""
        if self.closed:
            return False
        now = self._clock.seconds()
        if now - self._window_start >= FLOOD_WINDOW:
            self._window_start, self._window_bytes = now, 0
        self._window_bytes += len(data)
        if self._window_bytes > FLOOD_BYTES:
            self.close(f"flood: more than {FLOOD_BYTES} bytes in {FLOOD_WINDOW:g} s")
            return False
        if self.route is None:
            self._unidentified_bytes += len(data)
            if self._unidentified_bytes > UNIDENTIFIED_BYTES:
                self.close(f"no LXP frame in its first {UNIDENTIFIED_BYTES} bytes")
                return False
        if self._splitter is not None:
            chunks = self._splitter.feed(data)
            if self.link is not None:
                for chunk in chunks:
                    self.link.from_dongle(chunk)
        return True

    def frame_received(self, frame: lxp.Frame) -> None:
        if self.closed:
            return
        if self.route is None:
            route = self.listener.route_for(frame.datalog)
            if route is None:
                self.close(f"datalog {frame.datalog!r} is in no inverter section", quiet=True)
                return
            self._identified(route)
        if type(frame) is lxp.Heartbeat and (self.link is None or not self.link.up):
            self.heartbeats_answered += 1
            answer_heartbeat(self.protocol, frame)
        self.route.inverter.frame_received(frame)

    def connection_lost(self, protocol: LxpProtocol, reason: str) -> None:
        self.closed = True
        self._cancel_identify()
        if self.link is not None:
            self.link.stop()
        self.listener.forget(self)
        if self.route is not None:
            self.route.inverter.connection_lost(protocol, reason)
        else:
            self.log.debug("{listener}: connection from {peer} closed: {reason}",
                           listener=self.listener.name, peer=protocol.peer, reason=reason)

    # -- ours -------------------------------------------------------------------------

    def close(self, reason: str, *, quiet: bool = False) -> None:
        """Drop the connection now; only its own."""
        if self.closed:
            return
        self.closed = True
        self._cancel_identify()
        if not quiet:
            self.listener.closing(self.protocol.peer, reason)
        self.protocol.abort(reason)

    def to_dongle(self, chunk: bytes) -> None:
        """Write one whole frame from the cloud to the dongle, unless it is not reading."""
        if self.closed or self._congestion.congested:
            self.chunks_dropped += 1
            return
        self.protocol.transport.write(chunk)

    def _identified(self, route: Route) -> None:
        self._cancel_identify()
        self.route = route
        inverter = route.inverter
        # Until now the identify timeout was the leash; from now on it is the
        # silence this inverter's section tolerates.
        self.protocol.set_no_data_timeout(inverter.no_data_timeout)
        if route.cloud is not None:
            self.link = CloudLink(route.cloud(), route.cloud_address, self.to_dongle,
                                  clock=self._clock, name=inverter.name)
            self.link.start()
        inverter.connection_made(self.protocol)

    def _not_identified(self) -> None:
        self._identify_call = None
        self.close(f"no frame naming its dongle within {self.listener.identify_timeout:g} s")

    def _cancel_identify(self) -> None:
        if self._identify_call is not None and self._identify_call.active():
            self._identify_call.cancel()
        self._identify_call = None


class DongleListener(ListeningService):
    """One listening address; each connection goes to the ``Route`` its datalog serial names.

    A route whose inverter has no datalog serial configured takes the first
    dongle no other route names (and keeps it: the inverter learns the serial
    from that frame). A serial no route takes is refused, logged once, unless
    ``accept_unknown`` makes a route for it.
    """

    log = Logger()
    closing_lines_every = 60.0  # seconds: at most one "closing" line per this, plus a count

    def __init__(
        self,
        endpoint,  # IStreamServerEndpoint
        address: str,  # "host:port", for the log
        routes: Sequence[Route],
        *,
        clock: IReactorTime,
        max_connections: int = MAX_CONNECTIONS,
        identify_timeout: float = IDENTIFY_TIMEOUT,
        accept_unknown: Callable[[str], Route] | None = None,
        accepted_relay: bool = False,
    ):
        self.name = f"listener {address}"
        self.address = address
        self.clock = clock
        self.routes = list(routes)
        self.max_connections = max_connections
        self.identify_timeout = identify_timeout
        self.connections: set[_Connection] = set()
        self._endpoint = endpoint
        self._accept_unknown = accept_unknown
        self._by_datalog: dict[str, Route] = {}
        self._refused = OnceEach()  # datalog serials refused, each logged once
        self._full_logged = False
        self._closing_quiet_until = 0.0
        self._closings_unlogged = 0
        self._accepted_relay = accepted_relay
        # No no-data timeout until a connection names its inverter (identify_timeout
        # bounds it until then); then its section's (``_Connection._identified``).
        self._factory = _ListenerFactory(self, clock, name=self.name)

    @property
    def relays(self) -> bool:
        """May a connection relay to the vendor's server?

        Asked before a connection names its dongle: true if any route relays,
        or if dongles ``accept_unknown`` takes in are relayed (``accepted_relay``).
        """
        return self._accepted_relay or any(route.cloud is not None for route in self.routes)

    # -- the service --------------------------------------------------------------------

    def startService(self) -> None:
        """Start listening; an address that cannot be bound stops start-up."""
        super().startService()
        self.listen_now(self._endpoint, self._factory, f"{self.name}: cannot listen")
        names = ", ".join(route.inverter.name for route in self.routes)
        self.log.info("{name}: waiting for dataloggers to connect ({names})", name=self.name,
                      names=names or "any")

    def stopService(self) -> defer.Deferred:
        """Stop listening and close every connection."""
        super().stopService()
        for connection in list(self.connections):
            connection.close("stopping", quiet=True)
        return self.stop_listening()

    # -- called by _Connection ------------------------------------------------------------

    def admit(self, connection: _Connection) -> bool:
        """Take ``connection`` on, unless there are ``max_connections`` already."""
        if len(self.connections) >= self.max_connections:
            if not self._full_logged:
                self._full_logged = True
                self.log.warn("{name}: {count} connections already, the most allowed"
                              " ([listener] max_connections): refusing more until one closes",
                              name=self.name, count=len(self.connections))
            return False
        self._full_logged = False
        self.connections.add(connection)
        return True

    def closing(self, peer: str, reason: str) -> None:
        """Log that a misbehaving connection is being closed, at most one line a minute.

        Otherwise a flood of bad connections would be a flood of log lines.
        """
        now = self.clock.seconds()
        if now < self._closing_quiet_until:
            self._closings_unlogged += 1
            self.log.debug("{name}: closing the connection from {peer}: {reason}",
                           name=self.name, peer=peer, reason=reason)
            return
        more = self._closings_unlogged
        self.log.info("{name}: closing the connection from {peer}: {reason}{more}",
                      name=self.name, peer=peer, reason=reason,
                      more=f" ({more} more closed since the last such line)" if more else "")
        self._closings_unlogged = 0
        self._closing_quiet_until = now + self.closing_lines_every

    def forget(self, connection: _Connection) -> None:
        """``connection`` has closed: it no longer counts against ``max_connections``."""
        self.connections.discard(connection)

    def route_for(self, datalog: str) -> Route | None:
        """The route a connection from ``datalog`` belongs to, or None (logged once)."""
        route = self._by_datalog.get(datalog)
        if route is not None:
            return route
        route = next((r for r in self.routes if r.inverter.datalog == datalog), None)
        if route is None:
            claimed = set(map(id, self._by_datalog.values()))
            route = next((r for r in self.routes
                          if r.inverter.datalog is None and id(r) not in claimed), None)
        if route is None and self._accept_unknown is not None:
            route = self._accept_unknown(datalog)
            self.routes.append(route)
            self.log.info("{name}: datalog {datalog!r} is in no inverter section: accepted as"
                          " {inverter!r} ([listener] accept_unknown)", name=self.name,
                          datalog=datalog, inverter=route.inverter.name)
        if route is None:
            if self._refused.first_sight(datalog):
                self.log.warn(
                    "{name}: refusing a datalogger with datalog serial {datalog!r}: no"
                    " inverter section has `datalog = {datalog}` (add one, or leave datalog"
                    " out of a section to take any dongle)", name=self.name, datalog=datalog)
            return None
        self._by_datalog[datalog] = route
        return route
