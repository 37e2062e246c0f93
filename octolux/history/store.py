"""What every store of samples is: the ``Store`` interface, and one connection per thread.

A store (``octolux.history.sqlite``, ``octolux.history.postgres``) is the
database itself: plain blocking code, called only from its writer's thread
(writes, pruning) or from the history's own thread pool (queries).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Protocol

from octolux.history.query import Query, Sample


class Store(Protocol):
    """A database of samples. Blocking; never called on the reactor thread.

    ``write`` and ``prune`` run on the store's writer thread only; ``query`` on
    the history's thread pool (so a store keeps one connection per thread).
    ``errors`` are the exceptions meaning "the database is unavailable now":
    the writer keeps the samples and retries.
    """

    description: str  # for the log: no password
    errors: tuple[type[BaseException], ...]

    def write(self, samples: Sequence[Sample]) -> None:
        """Store ``samples`` in one transaction (a sample at an existing time replaces it)."""

    def prune(self, now: float) -> None:
        """Apply the retention (and size) limits."""

    def query(self, query: Query) -> dict[str, list]:
        """Answer ``query`` (see ``series_from_rows``)."""

    def close(self) -> None:
        """Close the calling thread's connection, if any."""


class ConnectionPerThread:
    """What both stores share: one connection per thread, and the writer thread's series ids.

    A subclass sets ``errors`` and the two series statements (in its driver's
    parameter style) and opens connections in ``_connection``.
    """

    errors: tuple[type[BaseException], ...]
    _INSERT_SERIES: str  # (inverter, key): insert unless already there
    _SELECT_SERIES: str  # (inverter, key) -> id

    def __init__(self):
        self._local = threading.local()
        self._series: dict[tuple[str, str], int] = {}  # writer thread only

    def close(self) -> None:
        """Close this thread's connection."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _close_quietly(self) -> None:
        # After an error: the error being raised is the one worth seeing.
        with contextlib.suppress(*self.errors):
            self.close()

    def _reset(self) -> None:
        # (Writer thread.) After an error the connection may be unusable (a
        # replaced or removed SQLite file, a restarted server): reopen on the
        # next attempt, and look the series ids up again.
        self._series.clear()
        self._close_quietly()

    def _series_id(self, connection, inverter: str, key: str) -> int:
        known = self._series.get((inverter, key))
        if known is None:
            connection.execute(self._INSERT_SERIES, (inverter, key))
            (known,) = connection.execute(self._SELECT_SERIES, (inverter, key)).fetchone()
            self._series[(inverter, key)] = known
        return known
