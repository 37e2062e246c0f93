"""The simulated day: the sun, the house's demand and the inverter's time slots. Pure functions.

Time slots are read on the inverter's own clock, as a real inverter reads them.
A slot whose start equals its end (``00:00-00:00``) is off; one whose end is
before its start runs over midnight.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

from octolux.lxp import holding


def sun(moment: datetime.datetime) -> float:
    """Clear-sky PV output at ``moment`` as a fraction of peak: 0 at night, 1 at a midsummer noon.

    A northern-European day: 8 hours of daylight in winter, 16 in summer,
    centred on 13:00 (solar noon in local summer time, near enough).
    """
    season = math.sin(2 * math.pi * (moment.timetuple().tm_yday - 80) / 365.25)
    day_length = 12.0 + 4.0 * season
    hour = moment.hour + moment.minute / 60 + moment.second / 3600 + moment.microsecond / 3.6e9
    position = (hour - (13.0 - day_length / 2)) / day_length
    if not 0.0 < position < 1.0:
        return 0.0
    return (0.65 + 0.35 * season) * math.sin(math.pi * position) ** 1.3


def house_load(moment: datetime.datetime) -> float:
    """The house's typical demand in watts: a base load, breakfast, lunch and evening peaks."""
    hour = moment.hour + moment.minute / 60 + moment.second / 3600

    def bump(centre: float, width: float) -> float:
        return math.exp(-(((hour - centre) / width) ** 2))

    return 300.0 + 700.0 * bump(7.5, 1.0) + 250.0 * bump(13.0, 2.5) + 1100.0 * bump(19.0, 2.0)


SECONDS_A_DAY = 86400


def _slot_seconds(value: int) -> int:
    """A time-slot register as seconds after midnight."""
    time = holding.decode_time(value)
    return time.hour * 3600 + time.minute * 60


def slots_set(registers: Sequence[int], schedule: str) -> list[tuple[int, int]]:
    """The slots of ``schedule`` that are on, as (start, end) seconds after midnight.

    A slot whose start equals its end (``00:00-00:00``) is off.
    """
    slots = []
    for start, end in holding.TIME_SLOTS[schedule]:
        span = (_slot_seconds(registers[start]), _slot_seconds(registers[end]))
        if span[0] != span[1]:
            slots.append(span)
    return slots


def in_schedule(registers: Sequence[int], schedule: str, moment: datetime.datetime) -> bool:
    """True if ``moment`` is inside one of ``schedule``'s slots, or the schedule has none.

    A slot includes its start and excludes its end; one that ends before it
    starts runs over midnight (``23:00-05:00``).
    """
    slots = slots_set(registers, schedule)
    if not slots:
        return True
    second = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
    for start, end in slots:
        if start < end and start <= second < end:
            return True
        if start > end and (second >= start or second < end):
            return True
    return False


def seconds_to_next_slot_edge(registers: Sequence[int], moment: datetime.datetime) -> float:
    """Seconds from ``moment`` to the next start or end of any slot that is on (inf if none)."""
    second = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
    edges = [
        edge
        for schedule in holding.TIME_SLOTS
        for slot in slots_set(registers, schedule)
        for edge in slot
    ]
    return min(((edge - second) % SECONDS_A_DAY for edge in edges), default=math.inf)
