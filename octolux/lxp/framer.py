"""Stream framing: TCP bytes in, whole frames out.

Modelled on Twisted's ``IntNStringReceiver``: one buffer, one loop taking whole
frames while they are there. What a real dongle does wrong (PROTOCOL.md
section 8) shapes it: garbage is skipped by resynchronising on the next
``A1 1A``, and a bad frame is reported and skipped, never raised, so one bad
frame costs only itself.
"""

from __future__ import annotations

import collections
import struct

import attrs

from octolux.lxp.frames import (
    HEADER_LENGTH,
    OUTER_HEADER_LENGTH,
    PREFIX,
    Frame,
    FrameError,
    TcpFunction,
    parse,
)

# The longest frame seen in the wild is 291 bytes; a length field claiming far
# more is corruption, and waiting for it would stall the stream.
DEFAULT_MAX_FRAME_LENGTH = 1024

_LENGTH = struct.Struct("<H")
# The known tcp functions are C1-C4; the rest of the Cx row is let through,
# so that a function new firmware adds arrives as an UnknownFrame, not as garbage.
_TCP_FUNCTIONS = range(0xC0, 0xD0)
_TRANSLATED_DATA = TcpFunction.TRANSLATED_DATA
# Bytes of a frame needed to tell a real header from an A1 1A in garbage.
_HEADER_CHECKED = 8  # prefix, protocol, length, the 01 byte, tcp function
_DATA_LENGTH_CHECKED = 20  # ... and a translated-data frame's data length


@attrs.frozen
class BadFrame:
    """Bytes the framer dropped, with the reason (``bad CRC``, ``garbage``, ...)."""

    reason: str
    data: bytes


class FrameDecoder:
    """Turns a byte stream into frames and ``BadFrame`` reports.

    ``feed`` never raises, whatever it is given; the buffer stays below
    ``max_frame_length`` plus one chunk. ``rejected`` counts drops by reason.
    """

    def __init__(self, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH):
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
            total = _LENGTH.unpack_from(buffer, offset + 4)[0] + HEADER_LENGTH
            if total < OUTER_HEADER_LENGTH + 1 or total > self.max_frame_length:
                offset = self._skip(results, "impossible length", buffer, offset, end)
                continue
            # An A1 1A inside garbage would otherwise be trusted with its
            # "length" and hold back the good frames after it until that many
            # bytes arrived: minutes, at a dongle's pace. So the header must
            # look like one before the framer waits for the rest.
            function = buffer[offset + 7]
            if buffer[offset + 6] != 1 or function not in _TCP_FUNCTIONS:
                offset = self._skip(results, "not a frame header", buffer, offset, end)
                continue
            if function == _TRANSLATED_DATA and available >= _DATA_LENGTH_CHECKED:
                data_length = _LENGTH.unpack_from(buffer, offset + OUTER_HEADER_LENGTH)[0]
                if data_length != total - OUTER_HEADER_LENGTH - 2:
                    offset = self._skip(results, "not a frame header", buffer, offset, end)
                    continue
            if available < total:
                break
            frame_bytes = buffer[offset : offset + total]
            try:
                frame = parse(frame_bytes)
            except FrameError as error:
                offset = self._skip(results, error.reason, buffer, offset, offset + total)
                continue
            results.append(frame)
            self.frames_decoded += 1
            offset += total
        self._buffer = buffer[offset:]
        return results

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
