"""The history of what each inverter reported: every input value and register change, with its time.

Three layers, so that no database call ever runs on the reactor thread:

- ``Recorder`` observes one ``Inverter`` (like the MQTT bridge does) and turns
  what it reports into ``Sample`` records: every numeric input value of every
  frame, every holding register whose value changed (key ``hold/<register>``)
  and every change of the datalogger link (key ``connected``, 1 or 0).
- ``HistoryWriter`` owns one store and one thread. ``add`` (reactor thread)
  puts samples in a bounded buffer and returns at once; the thread writes them
  in batches. A database that is down or full costs nothing but the samples
  that overflow the buffer: writes are retried, the loss is counted, and each
  outage is logged once when it starts and once when it ends.
- A store (``SqliteStore``, ``PostgresStore``) is the database itself: plain
  blocking code, called only from its writer's thread (writes, pruning) or
  from the history's own thread pool (queries).

``HistoryService`` ties them together for ``makeService`` and answers
``query`` (``GET /api/history``) through ``deferToThreadPool``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from octolux.config.ini import HistoryConfig, mask_postgres_uri

log = Logger()

CONNECTED = "connected"  # the key of the link state: 1 connected, 0 not
BUFFER_SIZE = 100_000  # samples kept while the database is away (~30 hours of frames)
BATCH_SIZE = 2_000  # samples written in one transaction
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds between attempts while failing
PRUNE_INTERVAL = 3600.0  # seconds between applications of retention and size limits
STOP_TIMEOUT = 10.0  # seconds the final flush may take when the bridge stops
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


# -- the recorder: an observer of one inverter ------------------------------------------


class SampleSink(Protocol):
    """Where a recorder sends samples (``HistoryService`` in production)."""

    def add(self, samples: Sequence[Sample]) -> None:
        """Take ``samples``; never blocks."""


class Recorder:
    """Turns what one inverter reports into samples (an ``InverterObserver``).

    Register values are recorded when they change: the first value seen after
    start-up counts as a change.
    """

    def __init__(self, inverter_name: str, sink: SampleSink, clock):
        self.inverter_name = inverter_name
        self._sink = sink
        self._clock = clock
        self._registers: dict[int, int] = {}

    def inputs_received(self, blocks: Mapping[int, Mapping[str, Any]]) -> None:
        """Every numeric value of every block (text values such as the serial are left out)."""
        at = self._clock.seconds()
        name = self.inverter_name
        samples = [
            Sample(name, at, key, float(value))
            for values in blocks.values()
            for key, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if samples:
            self._sink.add(samples)

    def registers_received(self, registers: Mapping[int, int]) -> None:
        """The registers whose value differs from the last one recorded."""
        at = self._clock.seconds()
        changed = []
        for register, value in sorted(registers.items()):
            if self._registers.get(register) != value:
                self._registers[register] = value
                changed.append(Sample(self.inverter_name, at, f"hold/{register}", float(value)))
        if changed:
            self._sink.add(changed)

    def connection_changed(self, connected: bool) -> None:
        """The link state, as key ``connected``."""
        at = self._clock.seconds()
        self._sink.add([Sample(self.inverter_name, at, CONNECTED, 1.0 if connected else 0.0)])


# -- stores ---------------------------------------------------------------------------------


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


class _ConnectionPerThread:
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


class SqliteStore(_ConnectionPerThread):
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


_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS octolux_series (
    id serial PRIMARY KEY,
    inverter text NOT NULL,
    key text NOT NULL,
    UNIQUE (inverter, key)
);
CREATE TABLE IF NOT EXISTS octolux_samples (
    series integer NOT NULL REFERENCES octolux_series (id),
    at timestamptz NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (series, at)
);
CREATE OR REPLACE VIEW octolux_history AS
    SELECT s.inverter, s.key, x.at AS time, x.value
    FROM octolux_samples x JOIN octolux_series s ON s.id = x.series;
"""
# Several bridges may share a database: one creates the schema at a time.
_SCHEMA_LOCK = 0x6F63746F6C7578  # "octolux"


class PostgresStore(_ConnectionPerThread):
    """Samples in a PostgreSQL database (psycopg 3), kept for ``retention`` seconds (0: all).

    The same records as ``SqliteStore``, with real timestamps, plus a view
    ``octolux_history (inverter, key, time, value)`` for Grafana and friends.
    The size of the database is the server's business: no ``max_size`` here.
    """

    _INSERT_SERIES = (
        "INSERT INTO octolux_series (inverter, key) VALUES (%s, %s)"
        " ON CONFLICT (inverter, key) DO NOTHING"
    )
    _SELECT_SERIES = "SELECT id FROM octolux_series WHERE inverter = %s AND key = %s"

    def __init__(self, uri: str, *, retention: float = 0.0, connect_timeout: int = 5):
        import psycopg  # only a bridge with a [history] uri needs it
        from psycopg.conninfo import conninfo_to_dict

        super().__init__()
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.retention = retention
        self._uri = uri
        self._connect_timeout = connect_timeout
        self.password = conninfo_to_dict(uri).get("password")
        self.description = f"PostgreSQL {mask_postgres_uri(uri)}"

    def __repr__(self) -> str:
        return f"<PostgresStore {self.description}>"

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._psycopg.connect(
                self._uri,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name="octolux",
            )
            try:
                with connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    connection.execute(_POSTGRES_SCHEMA)
            except self._psycopg.Error:
                connection.close()
                raise
            self._local.connection = connection
        return connection

    def write(self, samples: Sequence[Sample]) -> None:
        """One transaction for all of ``samples`` (psycopg pipelines the inserts)."""
        try:
            connection = self._connection()
            rows = [(self._series_id(connection, s.inverter, s.key), s.at, s.value)
                    for s in samples]
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO octolux_samples (series, at, value)"
                    " VALUES (%s, to_timestamp(%s), %s)"
                    " ON CONFLICT (series, at) DO UPDATE SET value = excluded.value",
                    rows,
                )
        except self._psycopg.Error:
            self._reset()
            raise

    def prune(self, now: float) -> None:
        """Delete samples older than the retention."""
        if not self.retention:
            return
        try:
            connection = self._connection()
            ids = [row[0] for row in connection.execute("SELECT id FROM octolux_series")]
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(
                    "DELETE FROM octolux_samples WHERE series = %s AND at < to_timestamp(%s)",
                    [(series, now - self.retention) for series in ids],
                )
        except self._psycopg.Error:
            self._reset()
            raise

    def query(self, query: Query) -> dict[str, list]:
        """One aggregate per key and step, computed by the server."""
        try:
            connection = self._connection()
            rows = connection.execute(
                "SELECT s.key, floor((extract(epoch FROM x.at) - %s) / %s)::bigint AS bucket,"
                f" {query.aggregate}(x.value)"
                " FROM octolux_samples x JOIN octolux_series s ON s.id = x.series"
                " WHERE s.inverter = %s AND s.key = ANY(%s)"
                " AND x.at >= to_timestamp(%s) AND x.at < to_timestamp(%s)"
                " GROUP BY 1, 2 ORDER BY 1, 2",
                (query.since, query.step, query.inverter, list(query.keys),
                 query.since, query.until),
            )
            return series_from_rows(query, rows)
        except self._psycopg.Error:
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


# -- the writer: one thread, one store, a bounded buffer ------------------------------------


@attrs.define
class WriterStats:
    """How a writer is doing, for the page and the tests."""

    written: int = 0  # samples committed
    lost: int = 0  # samples dropped because the buffer was full
    pending: int = 0  # samples waiting (buffered or being written)
    failing: bool = False  # is the database unavailable right now?
    error: str = ""  # why, while failing


class HistoryWriter:
    """Writes the samples given to ``add`` to one store, from one thread of its own.

    ``add`` never blocks the reactor: beyond ``buffer_size`` waiting samples,
    the oldest are dropped and counted. While the store fails, the thread
    retries after each of ``retry_delays`` (the last one repeating).
    """

    def __init__(
        self,
        store: Store,
        reactor,
        *,
        buffer_size: int = BUFFER_SIZE,
        batch_size: int = BATCH_SIZE,
        retry_delays: Sequence[float] | None = None,  # default: RETRY_DELAYS
        prune_interval: float = PRUNE_INTERVAL,
        now: Callable[[], float] = time.time,
    ):
        self.store = store
        self._reactor = reactor
        self._buffer_size = buffer_size
        self._batch_size = min(batch_size, buffer_size)
        self._retry_delays = tuple(RETRY_DELAYS if retry_delays is None else retry_delays)
        self._prune_interval = prune_interval
        self._now = now
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._buffer: collections.deque[Sample] = collections.deque()
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stopped: defer.Deferred | None = None
        self._written = 0
        self._lost = 0
        self._lost_this_outage = 0
        self._dropping = False  # reactor thread: has this run of losses been logged?
        self._failing_since: float | None = None
        self._error = ""

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        with self._lock:
            return WriterStats(
                written=self._written,
                lost=self._lost,
                pending=len(self._buffer) + self._in_flight,
                failing=self._failing_since is not None,
                error=self._error,
            )

    # -- reactor thread --------------------------------------------------------------

    def start(self) -> None:
        """Start the writing thread."""
        self._stopped = defer.Deferred()
        self._thread = threading.Thread(
            target=self._run, name=f"octolux-history ({self.store.description})", daemon=True
        )
        self._thread.start()

    def add(self, samples: Sequence[Sample]) -> None:
        """Queue ``samples``; drops the oldest waiting ones beyond the buffer's size."""
        with self._lock:
            if self._stopping:
                return
            self._buffer.extend(samples)
            overflow = len(self._buffer) + self._in_flight - self._buffer_size
            dropped = 0
            while overflow > 0 and self._buffer:
                self._buffer.popleft()
                overflow -= 1
                dropped += 1
            self._lost += dropped
            self._lost_this_outage += dropped
            if not dropped:
                self._dropping = False
            self._wakeup.notify()
        if dropped and not self._dropping:
            self._dropping = True
            log.warn(
                "history: {store}: buffer full ({size} samples), dropping the oldest until"
                " the database takes them again",
                store=self.store.description,
                size=self._buffer_size,
            )

    def stop(self) -> defer.Deferred:
        """Write what is waiting (for up to ``STOP_TIMEOUT`` s), then end the thread."""
        if self._thread is None:
            return defer.succeed(None)
        with self._lock:
            self._stopping = True
            self._wakeup.notify()
        thread, self._thread = self._thread, None
        return self._stopped if thread.is_alive() else defer.succeed(None)

    # -- the writing thread -----------------------------------------------------------

    def _run(self) -> None:
        next_prune = 0.0  # at once: a bridge that was off may find old samples
        attempt = 0
        stop_deadline = None
        try:
            while True:
                with self._lock:
                    while not (self._buffer or self._stopping) and self._now() < next_prune:
                        self._wakeup.wait(max(0.0, next_prune - self._now()))
                    if self._stopping and stop_deadline is None:
                        stop_deadline = self._now() + STOP_TIMEOUT
                    if self._stopping and (not self._buffer or self._now() > stop_deadline):
                        break
                    batch = [self._buffer.popleft()
                             for _ in range(min(self._batch_size, len(self._buffer)))]
                    self._in_flight = len(batch)
                try:
                    if self._now() >= next_prune and not self._stopping:
                        self.store.prune(self._now())
                        next_prune = self._now() + self._prune_interval
                    if batch:
                        self.store.write(batch)
                except self.store.errors as error:
                    self._failed(batch, error)
                    delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
                    attempt += 1
                    with self._lock:
                        if self._stopping and self._now() + delay > stop_deadline:
                            break
                        self._wakeup.wait(delay)
                    continue
                attempt = 0
                self._succeeded(len(batch))
        finally:
            self._finish()

    def _failed(self, batch: list[Sample], error: BaseException) -> None:
        with self._lock:
            # Back to the front, as the oldest. They were counted in the
            # bound while in flight, so the buffer stays within it.
            self._buffer.extendleft(reversed(batch))
            self._in_flight = 0
            first = self._failing_since is None
            if first:
                self._failing_since = self._now()
            self._error = self._scrub(error)
        if first:
            self._log(log.warn, "cannot write ({error}); keeping up to {size} samples and retrying",
                      error=self._error, size=self._buffer_size)

    def _succeeded(self, count: int) -> None:
        with self._lock:
            self._in_flight = 0
            self._written += count
            since = self._failing_since
            self._failing_since = None
            self._error = ""
            lost, self._lost_this_outage = self._lost_this_outage, 0
        if since is not None:
            self._log(log.info, "writing again after {seconds:.0f} s; {lost} samples lost",
                      seconds=self._now() - since, lost=lost)

    def _finish(self) -> None:
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            self._lost += left
        with contextlib.suppress(*self.store.errors):  # a broken connection: nothing to lose
            self.store.close()
        if left:
            self._log(log.warn, "{left} samples not written: the database was unavailable when"
                      " the bridge stopped", left=left)
        stopped = self._stopped
        self._reactor.callFromThread(stopped.callback, None)

    def _log(self, emit, text: str, **fields) -> None:
        """Log ``history: <store>: <text>`` from the writing thread.

        Through the reactor: log observers (files, stdout) are not written to
        from two threads at once.
        """
        self._reactor.callFromThread(emit, "history: {store}: " + text,
                                     store=self.store.description, **fields)

    def _scrub(self, error: BaseException) -> str:
        """The error as one line, never with a password in it."""
        text = " ".join(str(error).split()) or type(error).__name__
        password = getattr(self.store, "password", None)
        return text.replace(password, "***") if password else text


# -- the service --------------------------------------------------------------------------


class HistoryService(service.Service):
    """The writers of the configured stores, and queries against the first one.

    Queries run in a thread pool of their own, so a slow database never takes
    the threads the reactor lends to others (name resolution, for instance).
    """

    def __init__(self, reactor, stores: Sequence[Store], **writer_options):
        self._reactor = reactor
        self.stores = tuple(stores)
        self.writers = [HistoryWriter(store, reactor, **writer_options) for store in stores]
        self._pool = ThreadPool(minthreads=0, maxthreads=2, name="octolux-history-queries")

    def recorder(self, inverter_name: str) -> Recorder:
        """An observer recording one inverter into every store."""
        return Recorder(inverter_name, self, self._reactor)

    def add(self, samples: Sequence[Sample]) -> None:
        """Give ``samples`` to every writer (reactor thread; never blocks)."""
        for writer in self.writers:
            writer.add(samples)

    def query(self, query: Query) -> defer.Deferred[dict[str, list]]:
        """Answer ``query`` from the first store, off the reactor thread."""
        store = self.stores[0]
        return threads.deferToThreadPool(self._reactor, self._pool, store.query, query)

    @property
    def query_errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions meaning "the database that answers queries is unavailable"."""
        return self.stores[0].errors

    def startService(self) -> None:
        """Start the writers and the query pool."""
        super().startService()
        for store in self.stores:
            log.info("history: recording into {store}", store=store.description)
        self._pool.start()
        for writer in self.writers:
            writer.start()

    def stopService(self) -> defer.Deferred:
        """Flush the writers; then stop the query pool (joining its threads off the reactor)."""
        super().stopService()
        stopping = defer.gatherResults([writer.stop() for writer in self.writers])
        # On the reactor's own pool, as given: no global reactor here.
        stopping.addCallback(lambda _: threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._stop_pool))
        return stopping

    def _stop_pool(self) -> None:
        # Each pool thread closes its own connection; there is no way to run
        # code on a given pool thread, so idle threads' connections go with
        # the threads (SQLite and libpq close them when collected).
        self._pool.stop()


def open_stores(config: HistoryConfig) -> list[Store]:
    """The stores ``[history]`` asks for; the first answers queries.

    With both, SQLite comes first: the page's charts then keep working while
    the PostgreSQL server is away.
    """
    stores: list[Store] = []
    if config.path is not None:
        stores.append(
            SqliteStore(config.path, retention=config.retention, max_size=config.max_size)
        )
    if config.uri is not None:
        stores.append(PostgresStore(config.uri, retention=config.retention))
    return stores


