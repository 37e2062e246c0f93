"""The LXP connection as Twisted sees it: bytes in, frames out, and a no-data timeout.

``LxpProtocol`` knows the wire only through ``octolux.lxp``. It does not track
requests or state and knows nothing about MQTT: every frame goes to a
``FrameHandler`` (the ``Inverter``), which decides what it means. Nothing a
peer sends, however bad or unexpected, makes the protocol drop the
connection; only silence does (``no_data_timeout``).
"""

from __future__ import annotations

import functools
import socket
from typing import Protocol as Interface

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from octolux import lxp
from octolux.net.badframes import BadFrameLog
from octolux.net.endpoints import describe_peer, failure_phrase
from octolux.net.logging import debug_enabled

# A remaining idle time below this counts as expired: rescheduling for a
# sub-microsecond remainder could spin on float rounding.
_IDLE_EPSILON = 1e-6
# Linux only: acknowledge what has arrived now rather than up to 40 ms later.
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)



class FrameHandler(Interface):
    """What an ``LxpProtocol`` reports to; called on the reactor thread."""

    def connection_made(self, protocol: LxpProtocol) -> None:
        """The connection is up; ``protocol.send`` may be used from now on."""

    def frame_received(self, frame: lxp.Frame) -> None:
        """A whole, valid frame arrived (any kind, including ``UnknownFrame``)."""

    def connection_lost(self, protocol: LxpProtocol, reason: str) -> None:
        """The connection is gone; ``reason`` is one readable phrase for the log."""



class LxpProtocol(protocol.Protocol):
    """One TCP connection to a datalogger: frames in to a handler, ``send`` out.

    With ``no_data_timeout`` (seconds), a connection that delivers no byte for
    that long is aborted: a dongle can go silent while TCP still looks open.
    """

    log = Logger()

    def __init__(
        self,
        handler: FrameHandler,
        clock: IReactorTime,
        *,
        no_data_timeout: float | None = None,
        name: str = "lxp",
    ):
        self.handler = handler
        self.name = name
        self.peer = "?"
        self._clock = clock
        self._no_data_timeout = no_data_timeout if no_data_timeout and no_data_timeout > 0 else None
        # Everything on this connection comes from the dongle: every translated
        # frame is a reply or a push, whatever its address byte says.
        self._decoder = lxp.FrameDecoder(lxp.Direction.FROM_DONGLE)
        self._last_data = 0.0
        self._idle_call: IDelayedCall | None = None
        self._abort_reason: str | None = None
        self._bad_frames = BadFrameLog(self.log, clock, name, self.peer)
        self._quickack_socket: socket.socket | None = None  # see _acknowledge_now

    @property
    def decoder(self) -> lxp.FrameDecoder:
        """The stream decoder, for its counters (``frames_decoded``, ``rejected``)."""
        return self._decoder

    # -- Twisted's IProtocol ----------------------------------------------------

    def connectionMade(self) -> None:
        """Switch on TCP keepalive, start the no-data timer, tell the handler."""
        self.peer = self._bad_frames.peer = describe_peer(self.transport.getPeer())
        # Keepalive finds a dead peer when we have nothing to send; not every
        # transport has it (TLS wrappers, test transports).
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(True)
        # Every write is one whole frame: Nagle's algorithm has nothing to
        # merge, and would hold a request written while an earlier frame is
        # unacknowledged until the dongle's delayed ACK.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if _TCP_QUICKACK is not None and isinstance(handle, socket.socket):
            self._quickack_socket = handle
        if self._no_data_timeout is not None:
            self._last_data = self._clock.seconds()
            self._idle_call = self._clock.callLater(self._no_data_timeout, self._check_idle)
        self.handler.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        """Feed the decoder; hand every frame to the handler, log every bad one."""
        if self._idle_call is not None:
            # Cheaper than resetting a DelayedCall on every read: the timer
            # looks at this when it fires and sleeps again if data came.
            self._last_data = self._clock.seconds()
        if self._quickack_socket is not None:
            self._acknowledge_now()
        if debug_enabled():
            self.log.debug("{name}: received {data.hex()}", name=self.name, data=data)
        handler = self.handler
        for item in self._decoder.feed(data):
            if type(item) is lxp.BadFrame:
                self._bad_frames.report(item)
                continue
            try:
                handler.frame_received(item)
            except Exception:
                # A bug in handling one frame must not cost the connection
                # (an exception escaping dataReceived would drop it).
                self.log.failure("{name}: error handling {frame}", name=self.name, frame=item)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Stop the timers and tell the handler why the connection ended."""
        self._bad_frames.close()
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None
        phrase = self._abort_reason or failure_phrase(reason)
        self.handler.connection_lost(self, phrase)

    def _acknowledge_now(self) -> None:
        """Send the ACK for what just arrived now, not with the kernel's delayed ACK.

        Linux delays the ACK of a frame we do not answer (a broadcast, a
        heartbeat) by up to 40 ms; a dongle with Nagle's algorithm on (the
        simulator; lwIP's default) holds its next frame, a command's echo,
        until that ACK comes (tcpdump, bench/roundtrip.py: an echo held 47 ms
        behind an input broadcast). TCP_QUICKACK is not permanent: once a read.
        """
        try:
            self._quickack_socket.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            # Not TCP after all (a UNIX socket), or closing: stop trying.
            self._quickack_socket = None

    # -- ours -------------------------------------------------------------------

    def send(self, frame: lxp.Frame) -> None:
        """Write ``frame`` to the datalogger."""
        data = lxp.build(frame)
        if debug_enabled():
            self.log.debug("{name}: sending {data.hex()}", name=self.name, data=data)
        self.transport.write(data)

    def set_no_data_timeout(self, timeout: float | None) -> None:
        """Apply ``timeout`` (seconds; None: none) from now on, as if data had just come.

        A listened connection learns its inverter, and so its timeout, only
        from its first frame.
        """
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None
        self._no_data_timeout = timeout if timeout and timeout > 0 else None
        if self._no_data_timeout is not None and self.connected:
            self._last_data = self._clock.seconds()
            self._idle_call = self._clock.callLater(self._no_data_timeout, self._check_idle)

    def abort(self, reason: str) -> None:
        """Drop the connection now; ``reason`` is what the handler will be told."""
        self._abort_reason = reason
        self.transport.abortConnection()

    def _check_idle(self) -> None:
        timeout = self._no_data_timeout
        remaining = timeout - (self._clock.seconds() - self._last_data)
        if remaining > _IDLE_EPSILON:
            self._idle_call = self._clock.callLater(remaining, self._check_idle)
            return
        self._idle_call = None
        self.abort(f"no data for {timeout:g} s")


class LxpFactory(protocol.Factory):
    """Builds an ``LxpProtocol`` per connection, all reporting to one handler."""

    noisy = False  # "Starting factory" on every reconnect says nothing useful

    def __init__(self, handler: FrameHandler, clock: IReactorTime, **options):
        """``options``: LxpProtocol's keyword arguments (``no_data_timeout``, ``name``)."""
        self._new_protocol = functools.partial(LxpProtocol, handler, clock, **options)

    def buildProtocol(self, addr) -> LxpProtocol:
        """A protocol for one connection."""
        built = self._new_protocol()
        built.factory = self
        return built
