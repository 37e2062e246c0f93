"""Samples in an SQLite file, bounded by age and by size."""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Sequence

from octolux.history.query import Query, Sample, series_from_rows
from octolux.history.store import ConnectionPerThread

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS octolux_series (
    id INTEGER PRIMARY KEY,
    inverter TEXT NOT NULL,
    key TEXT NOT NULL,
    UNIQUE (inverter, key)
);
CREATE TABLE IF NOT EXISTS octolux_samples (
    series INTEGER NOT NULL REFERENCES octolux_series (id),
    at REAL NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series, at)
) WITHOUT ROWID;
"""


class SqliteStore(ConnectionPerThread):
    """Samples in an SQLite file (stdlib ``sqlite3``), bounded by age and by size.

    One row per sample, keyed by (series, time) in a WITHOUT ROWID table:
    about 20 bytes a value. ``max_size`` (bytes of the database file) is kept by
    deleting the oldest samples; ``retention`` (seconds, 0 = keep all) by
    deleting older ones.
    """

    errors = (sqlite3.Error,)
    _INSERT_SERIES = "INSERT OR IGNORE INTO octolux_series (inverter, key) VALUES (?, ?)"
    _SELECT_SERIES = "SELECT id FROM octolux_series WHERE inverter = ? AND key = ?"

    def __init__(self, path: str, *, retention: float = 0.0, max_size: int = 0):
        super().__init__()
        self.path = os.fspath(path)
        self.retention = retention
        self.max_size = max_size
        self.description = f"SQLite {self.path}"

    # -- connections: one per thread ------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            # Set before the first table exists, so that deleted samples give
            # their pages back to the file system (see _vacuum).
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            # WAL: queries never wait for the writer, nor the writer for them.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA journal_size_limit = 8388608")
            connection.executescript(_SQLITE_SCHEMA)
            self._local.connection = connection
        return connection

    # -- writing ----------------------------------------------------------------------

    def write(self, samples: Sequence[Sample]) -> None:
        """One transaction for all of ``samples``."""
        try:
            connection = self._connection()
            rows = [(self._series_id(connection, s.inverter, s.key), round(s.at, 3), s.value)
                    for s in samples]
            with _transaction(connection):
                connection.executemany(
                    "INSERT INTO octolux_samples (series, at, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (series, at) DO UPDATE SET value = excluded.value",
                    rows,
                )
            if self.max_size:
                self._keep_size(connection)
        except sqlite3.Error:
            self._reset()
            raise

    # -- limits -----------------------------------------------------------------------

    def prune(self, now: float) -> None:
        """Delete samples older than the retention, then keep within ``max_size``."""
        try:
            connection = self._connection()
            if self.retention:
                self._delete_before(connection, now - self.retention)
            if self.max_size:
                self._keep_size(connection)
        except sqlite3.Error:
            self._reset()
            raise

    def size(self, connection: sqlite3.Connection | None = None) -> int:
        """Bytes of the database in use (free pages not counted)."""
        connection = connection or self._connection()
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    def _keep_size(self, connection: sqlite3.Connection) -> None:
        """Over ``max_size``: delete the oldest samples down to 90 % of it."""
        for _ in range(10):  # each round deletes a share of the time span
            used = self.size(connection)
            if used <= self.max_size:
                return
            oldest, newest = self._time_span(connection)
            if oldest is None:
                return
            share = min(1.0, (used - 0.9 * self.max_size) / used)
            cut = oldest + (newest - oldest) * share
            # The newest instant is never deleted: something must remain.
            self._delete_before(connection, max(cut, math.nextafter(oldest, math.inf)))
        if self.size(connection) > self.max_size:
            raise sqlite3.OperationalError(f"cannot get {self.path} under max_size")

    def _time_span(self, connection) -> tuple[float | None, float | None]:
        # Per series, so each min/max is one look in the primary key rather
        # than a scan of every sample.
        return connection.execute(
            "SELECT min(first), max(last) FROM (SELECT"
            " (SELECT min(at) FROM octolux_samples WHERE series = s.id) AS first,"
            " (SELECT max(at) FROM octolux_samples WHERE series = s.id) AS last"
            " FROM octolux_series s)"
        ).fetchone()

    def _delete_before(self, connection: sqlite3.Connection, cut: float) -> None:
        ids = [row[0] for row in connection.execute("SELECT id FROM octolux_series")]
        with _transaction(connection):
            connection.executemany(
                "DELETE FROM octolux_samples WHERE series = ? AND at < ?",
                [(series, cut) for series in ids],
            )
        # Each step of this pragma frees one page, and execute() steps once:
        # executescript runs it to the end.
        connection.executescript("PRAGMA incremental_vacuum")

    # -- reading ----------------------------------------------------------------------

    def query(self, query: Query) -> dict[str, list]:
        """One aggregate per key and step, computed by SQLite."""
        try:
            connection = self._connection()
            marks = ", ".join("?" for _ in query.keys)
            rows = connection.execute(
                "SELECT s.key, CAST((x.at - ?) / ? AS INTEGER) AS bucket,"
                f" {query.aggregate}(x.value)"
                " FROM octolux_samples x JOIN octolux_series s ON s.id = x.series"
                f" WHERE s.inverter = ? AND s.key IN ({marks}) AND x.at >= ? AND x.at < ?"
                " GROUP BY s.key, bucket ORDER BY s.key, bucket",
                (query.since, query.step, query.inverter, *query.keys, query.since, query.until),
            )
            return series_from_rows(query, rows)
        except sqlite3.Error:
            self._close_quietly()
            raise



@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection):
    """BEGIN ... COMMIT, or ROLLBACK on any error (the connection is in autocommit mode)."""
    connection.execute("BEGIN")
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            # The original error is the one worth raising.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
