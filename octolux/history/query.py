"""Samples and the questions asked of them, and the ``GET /api/history`` arguments.

Pure: no database, no thread, no Twisted. A store answers a ``Query`` with
rows that ``series_from_rows`` turns into the API's JSON shape.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

MAX_BUCKETS = 10_000  # per key and query: a step too small for its range is refused
AGGREGATES = ("avg", "min", "max")
_KEY = re.compile(r"[A-Za-z0-9_/]{1,64}\Z")


@attrs.frozen
class Sample:
    """One value of one key of one inverter at one time (seconds since the epoch)."""

    inverter: str
    at: float
    key: str
    value: float


class QueryError(ValueError):
    """A history query that cannot be answered as asked; the message says why."""


@attrs.frozen
class Query:
    """Values of ``keys`` of one inverter in ``[since, until)``, one aggregate per ``step`` seconds.

    Buckets start at ``since``: bucket ``n`` covers ``since + n * step`` up
    to the next one (so a query from a local midnight with a step of 86400
    gives one bucket per local day).
    """

    inverter: str
    keys: tuple[str, ...]
    since: float
    until: float
    step: float
    aggregate: str = "avg"

    def __attrs_post_init__(self):
        if not self.keys:
            raise QueryError("no key: ask for at least one, e.g. key=soc")
        for key in self.keys:
            if not _KEY.match(key):
                raise QueryError(f"not a key: {key!r}")
        if not (math.isfinite(self.since) and math.isfinite(self.until)):
            raise QueryError("since and until must be finite times")
        if self.until <= self.since:
            raise QueryError("until must be later than since")
        if not (math.isfinite(self.step) and self.step > 0):
            raise QueryError("step must be more than 0 seconds")
        if (self.until - self.since) / self.step > MAX_BUCKETS:
            raise QueryError(f"step too small: more than {MAX_BUCKETS} values per key")
        if self.aggregate not in AGGREGATES:
            raise QueryError(f"aggregate must be one of {', '.join(AGGREGATES)}")

    def bucket_time(self, bucket: int) -> float:
        """The start of bucket number ``bucket``."""
        return self.since + bucket * self.step


def series_from_rows(query: Query, rows: Iterable[tuple[str, int, float]]) -> dict[str, list]:
    """(key, bucket, value) rows -> ``{key: [[time, value], ...]}``, every asked key present."""
    result: dict[str, list] = {key: [] for key in query.keys}
    for key, bucket, value in rows:
        if value is not None:
            result[key].append([_round(query.bucket_time(int(bucket))), _round(value)])
    return result


def _round(number: float) -> float | int:
    """Short JSON: averages need no 15 digits; whole numbers print as such."""
    rounded = round(number, 3)
    return int(rounded) if rounded == int(rounded) else rounded


# -- times and steps as the HTTP API takes them ---------------------------------------

_STEP_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> float:
    """Seconds since the epoch (``1764505200``, ``1764505200.5``) or ISO 8601.

    ISO 8601 without an offset (``2026-11-30T12:00``) is the bridge's local time;
    ``Z`` or ``+01:00`` say otherwise. A date alone is its local midnight.
    """
    text = text.strip()
    try:
        return float(text) if re.fullmatch(r"-?\d+(\.\d*)?", text) else _iso(text)
    except ValueError:
        raise QueryError(f"not a time (seconds since 1970, or ISO 8601): {text!r}") from None


def _iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def parse_step(text: str) -> float:
    """Seconds (``300``), or a number with a unit: ``30s``, ``5m``, ``1h``, ``1d``."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([smhd]?)", text.strip())
    if match is None:
        raise QueryError(f"not a step (seconds, or 5m, 1h, 1d): {text!r}")
    return float(match[1]) * _STEP_UNITS[match[2] or "s"]


DEFAULT_RANGE = 86400.0  # seconds of history when ``since`` is not given
DEFAULT_POINTS = 300  # values per key when ``step`` is not given


def query_from_arguments(
    inverter: str, arguments: Mapping[str, Sequence[str]], now: float
) -> Query:
    """The ``GET /api/history`` query string (already split into lists of texts) -> ``Query``.

    ``key`` may repeat or hold several keys separated by commas; ``until``
    defaults to ``now``, ``since`` to 24 hours before ``until``, ``step`` to
    a 300th of the range, ``aggregate`` to ``avg``.
    """

    def one(name: str) -> str | None:
        values = arguments.get(name) or []
        if len(values) > 1:
            raise QueryError(f"{name} given {len(values)} times")
        return values[0] if values else None

    keys = tuple(key for value in arguments.get("key", ()) for key in value.split(",") if key)
    until_text, since_text, step_text = one("until"), one("since"), one("step")
    until = parse_time(until_text) if until_text else now
    since = parse_time(since_text) if since_text else until - DEFAULT_RANGE
    step = parse_step(step_text) if step_text else max(1.0, (until - since) / DEFAULT_POINTS)
    return Query(inverter, keys, since, until, step, one("aggregate") or "avg")
