"""Modbus frames around a PDU, and stream decoders that find them in bytes.

Modbus TCP puts a 7-byte MBAP header before the PDU (transaction number,
protocol 0, length, unit); RTU puts the unit before it and a CRC-16/MODBUS
(low byte first) after it, and ends a frame with 3.5 character times of
silence on the line. A gateway in transparent mode ("RTU over TCP") passes
RTU frames through a TCP stream, where that silence is lost, so the RTU
decoder finds frames by their content (each function's length, then the CRC)
and uses silence, when its caller can see it, only to drop a frame cut short.

Both decoders are modelled on ``octolux.lxp.framer``: one buffer, one loop
taking whole frames while they are there, garbage skipped and reported as a
``BadFrame``, never raised, so a bad frame costs only itself.
"""

from __future__ import annotations

import collections
import struct

import attrs

from octolux.lxp.crc import crc16_modbus
from octolux.lxp.framer import BadFrame
from octolux.modbus.pdu import (
    EXCEPTION_FLAG,
    READS,
    Function,
    ModbusError,
    Request,
    Response,
    decode_request,
    decode_response,
    encode,
)

# RTU: unit (1) + PDU (at most 253) + CRC (2); MBAP: header (7) + PDU.
MAX_RTU_FRAME = 256
MAX_TCP_FRAME = 260
_MBAP = struct.Struct(">HHHB")
_MBAP_LENGTH = _MBAP.size
# Unit 0 is broadcast (requests only, never answered); 248-255 are reserved.
_REQUEST_UNITS = range(0, 248)
_RESPONSE_UNITS = range(1, 248)
_FUNCTIONS = frozenset(Function)
_SHORTEST_RTU = 4  # unit, function, CRC: shorter than any real frame, enough to judge


@attrs.frozen
class Message:
    """A PDU addressed to (or answered by) ``unit``; ``transaction`` on Modbus TCP only."""

    unit: int
    pdu: Request | Response
    transaction: int | None = None


def silence_seconds(baudrate: int) -> float:
    """The RTU inter-frame silence: 3.5 character times of 11 bits, 1.75 ms above 19200 baud.

    (The specification counts 11 bits a character, parity or a second stop
    bit included, and fixes the gap for fast lines.)
    """
    if baudrate > 19200:
        return 0.00175
    return 3.5 * 11 / baudrate


def encode_tcp(message: Message) -> bytes:
    """A Modbus TCP frame: MBAP header (protocol 0), then the PDU."""
    pdu = encode(message.pdu)
    return _MBAP.pack(message.transaction or 0, 0, len(pdu) + 1, message.unit) + pdu


def encode_rtu(message: Message) -> bytes:
    """An RTU frame: unit, PDU, CRC-16/MODBUS low byte first."""
    body = bytes((message.unit,)) + encode(message.pdu)
    return body + crc16_modbus(body).to_bytes(2, "little")


class _Decoder:
    """What both decoders share: the buffer, the counters, the role."""

    def __init__(self, *, requests: bool = False):
        # A server decodes requests, a client responses: the same function
        # code has a different layout in each direction.
        self.requests = requests
        self._decode_pdu = decode_request if requests else decode_response
        self.rejected: collections.Counter[str] = collections.Counter()
        self.frames_decoded = 0
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buffer)

    def _reject(self, reason: str, data: bytes) -> BadFrame:
        self.rejected[reason] += 1
        return BadFrame(reason, bytes(data))


class TcpDecoder(_Decoder):
    """Modbus TCP bytes in, ``Message`` and ``BadFrame`` out; ``feed`` never raises.

    An MBAP header that cannot be one (protocol not 0, a length no PDU has)
    is garbage: one byte is skipped and the search goes on, so a stream that
    lost its step finds the next header.
    """

    def feed(self, chunk: bytes) -> list[Message | BadFrame]:
        """Take the next bytes of the stream; return what they complete, in order."""
        buffer = self._buffer + chunk if self._buffer else bytes(chunk)
        results: list[Message | BadFrame] = []
        offset, end = 0, len(buffer)
        garbage_from = None
        while end - offset >= _MBAP_LENGTH:
            transaction, protocol, length, unit = _MBAP.unpack_from(buffer, offset)
            if protocol != 0 or not 2 <= length <= MAX_TCP_FRAME - 6:
                if garbage_from is None:
                    garbage_from = offset
                offset += 1
                continue
            if garbage_from is not None:
                results.append(self._reject("garbage", buffer[garbage_from:offset]))
                garbage_from = None
            total = 6 + length
            if end - offset < total:
                break
            frame = buffer[offset:offset + total]
            offset += total
            try:
                pdu = self._decode_pdu(frame[_MBAP_LENGTH:])
            except ModbusError as error:
                results.append(self._reject(error.reason, frame))
                continue
            results.append(Message(unit, pdu, transaction))
            self.frames_decoded += 1
        if garbage_from is not None:
            results.append(self._reject("garbage", buffer[garbage_from:offset]))
        self._buffer = buffer[offset:]
        return results


_WAIT = object()  # "cannot tell until more bytes arrive"


class RtuDecoder(_Decoder):
    """RTU bytes in, ``Message`` and ``BadFrame`` out; ``feed`` never raises.

    A frame is taken where its function's length fits and its CRC is right;
    anything else is skipped a byte at a time (a bad CRC, another unit's
    garbage) and reported as one ``BadFrame`` per run of skipped bytes. A
    candidate still waiting for its rest loses to a whole valid frame that
    starts inside it, so a corrupt length cannot hold back the frames after it.
    ``silence()`` says the line was quiet for 3.5 characters: whatever is
    buffered can never be completed and is dropped.
    """

    def feed(self, chunk: bytes) -> list[Message | BadFrame]:
        """Take the next bytes of the stream; return what they complete, in order."""
        buffer = self._buffer + chunk if self._buffer else bytes(chunk)
        results: list[Message | BadFrame] = []
        offset, end = 0, len(buffer)
        skipped_from, skip_reason = None, "garbage"
        while end - offset >= _SHORTEST_RTU:
            length = self._length_at(buffer, offset, end)
            if length is _WAIT:
                break
            if length is not None and end - offset < length:
                later = self._whole_frame_after(buffer, offset, end)
                if later is None:
                    break
                if skipped_from is None:
                    skipped_from, skip_reason = offset, "cut short by the next frame"
                offset = later
                continue
            if length is not None and self._crc_ok(buffer, offset, length):
                if skipped_from is not None:
                    results.append(self._reject(skip_reason, buffer[skipped_from:offset]))
                    skipped_from, skip_reason = None, "garbage"
                frame = buffer[offset:offset + length]
                offset += length
                try:
                    pdu = self._decode_pdu(frame[1:-2])
                except ModbusError as error:
                    results.append(self._reject(error.reason, frame))
                    continue
                results.append(Message(frame[0], pdu))
                self.frames_decoded += 1
                continue
            if skipped_from is None:
                skipped_from = offset
                skip_reason = "garbage" if length is None else "bad CRC"
            offset += 1
        if skipped_from is not None:
            results.append(self._reject(skip_reason, buffer[skipped_from:offset]))
        self._buffer = buffer[offset:]
        return results

    def silence(self) -> list[BadFrame]:
        """The line went quiet: drop what is buffered (a frame cut short), reported."""
        if not self._buffer:
            return []
        dropped, self._buffer = self._buffer, b""
        return [self._reject("cut short by silence", dropped)]

    def _length_at(self, buffer: bytes, offset: int, end: int):
        """The length of the frame that would start at ``offset``: None if none can, or _WAIT."""
        # (Replies from unit 0 cannot be: register values are full of 00
        # bytes, which must not start a frame inside another.)
        if buffer[offset] not in (_REQUEST_UNITS if self.requests else _RESPONSE_UNITS):
            return None
        function = buffer[offset + 1]
        if self.requests:
            if function in READS or function == Function.WRITE_SINGLE:
                return 8
            if function == Function.WRITE_MULTIPLE:
                if end - offset < 7:
                    return _WAIT
                count = buffer[offset + 6]
                return 9 + count if count and count % 2 == 0 else None
            return None
        if function & EXCEPTION_FLAG:
            return 5 if (function & ~EXCEPTION_FLAG) in _FUNCTIONS else None
        if function in READS:
            count = buffer[offset + 2]
            return 5 + count if count and count % 2 == 0 and count <= 250 else None
        if function == Function.WRITE_SINGLE or function == Function.WRITE_MULTIPLE:
            return 8
        return None

    def _whole_frame_after(self, buffer: bytes, offset: int, end: int) -> int | None:
        """Where a whole frame with a right CRC starts after ``offset``, if one does."""
        for start in range(offset + 1, end - _SHORTEST_RTU + 1):
            length = self._length_at(buffer, start, end)
            if (length is not None and length is not _WAIT and start + length <= end
                    and self._crc_ok(buffer, start, length)):
                return start
        return None

    @staticmethod
    def _crc_ok(buffer: bytes, offset: int, length: int) -> bool:
        stop = offset + length - 2
        return crc16_modbus(buffer, offset, stop) == int.from_bytes(
            buffer[stop:stop + 2], "little")
