"""The LXP connection as Twisted sees it: bytes in, frames out, and a no-data timeout.

``LxpProtocol`` knows the wire only through ``octolux.lxp``. It does not track
requests or state and knows nothing about MQTT: every frame goes to a
``FrameHandler`` (the ``Inverter``), which decides what it means. Nothing a
peer sends, however bad or unexpected, makes the protocol drop the
connection; only silence does (``no_data_timeout``).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Protocol as Interface

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from octolux import lxp
from octolux.logging import debug_enabled

# A remaining idle time below this counts as expired: rescheduling for a
# sub-microsecond remainder could spin on float rounding.
_IDLE_EPSILON = 1e-6

# Bad frames logged one line each on a connection; after that, one summary
# per interval. A dongle sending garbage fast could otherwise write a million
# lines a minute, which an SD card does not survive.
BAD_FRAME_LINES = 5
BAD_FRAME_SUMMARY_INTERVAL = 60.0
# The most of a bad frame shown in hex at debug (a garbage run can be a whole
# 64 KB read).
_BAD_FRAME_HEX_BYTES = 64


class FrameHandler(Interface):
    """What an ``LxpProtocol`` reports to; called on the reactor thread."""

    def connection_made(self, protocol: LxpProtocol) -> None:
        """The connection is up; ``protocol.send`` may be used from now on."""

    def frame_received(self, frame: lxp.Frame) -> None:
        """A whole, valid frame arrived (any kind, including ``UnknownFrame``)."""

    def connection_lost(self, protocol: LxpProtocol, reason: str) -> None:
        """The connection is gone; ``reason`` is one readable phrase for the log."""


def host_and_port(host: str, port: int) -> str:
    """``host:port`` for the log, an IPv6 address in brackets: ``[::1]:4346``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_peer(address) -> str:
    """``host:port`` for an IPv4/IPv6 address, else the address as text."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return str(address)
    return host_and_port(host, port)


def failure_phrase(failure: Failure) -> str:
    """A connection failure as a short phrase: Twisted's message without its full stop."""
    return failure.getErrorMessage().rstrip(".")


@implementer(IStreamClientEndpoint)
class FailureReportingEndpoint:
    """A client endpoint that tells ``on_failure`` why each failed connection attempt failed.

    ``ClientService`` has no hook for a failed attempt; wrapping its endpoint
    in this is how the inverter's and the relay's "cannot connect: <why>" log
    lines get their reason.
    """

    def __init__(self, endpoint, on_failure: Callable[[Failure], None]):
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory):
        """Connect through the wrapped endpoint."""
        attempt = self._endpoint.connect(factory)
        attempt.addErrback(self._failed)
        return attempt

    def _failed(self, failure: Failure) -> Failure:
        self._on_failure(failure)
        return failure

    def __repr__(self) -> str:
        return repr(self._endpoint)


class BadFrameLog:
    """Logs one connection's bad frames within a bound, whatever the peer sends.

    The first ``lines`` bad frames get a line each (and, at debug, their first
    bytes in hex); later ones are counted by reason and summed up in one line
    per ``interval`` seconds while they keep coming, and once more by
    ``close`` if any were left unreported. So a connection logs at most
    ``lines + 1 + (its duration / interval) + 1`` bad-frame lines.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime,
        name: str,
        peer: str,
        *,
        lines: int = BAD_FRAME_LINES,
        interval: float = BAD_FRAME_SUMMARY_INTERVAL,
    ):
        self._log = log
        self._clock = clock
        self._name = name
        self.peer = peer
        self._lines_left = lines
        self._interval = interval
        self._unreported: collections.Counter[str] = collections.Counter()
        self._unreported_bytes = 0
        self._since = 0.0
        self._summary_call: IDelayedCall | None = None

    def report(self, bad: lxp.BadFrame) -> None:
        """Log ``bad``, or count it for the next summary."""
        if self._lines_left > 0:
            self._lines_left -= 1
            self._log_line(bad)
            return
        if self._lines_left == 0:
            self._lines_left = -1  # say once why the lines stop
            self._log.info(
                "{name}: more bad frames from {peer}; from now on one summary every "
                "{interval:g} s",
                name=self._name, peer=self.peer, interval=self._interval,
            )
        if self._summary_call is None:
            self._since = self._clock.seconds()
            self._summary_call = self._clock.callLater(self._interval, self._summarise)
        self._unreported[bad.reason] += 1
        self._unreported_bytes += len(bad.data)

    def close(self) -> None:
        """The connection is gone: sum up what was not reported yet, stop the timer."""
        if self._summary_call is not None:
            if self._summary_call.active():
                self._summary_call.cancel()
            self._summary_call = None
        self._log_summary()

    def _log_line(self, bad: lxp.BadFrame) -> None:
        self._log.info(
            "{name}: skipped {length} bytes from {peer}: {reason}",
            name=self._name, length=len(bad.data), peer=self.peer, reason=bad.reason,
        )
        # Formatted only if an observer wants debug: no hex is built otherwise.
        shown = bad.data[:_BAD_FRAME_HEX_BYTES]
        self._log.debug(
            "{name}: skipped bytes: {data.hex()}{more}", name=self._name, data=shown,
            more=f" ... ({len(bad.data) - len(shown)} more)" if len(bad.data) > len(shown) else "",
        )

    def _summarise(self) -> None:
        self._summary_call = None
        if self._log_summary():
            # Still coming: the next summary covers the next interval.
            self._since = self._clock.seconds()
            self._summary_call = self._clock.callLater(self._interval, self._summarise)

    def _log_summary(self) -> bool:
        """Log the unreported bad frames, if any; True if there were."""
        if not self._unreported:
            return False
        counts = dict(self._unreported.most_common())
        self._log.info(
            "{name}: skipped {frames} more bad frames ({length} bytes) from {peer} "
            "in {seconds:g} s: {reasons}",
            name=self._name, frames=sum(counts.values()), length=self._unreported_bytes,
            peer=self.peer, seconds=round(self._clock.seconds() - self._since, 1),
            reasons=", ".join(f"{reason} {count}" for reason, count in counts.items()),
            counts=counts,
        )
        self._unreported.clear()
        self._unreported_bytes = 0
        return True


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
        self._decoder = lxp.FrameDecoder()
        self._last_data = 0.0
        self._idle_call: IDelayedCall | None = None
        self._abort_reason: str | None = None
        self._bad_frames = BadFrameLog(self.log, clock, name, self.peer)

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
