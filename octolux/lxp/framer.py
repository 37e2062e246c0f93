"""Stream framing: TCP bytes in, whole frames out.

Modelled on Twisted's ``IntNStringReceiver``: one buffer, one loop taking whole
frames while they are there. What a real dongle does wrong (PROTOCOL.md
section 8) shapes it: garbage is skipped by resynchronising on the next
``A1 1A``, and a bad frame is reported and skipped, never raised, so one bad
frame costs only itself. Only translated-data frames carry a CRC; the others
must fit their kind's layout, and lose to a valid frame starting inside them,
so that a corrupt one cannot swallow the frames after it. A translated-data
frame proves itself only once all of it is there: until then it too loses to
a whole valid frame inside what has come of it (a frame cut short, as a
capture of a DG dongle shows: 117 bytes of a 197-byte frame, then the next
frame), so that the frames after it are not held back until more bytes come.

A decoder reads one direction of one connection (``Direction``): a client
decodes what the dongle sends, the dongle what its clients send.
"""

from __future__ import annotations

import collections

import attrs

from octolux.lxp.frames import (
    OUTER_HEADER_LENGTH,
    PREFIX,
    Direction,
    Frame,
    FrameError,
    TcpFunction,
    frame_length,
    length_misfit,
    parse,
    parse_framed,
)

# The longest frame seen in the wild is 291 bytes; a length field claiming far
# more is corruption, and waiting for it would stall the stream.
DEFAULT_MAX_FRAME_LENGTH = 1024

# The known tcp functions are C1-C4; the rest of the Cx row is let through,
# so that a function new firmware adds arrives as an UnknownFrame, not as garbage.
_TCP_FUNCTIONS = range(0xC0, 0xD0)
_KNOWN_FUNCTIONS = frozenset(TcpFunction)
_TRANSLATED_DATA = TcpFunction.TRANSLATED_DATA
# Bytes of a frame needed to tell a real header from an A1 1A in garbage.
_HEADER_CHECKED = 8  # prefix, protocol, length, the 01 byte, tcp function
_SHORTEST_FRAME = OUTER_HEADER_LENGTH + 1
_WAIT = object()  # "cannot tell until more bytes arrive"


@attrs.frozen
class BadFrame:
    """Bytes the framer dropped, with the reason (``bad CRC``, ``garbage``, ...)."""

    reason: str
    data: bytes


class FrameDecoder:
    """Turns a byte stream sent in ``direction`` into frames and ``BadFrame`` reports.

    ``feed`` never raises, whatever it is given; the buffer stays below
    ``max_frame_length`` plus one chunk. ``rejected`` counts drops by reason.
    """

    def __init__(self, direction: Direction, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH):
        if not isinstance(direction, Direction):
            raise TypeError(f"not a Direction: {direction!r}")
        self.direction = direction
        self.max_frame_length = max_frame_length
        self.rejected: collections.Counter[str] = collections.Counter()
        self.frames_decoded = 0
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Frame | BadFrame]:
        """Take the next bytes of the stream; return what they complete, in order."""
        buffer = self._buffer + chunk if self._buffer else bytes(chunk)
        results: list[Frame | BadFrame] = []
        offset = 0
        end = len(buffer)
        while True:
            start = buffer.find(PREFIX, offset)
            if start < 0:
                # Keep a trailing A1: it may be the first half of the next prefix.
                keep = end - 1 if end > offset and buffer[end - 1] == PREFIX[0] else end
                if keep > offset:
                    results.append(self._reject("garbage", buffer[offset:keep]))
                offset = keep
                break
            if start > offset:
                results.append(self._reject("garbage", buffer[offset:start]))
                offset = start
            available = end - offset
            if available < _HEADER_CHECKED:
                break
            total = frame_length(buffer, offset)
            if total < _SHORTEST_FRAME or total > self.max_frame_length:
                offset = self._skip(results, "impossible length", buffer, offset, end)
                continue
            # An A1 1A inside garbage would otherwise be trusted with its
            # "length" and hold back the good frames after it until that many
            # bytes arrived: minutes, at a dongle's pace. So the header must
            # look like one, and its length fit its kind, before the framer
            # waits for the rest.
            function = buffer[offset + 7]
            if buffer[offset + 6] != 1 or function not in _TCP_FUNCTIONS:
                offset = self._skip(results, "not a frame header", buffer, offset, end)
                continue
            misfit = length_misfit(buffer, offset, end)
            if misfit is not None:
                offset = self._skip(results, misfit, buffer, offset, end)
                continue
            if function != _TRANSLATED_DATA or available < total:
                inner = self._checked_frame_inside(buffer, offset, total, end)
                if inner is _WAIT:
                    break
                if inner is not None:
                    results.append(self._reject("cut short by the next frame",
                                                buffer[offset:inner]))
                    offset = inner
                    continue
            if available < total:
                break
            try:
                frame = parse_framed(buffer[offset : offset + total], self.direction)
            except FrameError as error:
                offset = self._skip(results, error.reason, buffer, offset, offset + total)
                continue
            results.append(frame)
            self.frames_decoded += 1
            offset += total
        self._buffer = buffer[offset:]
        return results

    def _checked_frame_inside(self, buffer: bytes, offset: int, total: int, end: int):
        """Where a valid frame of known kind starts inside the frame at ``offset``.

        Asked of a frame that cannot prove its length (yet). One without a
        CRC (heartbeat, param, unknown function) never can: one cut short, or
        with a corrupt length that still fits its kind, runs into the frames
        after it. A translated-data frame proves itself with its CRC once all
        of it is there; until then, it may be one cut short just the same. A
        valid frame of known kind starting inside its span wins over it.
        Returns that offset, None if there is none, or ``_WAIT`` until the
        bytes that decide it have arrived.
        """
        span_end = offset + total
        # A prefix whose A1 is the span's last byte counts too (a frame one
        # byte short), so the search runs one byte past the span.
        search_end = min(span_end + 1, end)
        # Waiting for a frame that ends further than the longest frame from
        # here could hold the buffer above its bound.
        limit = offset + self.max_frame_length
        start = buffer.find(PREFIX, offset + 2, search_end)
        while start >= 0:
            verdict = self._valid_frame_at(buffer, start, end, limit)
            if verdict is not None:
                return verdict
            start = buffer.find(PREFIX, start + 2, search_end)
        if span_end > end or (span_end == end and buffer[end - 1] == PREFIX[0]):
            return _WAIT  # the rest of the span may hold one
        return None

    def _valid_frame_at(self, buffer: bytes, start: int, end: int, limit: int):
        """``start`` if a valid frame of known kind, ending by ``limit``, is there;
        None if not, or ``_WAIT``."""
        if end - start < _HEADER_CHECKED:
            return _WAIT
        total = frame_length(buffer, start)
        if (
            buffer[start + 6] != 1
            or buffer[start + 7] not in _KNOWN_FUNCTIONS
            or total < _SHORTEST_FRAME
            or start + total > limit
            or length_misfit(buffer, start, end) is not None
        ):
            return None
        if end - start < total:
            return _WAIT
        try:
            parse(buffer[start : start + total], self.direction)
        except FrameError:
            return None
        return start

    def _skip(self, results, reason: str, buffer: bytes, offset: int, limit: int) -> int:
        """Drop a bad frame starting at ``offset``; return where to look next.

        A corrupt frame may have swallowed the start of a good one, so the
        search for the next prefix starts inside it, not after it.
        """
        following = buffer.find(PREFIX, offset + 2, limit)
        if following >= 0:
            stop = following
        elif limit - 1 > offset + 1 and buffer[limit - 1] == PREFIX[0]:
            stop = limit - 1  # may be the first half of a prefix
        else:
            stop = limit
        results.append(self._reject(reason, buffer[offset:stop]))
        return stop

    def _reject(self, reason: str, data: bytes) -> BadFrame:
        self.rejected[reason] += 1
        return BadFrame(reason, data)
