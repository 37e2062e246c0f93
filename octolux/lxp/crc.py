"""CRC-16/MODBUS, the checksum that guards every translated-data frame."""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_modbus(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """Return the CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001) of ``data``."""
    # One table lookup per byte: this loop is most of the cost of decoding a
    # frame, so it binds the table locally and does nothing else.
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc
