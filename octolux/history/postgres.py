"""Samples in a PostgreSQL database (psycopg 3, imported only when one is configured)."""

from __future__ import annotations

from collections.abc import Sequence

from octolux.config.ini import mask_postgres_uri
from octolux.history.query import Query, Sample, series_from_rows
from octolux.history.store import ConnectionPerThread

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


class PostgresStore(ConnectionPerThread):
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
