"""CRC-16/MODBUS, the checksum that guards every translated-data frame.

The CRC is most of the cost of decoding a frame, so it consumes two bytes per
step: a 16-bit CRC state XORed with the next 16 bits of input determines the
state after them, so one lookup in a 65536-entry table replaces two lookups in
the classic 256-entry table. The table is a tuple (about 2.3 MB with its int
objects), not a compact array of u16 (128 KiB): indexing an array makes a new
int at every step, which cost a third of the time.
"""

from __future__ import annotations

import struct


def _byte_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_BYTE_TABLE = _byte_table()


def _word_table() -> tuple[int, ...]:
    """The state after feeding two zero bytes to each state ``hi << 8 | lo``.

    The CRC is linear: feeding bytes lo, hi to state c is feeding two zero
    bytes to c ^ (lo | hi << 8). Two steps of the byte table, the first of
    which depends on ``lo`` alone, so it is computed once per ``lo``.
    """
    table = _BYTE_TABLE
    first = [(table[low] & 0xFF, table[low] >> 8) for low in range(256)]
    return tuple(
        carried ^ table[high ^ low_part] for high in range(256) for low_part, carried in first
    )


_WORD_TABLE = _word_table()


def _words(count: int) -> struct.Struct:
    return _WORDS.get(count) or _WORDS.setdefault(count, struct.Struct(f"<{count}H"))


_WORDS: dict[int, struct.Struct] = {}


def crc16_modbus(
    data: bytes | bytearray | memoryview, start: int = 0, stop: int | None = None
) -> int:
    """Return the CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001) of ``data[start:stop]``.

    (The range saves the caller a slice or memoryview: this runs for every frame.)
    """
    if stop is None:
        stop = len(data)
    table = _WORD_TABLE
    crc = 0xFFFF
    length = stop - start
    for word in _words(length >> 1).unpack_from(data, start):
        crc = table[crc ^ word]
    if length & 1:
        crc = (crc >> 8) ^ _BYTE_TABLE[(crc ^ data[stop - 1]) & 0xFF]
    return crc
