"""How fast the history stores write, and how much room a day of samples takes.

    .venv/bin/python bench/history.py [--samples 200000]

For each store (SQLite in a temporary file; PostgreSQL in a private server
started here, as the tests do): samples per second through ``store.write``
in the writer's batch size, and through a ``HistoryWriter`` (its thread and
buffer included). The baseline, measured in the same run on the same
database, is a bare ``executemany`` of the same rows into a table without
keys or upserts: the ratio is what the history's schema and bookkeeping cost
(a figure below 1 is slower than the baseline).
Also: the SQLite bytes one inverter's day takes (a frame every 2 minutes).
Prints figures, never fails on them.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from octolux.history.query import Sample  # noqa: E402
from octolux.history.sqlite import SqliteStore  # noqa: E402
from octolux.history.writer import BATCH_SIZE, HistoryWriter  # noqa: E402
from octolux.lxp.inputs import FIELDS, Kind  # noqa: E402

T0 = 1_764_500_000.0
FRAME_KEYS = [f.key for f in FIELDS if f.kind is not Kind.TEXT and f.block <= 3]


def frames(count: int, start: float = T0, every: float = 120.0) -> list[Sample]:
    """``count`` samples as the bridge records them: whole frames of every numeric key."""
    samples = []
    frame = 0
    while len(samples) < count:
        at = start + frame * every
        samples.extend(Sample("inverter", at, key, float(frame % 100)) for key in FRAME_KEYS)
        frame += 1
    return samples[:count]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} samples/s"


def timed_batches(write, samples) -> float:
    started = time.perf_counter()
    for i in range(0, len(samples), BATCH_SIZE):
        write(samples[i:i + BATCH_SIZE])
    return time.perf_counter() - started


class _Reactor:
    """Just enough reactor for a writer driven without one: calls run at once, on the caller."""

    def callFromThread(self, function, *arguments, **keywords):  # noqa: N802 -- Twisted's name
        function(*arguments, **keywords)


def through_writer(store, samples) -> float:
    """Seconds from the first add to the last sample committed, via the writer's thread."""
    writer = HistoryWriter(store, _Reactor(), buffer_size=len(samples) + 1,
                           prune_interval=1e9)
    writer.start()
    started = time.perf_counter()
    for i in range(0, len(samples), 100):  # as frames arrive: ~100 samples at a time
        writer.add(samples[i:i + 100])
    idle = threading.Event()  # never set: its wait is the pause between looks
    while writer.stats.written < len(samples):
        idle.wait(0.001)
    elapsed = time.perf_counter() - started
    writer.stop()
    return elapsed


def sqlite_figures(count: int, workdir: Path) -> None:
    samples = frames(count)
    print(f"SQLite {sqlite3.sqlite_version} ({count:,} samples, batches of {BATCH_SIZE}):")
    baseline_path = workdir / "baseline.sqlite"
    connection = sqlite3.connect(baseline_path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("CREATE TABLE plain (inverter TEXT, key TEXT, at REAL, value REAL)")

    def bare(batch):
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO plain VALUES (?, ?, ?, ?)",
                               [(s.inverter, s.key, s.at, s.value) for s in batch])
        connection.execute("COMMIT")

    base = timed_batches(bare, samples)
    connection.close()
    store = SqliteStore(str(workdir / "store.sqlite"))
    direct = timed_batches(store.write, samples)
    store.close()
    writer_store = SqliteStore(str(workdir / "writer.sqlite"))
    via_writer = through_writer(writer_store, samples)
    print(f"  baseline (bare executemany) {rate(count, base)}")
    print(f"  SqliteStore.write           {rate(count, direct)}   {base / direct:.2f} x baseline")
    print(f"  through HistoryWriter       {rate(count, via_writer)}"
          f"   {base / via_writer:.2f} x baseline")

    day = SqliteStore(str(workdir / "day.sqlite"))
    day.write(frames(len(FRAME_KEYS) * 720))  # a frame every 2 minutes for a day
    used = day.size()
    day.close()
    per_day = used / 1e6
    print(f"  one inverter's day: {len(FRAME_KEYS)} keys x 720 frames = {len(FRAME_KEYS) * 720:,}"
          f" samples, {per_day:.2f} MB ({used / (len(FRAME_KEYS) * 720):.1f} bytes/sample);"
          f" 1 GB holds {1e3 / per_day:,.0f} days")


def postgres_figures(count: int) -> None:
    try:
        import psycopg
        from postgres_support import PostgresCluster

        from octolux.history.postgres import PostgresStore
    except ImportError as error:
        print(f"PostgreSQL: skipped ({error})")
        return
    samples = frames(count)
    cluster = PostgresCluster()
    try:
        cluster.start()
        print(f"PostgreSQL (private server, fsync off; {count:,} samples,"
              f" batches of {BATCH_SIZE}):")
        with psycopg.connect(cluster.uri, autocommit=True) as connection:
            connection.execute(
                "CREATE TABLE plain (inverter text, key text, at timestamptz, value float8)"
            )

            def bare(batch):
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO plain VALUES (%s, %s, to_timestamp(%s), %s)",
                        [(s.inverter, s.key, s.at, s.value) for s in batch],
                    )

            base = timed_batches(bare, samples)
        store = PostgresStore(cluster.uri)
        direct = timed_batches(store.write, samples)
        store.close()
        # A second inverter's name: the same rows would only be upserts.
        renamed = [Sample("writer", s.at, s.key, s.value) for s in samples]
        via_writer = through_writer(PostgresStore(cluster.uri), renamed)
        print(f"  baseline (bare executemany) {rate(count, base)}")
        print(f"  PostgresStore.write         {rate(count, direct)}"
              f"   {base / direct:.2f} x baseline")
        print(f"  through HistoryWriter       {rate(count, via_writer)}"
              f"   {base / via_writer:.2f} x baseline")
    finally:
        cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    arguments = parser.parse_args()
    print(f"{len(FRAME_KEYS)} numeric keys a frame; a frame every 2 minutes is"
          f" {len(FRAME_KEYS) * 30 / 3600:.2f} samples/s per inverter")
    with tempfile.TemporaryDirectory() as workdir:
        sqlite_figures(arguments.samples, Path(workdir))
    postgres_figures(arguments.samples)
    print(f"(cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
