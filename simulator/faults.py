"""Fault injection: what can go wrong, switched on by a ``Faults``, drawn from one seeded random.

``Faults`` says which faults are on; ``FaultInjection`` makes the random
choices (which frame gets garbage or a bad CRC, how a frame is split, which
request is answered BUSY), so that a seed repeats them. The timers (drops,
silence, foreign traffic, reply delays) stay with the sockets in
``simulator.dongle``.
"""

from __future__ import annotations

import random

import attrs

from octolux import lxp
from octolux.lxp.frames import PREFIX

GARBAGE_BYTES = bytes(b for b in range(256) if b != PREFIX[0])


def probability(instance, attribute, value):
    """attrs validator: 0-1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability, 0-1: {value!r}")


def non_negative(instance, attribute, value):
    """attrs validator: None or at least 0."""
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must not be negative: {value!r}")


def positive(instance, attribute, value):
    """attrs validator: None or more than 0."""
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive: {value!r}")


@attrs.frozen
class Faults:
    """Fault injection, all off by default. Replace a dongle's ``faults`` to change them live.

    ``drop_every`` and ``max_clients`` apply to connections made after a change.
    """

    drop_every: float | None = attrs.field(default=None, validator=positive)
    """Close each connection this many seconds after it was made."""
    garbage: float = attrs.field(default=0.0, validator=probability)
    """Probability of a few garbage bytes (never an ``A1``) before a frame."""
    corrupt_crc: float = attrs.field(default=0.0, validator=probability)
    """Probability of a wrong CRC on a translated-data frame."""
    split: int = attrs.field(default=0, validator=non_negative)
    """Send frames in random segments of 1..split bytes, one per reactor turn (0: whole)."""
    reply_delay: float = attrs.field(default=0.0, validator=non_negative)
    """Seconds between a request and its reply."""
    mute: bool = False
    """Answer no request (heartbeats and broadcasts go on)."""
    silent_after: float | None = attrs.field(default=None, validator=non_negative)
    """Go silent on each connection this many seconds after it was made: it stays open
    but nothing is sent and requests are ignored (a dongle that hangs)."""
    exception_rate: float = attrs.field(default=0.0, validator=probability)
    """Probability of answering a register request with a BUSY exception reply."""
    max_clients: int | None = attrs.field(default=None, validator=positive)
    """Close connections beyond this many clients at once."""
    foreign_traffic: float | None = attrs.field(default=None, validator=positive)
    """Every this many seconds, send a frame another client caused (cloud or app traffic)."""
    grid_down: bool = False
    """A power cut: the inverter runs off grid, on EPS if register 21 bit 0 allows."""


class FaultInjection:
    """The faults in force and the random choices they need, from one seeded ``random.Random``."""

    def __init__(self, faults: Faults, seed: int | None = None):
        self.faults = faults
        self.random = random.Random(seed)

    def busy(self, request) -> bool:
        """True if this register request is to be answered BUSY (``exception_rate``)."""
        rate = self.faults.exception_rate
        return bool(rate) and hasattr(request, "inverter") and self.random.random() < rate

    def corrupt_crc(self, frame) -> bool:
        """True if this frame's CRC is to be spoiled (translated-data frames only)."""
        rate = self.faults.corrupt_crc
        return (
            bool(rate)
            and frame.tcp_function == lxp.TcpFunction.TRANSLATED_DATA
            and self.random.random() < rate
        )

    def garbage(self) -> bytes:
        """A few garbage bytes (never the prefix's first) to send before a frame, or none."""
        rate = self.faults.garbage
        if rate and self.random.random() < rate:
            count = self.random.randint(1, 16)
            return bytes(self.random.choice(GARBAGE_BYTES) for _ in range(count))
        return b""

    def segments(self, data: bytes) -> list[bytes]:
        """``data`` cut into random pieces of 1..``split`` bytes (whole if ``split`` is 0)."""
        split = self.faults.split
        if not split:
            return [data]
        pieces = []
        while data:
            size = self.random.randint(1, split)
            pieces.append(data[:size])
            data = data[size:]
        return pieces
