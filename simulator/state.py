"""Holding registers kept across restarts (``--state FILE``): a small JSON document.

Written atomically (a temporary file in the same directory, then
``os.replace``), so that a crash mid-write leaves the old file, never half a
new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

FORMAT_VERSION = 1


class StateFileError(ValueError):
    """A state file that cannot be read back: not JSON, or not holding registers."""


def read_state(path: str | os.PathLike) -> dict[int, int] | None:
    """The saved holding registers, or None if there is no file yet."""
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
        return {int(register): int(value) for register, value in registers.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StateFileError(
            f"state file {str(path)!r} does not hold holding registers: {error}"
        ) from None


def write_state(
    path: str | os.PathLike, registers: Mapping[int, int], datalog: str, inverter: str
) -> None:
    """Save ``registers`` to ``path`` atomically."""
    path = Path(path)
    document = {
        "version": FORMAT_VERSION,
        "datalog": datalog,
        "inverter": inverter,
        "holding": {str(register): value for register, value in sorted(registers.items())},
    }
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
