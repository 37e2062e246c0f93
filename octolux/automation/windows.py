"""A plan as the inverter's own settings: time slots, enable bits and SOC limits. Pure.

The inverter keeps three AC charge and three forced discharge slots as times of
day on its own (local) clock, so a plan is written as at most the next 23.5
hours: the slots then act even while the bridge or the network is down. Only
settings that differ from what the inverter holds are written (``changes``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from octolux.automation.planner import EXECUTED_SLOTS, MAX_WINDOWS, Plan, _runs
from octolux.automation.prices import HALF_HOUR
from octolux.device.settings import SLOT_OFF, format_time_slot

# Which plan actions run in which of the inverter's modes.
_MODES = {"ac_charge": "charge", "forced_discharge": "export"}
# The SOC limit each mode heads for.
_LIMITS = {"ac_charge": "charge_amount_pct", "forced_discharge": "forced_discharge_soc"}


def time_windows(plan: Plan, mode: str, tz: datetime.tzinfo | None = None) -> list[str]:
    """``HH:MM-HH:MM`` (local time) of each run of ``mode``'s half-hours written ahead."""
    slots = plan.slots[:EXECUTED_SLOTS]
    runs = _runs([slot.action for slot in slots], _MODES[mode])[:MAX_WINDOWS]
    windows = []
    for start, end in runs:
        first = datetime.datetime.fromtimestamp(slots[start].start, tz)
        last = datetime.datetime.fromtimestamp(slots[end - 1].start + HALF_HOUR, tz)
        windows.append(format_time_slot(first.time(), last.time()))
    return windows


def inverter_settings(plan: Plan, tz: datetime.tzinfo | None = None) -> dict[str, bool | int | str]:
    """The settings (``octolux.device.settings`` names) that carry ``plan`` out.

    A mode with no window is only switched off: its slots and limit are left
    as they are (nothing reads them then), which saves writes.
    """
    wanted: dict[str, bool | int | str] = {}
    for mode, limit in _LIMITS.items():
        windows = time_windows(plan, mode, tz)
        if not windows:
            wanted[mode] = False
            continue
        for number in range(1, MAX_WINDOWS + 1):
            wanted[f"{mode}_slot_{number}"] = (
                windows[number - 1] if number <= len(windows) else SLOT_OFF
            )
        wanted[limit] = plan.charge_soc if mode == "ac_charge" else plan.export_soc
        wanted[mode] = True
    return wanted


def changes(wanted: Mapping[str, bool | int | str],
            current: Mapping[str, bool | int | str | None]) -> list[tuple[str, bool | int | str]]:
    """The settings to write, in a safe order: modes switched off first, then slots and
    limits, then modes switched on (never a mode on with yesterday's slots)."""
    differing = [(name, value) for name, value in wanted.items() if current.get(name) != value]
    off = [(name, value) for name, value in differing if value is False]
    on = [(name, value) for name, value in differing if value is True]
    rest = [(name, value) for name, value in differing if not isinstance(value, bool)]
    return off + rest + on
