"""Stream splitting for a relay: TCP bytes in, whole frames out as the very bytes received.

``FrameDecoder`` parses; a relay must not: what the dongle and the vendor's
server say to each other passes through untouched, whatever it is. But a
relay that also sends frames of its own on the same connection must write
whole frames only, or its frame could land inside one of theirs. So this
splits at frame boundaries (the prefix and length field of the outer header)
and hands out each frame's bytes, and any bytes between frames as their own
chunk, without looking further: it needs no ``Direction``, as it never asks
whether a frame is a request or a reply.
"""

from __future__ import annotations

from octolux.lxp.framer import DEFAULT_MAX_FRAME_LENGTH
from octolux.lxp.frames import HEADER_LENGTH, PREFIX, frame_length


class FrameSplitter:
    """Cuts a byte stream into chunks that are each one whole frame or a run of non-frame bytes.

    Concatenated, the chunks are exactly the bytes fed, in order. The buffer
    never holds more than ``max_frame_length`` bytes.
    """

    def __init__(self, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH):
        self.max_frame_length = max_frame_length
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes; return the chunks they complete, in order."""
        buffer = self._buffer + data if self._buffer else bytes(data)
        chunks: list[bytes] = []
        offset, end = 0, len(buffer)
        while offset < end:
            if offset == end - 1 and buffer[offset] == PREFIX[0]:
                break  # may be the first half of the next prefix
            if buffer.startswith(PREFIX, offset):
                if end - offset < HEADER_LENGTH:
                    break
                total = frame_length(buffer, offset)
                if total <= self.max_frame_length:
                    if end - offset < total:
                        break
                    chunks.append(buffer[offset : offset + total])
                    offset += total
                    continue
                # An impossible length: not a frame start after all.
                following = buffer.find(PREFIX, offset + 2)
            else:
                following = buffer.find(PREFIX, offset)
            if following < 0:
                # Keep a trailing A1: it may be the first half of the next prefix.
                following = end - 1 if buffer[end - 1] == PREFIX[0] and end - 1 > offset else end
            chunks.append(buffer[offset:following])
            offset = following
        self._buffer = buffer[offset:]
        return chunks
