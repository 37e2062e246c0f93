"""Holding register values kept compactly: one per inverter, 10,000 inverters in one process.

A dict of the 240 holding registers an inverter reports costs about 9 KiB (its
table, and an int object per value above 256); ``RegisterValues`` keeps
registers 0-239 in a 480-byte array and any other register in a small dict.
It is a ``MutableMapping[int, int]``: compared, iterated and updated as a dict.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, MutableMapping

DENSE = 240  # registers 0-239: what the inverter's holding register blocks cover
_ABSENT = -1


class RegisterValues(MutableMapping):
    """register -> 16-bit value; the registers of 0-239 seen so far, and any others."""

    __slots__ = ("_dense", "_count", "_sparse")

    def __init__(self, values=()):
        self._dense = array("i", [_ABSENT]) * DENSE  # 4 bytes a register: room for -1
        self._count = 0  # how many of _dense are present
        self._sparse: dict[int, int] = {}
        self.update(values)

    def __getitem__(self, register: int) -> int:
        if type(register) is int and 0 <= register < DENSE:
            value = self._dense[register]
            if value == _ABSENT:
                raise KeyError(register)
            return value
        return self._sparse[register]

    def __setitem__(self, register: int, value: int) -> None:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"a register value is 16 bits: {value!r}")
        if type(register) is int and 0 <= register < DENSE:
            if self._dense[register] == _ABSENT:
                self._count += 1
            self._dense[register] = value
        else:
            self._sparse[register] = value

    def store(self, register: int, values) -> None:
        """Set consecutive registers from ``register`` to ``values`` (16-bit each, unchecked).

        For a frame's values, already 16-bit: a slice of the array at once,
        where a register at a time would cost as much as decoding the frame.
        """
        end = register + len(values)
        low, high = min(max(register, 0), DENSE), min(max(end, 0), DENSE)
        if low < high:
            dense = self._dense
            self._count += dense[low:high].count(_ABSENT)
            dense[low:high] = array("i", values[low - register : high - register])
        if register < low or end > high:
            self._sparse.update(
                (number, value) for number, value in enumerate(values, register)
                if not low <= number < high
            )

    def __delitem__(self, register: int) -> None:
        if type(register) is int and 0 <= register < DENSE:
            if self._dense[register] == _ABSENT:
                raise KeyError(register)
            self._dense[register] = _ABSENT
            self._count -= 1
        else:
            del self._sparse[register]

    def __iter__(self) -> Iterator[int]:
        dense = self._dense
        yield from (register for register in range(DENSE) if dense[register] != _ABSENT)
        yield from self._sparse

    def __len__(self) -> int:
        return self._count + len(self._sparse)

    def __contains__(self, register) -> bool:
        if type(register) is int and 0 <= register < DENSE:
            return self._dense[register] != _ABSENT
        return register in self._sparse

    def __repr__(self) -> str:
        return f"RegisterValues({dict(self.items())!r})"
