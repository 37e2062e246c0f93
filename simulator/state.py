"""Holding registers kept across restarts (``--state FILE``): a small JSON document.

Besides the writable holding registers it keeps the inverter's clock, as its
offset in seconds from the simulated time: a clock a bridge has set stays set
across a restart, as a real inverter's battery-backed clock does.

Written atomically (a temporary file in the same directory, then
``os.replace``), so that a crash mid-write leaves the old file, never half a
new one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs

FORMAT_VERSION = 1


class StateFileError(ValueError):
    """A state file that cannot be read back: not JSON, or not holding registers."""


@attrs.frozen
class SavedState:
    """What a state file holds: writable holding registers and the clock's offset (or None)."""

    holding: dict[int, int]
    clock_offset: float | None = None  # seconds the inverter's clock is ahead


def read_state(path: str | os.PathLike) -> dict[int, int] | None:
    """The saved holding registers, or None if there is no file yet."""
    saved = read_saved(path)
    return None if saved is None else saved.holding


def read_saved(path: str | os.PathLike) -> SavedState | None:
    """Everything saved in ``path``, or None if there is no file yet."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateFileError(f"cannot read state file {str(path)!r}: {error}") from None
    try:
        document = json.loads(text)
        registers = document["holding"]
        holding = {int(register): int(value) for register, value in registers.items()}
        clock_offset = document.get("clock_offset")
        if clock_offset is not None:
            clock_offset = float(clock_offset)
            if not math.isfinite(clock_offset):
                raise ValueError(f"clock_offset is not a number of seconds: {clock_offset}")
        return SavedState(holding, clock_offset)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StateFileError(
            f"state file {str(path)!r} does not hold holding registers: {error}"
        ) from None


def write_state(
    path: str | os.PathLike,
    registers: Mapping[int, int],
    datalog: str,
    inverter: str,
    clock_offset: float | None = None,
) -> None:
    """Save ``registers`` (and the clock's offset, if given) to ``path`` atomically."""
    path = Path(path)
    document = {
        "version": FORMAT_VERSION,
        "datalog": datalog,
        "inverter": inverter,
        "holding": {str(register): value for register, value in sorted(registers.items())},
    }
    if clock_offset is not None:
        document["clock_offset"] = clock_offset
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Leave no stray temporary file behind, whatever went wrong.
        Path(temporary).unlink(missing_ok=True)
        raise
