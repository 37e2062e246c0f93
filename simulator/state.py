"""Holding registers kept across restarts (``--state FILE``): a small JSON document.

Besides the writable holding registers it keeps the inverter's clock, as its
offset in seconds from the simulated time: a clock a bridge has set stays set
across a restart, as a real inverter's battery-backed clock does.

``PlantState`` restores a plant from its file and saves it after each change.

Written atomically (a temporary file in the same directory, then
``os.replace``), so that a crash mid-write leaves the old file, never half a
new one.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs
from twisted.logger import Logger

from simulator.logs import observer
from simulator.plant import Plant
from simulator.registers import RegisterError

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


class PlantState:
    """One dongle's state file: the plant restored from it at start, saved after each change."""

    log = Logger(observer=observer)

    def __init__(self, path: str, plant: Plant, datalog: str, inverter: str):
        self.path = path
        self.plant = plant
        self.datalog = datalog
        self.inverter = inverter

    def restore(self) -> None:
        """Load the saved registers and clock into the plant; StateFileError if they cannot be."""
        saved = read_saved(self.path)
        if saved is None:
            self.log.info("dongle {datalog}: no state file {path} yet: starting from defaults",
                          datalog=self.datalog, path=self.path)
            return
        try:
            changes = self.plant.holding.load(saved.holding)
        except RegisterError as error:
            raise StateFileError(f"state file {self.path!r}: {error}") from None
        if saved.clock_offset is not None:
            # The saved clock wins over --clock-offset: it is where the inverter's clock is.
            self.plant.set_clock_offset(datetime.timedelta(seconds=saved.clock_offset))
        self.log.info("dongle {datalog}: restored {count} holding registers and the clock "
                      "({offset:+.0f} s) from {path}", datalog=self.datalog,
                      count=len(changes), offset=self.plant.clock_offset.total_seconds(),
                      path=self.path)

    def save(self) -> None:
        """Write the writable holding registers and the clock (errors are logged, not raised)."""
        try:
            write_state(self.path, self.plant.holding.writable(), self.datalog, self.inverter,
                        self.plant.clock_offset.total_seconds())
        except OSError as error:
            self.log.error("dongle {datalog}: cannot save state to {path}: {error}",
                           datalog=self.datalog, path=self.path, error=str(error))
