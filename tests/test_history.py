"""The history: recording, queries, downsampling, limits, the buffer while the database fails.

Against real SQLite files. The writer's thread is real too; tests wait for
it by polling from the reactor, never by sleeping.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import threading

import pytest
import pytest_twisted
from e2e_support import get, poll_until
from twisted.internet import reactor, task
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from octolux.config.ini import ServerConfig
from octolux.history.query import (
    Query,
    QueryError,
    Sample,
    parse_step,
    parse_time,
    query_from_arguments,
)
from octolux.history.recorder import CONNECTED, Recorder
from octolux.history.service import HistoryService
from octolux.history.sqlite import SqliteStore
from octolux.history.writer import HistoryWriter
from octolux.web.api import ApiService, api_root

T0 = 1_764_500_000.0  # 2025-11-30 10:53:20 UTC


class Collected:
    """A sink keeping what a recorder sends."""

    def __init__(self):
        self.samples: list[Sample] = []

    def add(self, samples):
        self.samples.extend(samples)


def samples(key, values, *, inverter="inverter", start=T0, every=60.0):
    return [Sample(inverter, start + i * every, key, float(v)) for i, v in enumerate(values)]


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(str(tmp_path / "history.sqlite"))
    yield store
    store.close()


# -- recording ---------------------------------------------------------------------------


def test_every_numeric_input_value_is_recorded_with_its_time():
    clock, sink = Clock(), Collected()
    clock.advance(T0)
    recorder = Recorder("garage", sink, clock)
    recorder.inputs_received({1: {"soc": 53, "v_bat": 49.4}, 3: {"inverter_serial": "0123456789"}})
    assert sink.samples == [
        Sample("garage", T0, "soc", 53.0),
        Sample("garage", T0, "v_bat", 49.4),
    ]


def test_a_register_is_recorded_when_it_changes_only():
    clock, sink = Clock(), Collected()
    recorder = Recorder("inverter", sink, clock)
    recorder.registers_received({21: 62292, 64: 100})
    clock.advance(120)
    recorder.registers_received({21: 62292, 64: 90})  # 21 unchanged
    assert [(s.at, s.key, s.value) for s in sink.samples] == [
        (0, "hold/21", 62292.0), (0, "hold/64", 100.0), (120, "hold/64", 90.0)
    ]


def test_the_connection_is_recorded_as_one_and_zero():
    clock, sink = Clock(), Collected()
    recorder = Recorder("inverter", sink, clock)
    recorder.connection_changed(True)
    clock.advance(5)
    recorder.connection_changed(False)
    assert [(s.at, s.key, s.value) for s in sink.samples] == [
        (0, CONNECTED, 1.0), (5, CONNECTED, 0.0)
    ]


# -- queries: the arguments ----------------------------------------------------------------


def test_times_are_epoch_seconds_or_iso_8601():
    assert parse_time("1764500000") == 1764500000.0
    assert parse_time("1764500000.5") == 1764500000.5
    assert parse_time("2025-11-30T10:53:20Z") == T0
    assert parse_time("2025-11-30T11:53:20+01:00") == T0
    local = datetime.datetime(2025, 11, 30, 10, 53, 20).timestamp()  # no offset: local time
    assert parse_time("2025-11-30T10:53:20") == local
    with pytest.raises(QueryError, match="not a time"):
        parse_time("yesterday")


def test_steps_are_seconds_or_have_a_unit():
    assert [parse_step(t) for t in ("300", "30s", "5m", "1h", "1d", "0.5")] == [
        300, 30, 300, 3600, 86400, 0.5
    ]
    with pytest.raises(QueryError, match="not a step"):
        parse_step("5 minutes")


def test_query_defaults_are_the_last_24_hours_in_300_steps():
    query = query_from_arguments("inverter", {"key": ["soc,p_pv"]}, now=T0)
    assert query == Query("inverter", ("soc", "p_pv"), T0 - 86400, T0, 288.0, "avg")
    query = query_from_arguments(
        "inverter", {"key": ["soc", "p_pv"], "since": ["0"], "until": ["3600"], "step": ["1m"],
                     "aggregate": ["max"]}, now=T0,
    )
    assert (query.keys, query.since, query.until, query.step, query.aggregate) == (
        ("soc", "p_pv"), 0, 3600, 60, "max"
    )


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "no key"),
    ({"key": ["soc'; DROP TABLE"]}, "not a key"),
    ({"key": ["soc"], "since": ["10"], "until": ["5"]}, "until must be later"),
    ({"key": ["soc"], "step": ["0"]}, "more than 0"),
    ({"key": ["soc"], "step": ["1"]}, "step too small"),
    ({"key": ["soc"], "aggregate": ["sum"]}, "aggregate must be"),
    ({"key": ["soc"], "since": ["1", "2"]}, "since given 2 times"),
])
def test_bad_queries_say_why(arguments, message):
    with pytest.raises(QueryError, match=message):
        query_from_arguments("inverter", arguments, now=T0)


# -- the SQLite store ----------------------------------------------------------------------


def test_queries_average_each_step_in_the_database(store):
    store.write(samples("soc", [10, 20, 30, 40, 50, 60]))  # one a minute
    store.write(samples("p_pv", [100, 300, 500, 700, 900, 1100]))
    query = Query("inverter", ("soc", "p_pv"), T0, T0 + 360, 120)
    assert store.query(query) == {
        "soc": [[T0, 15], [T0 + 120, 35], [T0 + 240, 55]],
        "p_pv": [[T0, 200], [T0 + 120, 600], [T0 + 240, 1000]],
    }
    assert store.query(Query("inverter", ("soc",), T0, T0 + 360, 180, "max")) == {
        "soc": [[T0, 30], [T0 + 180, 60]]
    }
    assert store.query(Query("inverter", ("soc",), T0, T0 + 360, 180, "min")) == {
        "soc": [[T0, 10], [T0 + 180, 40]]
    }


def test_buckets_start_at_since_and_until_is_excluded(store):
    store.write(samples("soc", [10, 20, 30, 40]))  # T0, +60, +120, +180
    query = Query("inverter", ("soc",), T0 + 30, T0 + 180, 60)
    assert store.query(query) == {"soc": [[T0 + 30, 20], [T0 + 90, 30]]}


def test_keys_and_inverters_stay_apart_and_unknown_keys_are_empty(store):
    store.write(samples("soc", [10, 20]) + samples("soc", [70, 80], inverter="garage"))
    query = Query("garage", ("soc", "nothing"), T0, T0 + 120, 120)
    assert store.query(query) == {"soc": [[T0, 75]], "nothing": []}


def test_a_sample_at_the_same_time_replaces_the_older_one(store):
    store.write(samples("soc", [10]))
    store.write(samples("soc", [11]))
    assert store.query(Query("inverter", ("soc",), T0, T0 + 1, 1)) == {"soc": [[T0, 11]]}


def test_retention_deletes_what_is_older(tmp_path):
    store = SqliteStore(str(tmp_path / "h.sqlite"), retention=86400)
    store.write(samples("soc", range(48), every=3600))  # two days, hourly
    store.prune(now=T0 + 47 * 3600)
    kept = store.query(Query("inverter", ("soc",), T0 - 86400, T0 + 48 * 3600, 3600))["soc"]
    assert [value for _, value in kept] == list(range(23, 48))
    store.close()


def test_max_size_deletes_the_oldest_and_the_file_shrinks(tmp_path):
    path = tmp_path / "h.sqlite"
    limit = 256 * 1024
    store = SqliteStore(str(path), max_size=limit)
    for day in range(40):  # ~10 000 samples a day, ~20 bytes each: far over the limit
        start = T0 + day * 86400
        store.write([Sample("inverter", start + i * 8.64, key, float(i))
                     for i in range(1000) for key in ("a", "b", "c", "d", "e", "f", "g", "h")])
        assert store.size() <= limit
    wal = path.with_name(path.name + "-wal")
    store.close()  # checkpoints the WAL into the file
    assert path.stat().st_size <= limit * 1.1
    assert not wal.exists() or wal.stat().st_size == 0
    store = SqliteStore(str(path), max_size=limit)
    newest = store.query(Query("inverter", ("a",), T0 + 39 * 86400, T0 + 40 * 86400, 86400, "max"))
    assert newest == {"a": [[T0 + 39 * 86400, 999]]}  # the last day is whole
    oldest = store.query(Query("inverter", ("a",), T0, T0 + 86400, 86400))
    assert oldest == {"a": []}  # the first day is gone
    store.close()


# -- the writer: a thread, a bounded buffer, retries -------------------------------------------


class BreakableStore:
    """A real SQLite store that fails like a full disk while ``broken`` is set."""

    def __init__(self, path):
        self.inner = SqliteStore(path)
        self.description = "breakable " + self.inner.description
        self.errors = self.inner.errors
        self.broken = threading.Event()
        self.attempts = 0

    def write(self, batch):
        self.attempts += 1
        if self.broken.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        self.inner.write(batch)

    def prune(self, now):
        self.inner.prune(now)

    def query(self, query):
        return self.inner.query(query)

    def close(self):
        self.inner.close()


def _history_lines(events, level=None):
    return [formatEvent(e) for e in events
            if "history" in formatEvent(e) and (level is None or e["log_level"] == level)]


async def _wait(condition, what, timeout=10.0):
    return await poll_until(reactor, condition, timeout, what)


@pytest_twisted.ensureDeferred
async def test_a_failing_database_keeps_a_bounded_buffer_and_counts_the_loss(tmp_path):
    store = BreakableStore(str(tmp_path / "h.sqlite"))
    writer = HistoryWriter(store, reactor, buffer_size=100, batch_size=10,
                           retry_delays=[0.01])
    with capturedLogs() as events:
        writer.start()
        try:
            writer.add(samples("soc", range(10)))
            await _wait(lambda: writer.stats.written == 10, "the first samples written")
            store.broken.set()
            writer.add(samples("soc", range(10, 20), start=T0 + 600))
            await _wait(lambda: writer.stats.failing, "the writer noticing the failure")
            attempts = store.attempts
            await _wait(lambda: store.attempts >= attempts + 3, "retries")
            # 150 more while failing: the buffer keeps 100, drops the 60 oldest.
            for chunk in range(15):
                writer.add(samples("soc", range(10), start=T0 + 1200 + chunk * 600))
            assert writer.stats.pending == 100
            assert writer.stats.lost == 60
            assert writer.stats.error == "database or disk is full"
            store.broken.clear()
            await _wait(lambda: writer.stats.pending == 0, "the buffer written")
            assert not writer.stats.failing
            assert writer.stats.written == 110
        finally:
            await writer.stop()
    kept = store.query(Query("inverter", ("soc",), T0, T0 + 20_000, 60))["soc"]
    times = [t for t, _ in kept]
    assert len(kept) == 110
    # What was lost is the oldest of the outage: the first 10 written, then 60 dropped.
    assert times[:10] == [T0 + i * 60 for i in range(10)]
    assert times[10] == T0 + 1200 + 5 * 600
    lines = _history_lines(events)
    assert len(lines) == 3, lines  # one when it fails, one when it drops, one when it is back
    assert "cannot write (database or disk is full)" in lines[0]
    assert "buffer full (100 samples)" in lines[1]
    assert "writing again" in lines[2] and "60 samples lost" in lines[2]
    assert _history_lines(events, LogLevel.warn) == lines[:2]
    store.close()


@pytest_twisted.ensureDeferred
async def test_stopping_writes_what_is_waiting(tmp_path):
    store = SqliteStore(str(tmp_path / "h.sqlite"))
    writer = HistoryWriter(store, reactor)
    writer.start()
    writer.add(samples("soc", range(500), every=1))
    await writer.stop()
    assert writer.stats.written == 500
    assert len(store.query(Query("inverter", ("soc",), T0, T0 + 500, 1))["soc"]) == 500
    store.close()


@pytest_twisted.ensureDeferred
async def test_a_database_that_never_comes_back_cannot_hold_up_the_stop(tmp_path, monkeypatch):
    monkeypatch.setattr("octolux.history.writer.STOP_TIMEOUT", 0.2)
    store = BreakableStore(str(tmp_path / "h.sqlite"))
    store.broken.set()
    writer = HistoryWriter(store, reactor, retry_delays=[0.05])
    with capturedLogs() as events:
        writer.start()
        writer.add(samples("soc", range(7)))
        await _wait(lambda: writer.stats.failing, "the failure")
        await writer.stop().addTimeout(5, reactor)
    assert writer.stats.lost == 7
    assert any("7 samples not written" in line for line in _history_lines(events))
    store.close()


@pytest_twisted.ensureDeferred
async def test_a_stop_while_a_write_fails_still_ends_the_thread_cleanly(tmp_path, monkeypatch):
    # stop() arrives while the writing thread is inside a write that then fails:
    # the thread must end through its retry path, not an exception of its own.
    monkeypatch.setattr("octolux.history.writer.STOP_TIMEOUT", 0.2)
    crashed = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    store = BreakableStore(str(tmp_path / "h.sqlite"))
    writer = HistoryWriter(store, reactor, retry_delays=[0.05])
    requested = threading.Event()
    stopped = []
    write = store.write

    def request_stop():  # on the reactor, as the bridge's stop is
        stopped.append(writer.stop())
        requested.set()

    def stop_then_fail(batch):  # on the writing thread
        if not requested.is_set():
            reactor.callFromThread(request_stop)
            requested.wait(5)
            store.broken.set()
        write(batch)

    store.write = stop_then_fail
    writer.start()
    writer.add(samples("soc", range(3)))
    await _wait(lambda: stopped, "the stop request")
    await stopped[0].addTimeout(5, reactor)
    assert crashed == []
    assert writer.stats.lost == 3
    store.close()


# -- the service and GET /api/history ----------------------------------------------------------


class FakeInverter:
    name = "inverter"
    latest_inputs: dict = {}
    registers: dict = {}


@contextlib.asynccontextmanager
async def history_api(stores):
    """The HTTP API over a started history of ``stores`` (None: no history), until ``T0``.

    Gives (the ``HistoryService`` or None, the URL of ``/api/history``).
    """
    history = None if stores is None else HistoryService(reactor, stores)
    if history is not None:
        history.startService()
    service = ApiService(
        reactor, ServerConfig(port=0), api_root([FakeInverter()], history=history, now=lambda: T0)
    )
    service.startService()
    try:
        yield history, f"http://127.0.0.1:{service.port}/api/history"
    finally:
        await service.stopService()
        if history is not None:
            await history.stopService()


@pytest_twisted.async_yield_fixture()
async def api(tmp_path):
    async with history_api([SqliteStore(str(tmp_path / "h.sqlite"))]) as served:
        yield served


@pytest_twisted.ensureDeferred
async def test_the_api_answers_from_the_database(api):
    history, url = api
    clock = Clock()  # times the test can name
    recorder = Recorder("inverter", history, clock)
    for minute in range(10):
        clock.advance(T0 - 600 + minute * 60 - clock.seconds())
        recorder.inputs_received({1: {"soc": 50 + minute, "p_pv": 1000}})
    await _wait(lambda: history.writers[0].stats.written == 20, "samples written")
    response, body = await get(reactor, f"{url}?key=soc&key=p_pv&step=5m&since={T0 - 600:.0f}")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    answer = json.loads(body)
    assert answer["series"] == {
        "soc": [[T0 - 600, 52], [T0 - 300, 57]],
        "p_pv": [[T0 - 600, 1000], [T0 - 300, 1000]],
    }
    assert (answer["since"], answer["until"], answer["step"]) == (T0 - 600, T0, 300)


@pytest_twisted.ensureDeferred
async def test_a_bad_query_is_400_with_the_reason(api):
    _, url = api
    response, body = await get(reactor, f"{url}?key=soc&since=tomorrow")
    assert response.code == 400
    assert "not a time" in json.loads(body)["error"]


@pytest_twisted.ensureDeferred
async def test_an_unreadable_database_is_503(tmp_path):
    path = tmp_path / "not-a-database"
    path.write_bytes(b"this is not SQLite" * 100)
    async with history_api([SqliteStore(str(path))]) as (_, url):
        response, body = await get(reactor, f"{url}?key=soc")
    assert response.code == 503
    assert json.loads(body)["error"].startswith("history unavailable: file is not a database")


@pytest_twisted.ensureDeferred
async def test_without_history_the_route_says_how_to_get_one():
    async with history_api(None) as (_, url):
        response, body = await get(reactor, f"{url}?key=soc")
    assert response.code == 404
    assert "[history]" in json.loads(body)["error"]



# -- the whole bridge, recording the simulator ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_bridge_records_the_simulator_into_sqlite(tmp_path):
    from octolux.config.ini import Config, HistoryConfig, InverterConfig
    from octolux.device.inverter import Inverter
    from octolux.service.tap import build_service
    from simulator.dongle import start_simulator

    dongle = await start_simulator(
        reactor, interval=0.5, burst_gap=0.02, first_burst_delay=0.05, seed=3
    ).addTimeout(5, reactor)
    path = tmp_path / "history.sqlite"
    config = Config(
        inverters=(InverterConfig(name="inverter", host="127.0.0.1", port=dongle.port,
                                  serial=dongle.config.inverter, datalog=dongle.config.datalog),),
        server=ServerConfig(port=0),
        history=HistoryConfig(path=str(path)),
    )
    bridge = build_service(config, reactor)
    bridge.startService()
    api = next(s for s in bridge if isinstance(s, ApiService))
    inverter = next(s for s in bridge if isinstance(s, Inverter))
    url = f"http://127.0.0.1:{api.port}/api/history?key=soc&key=connected&key=hold/21&step=1h"
    try:
        await _wait(lambda: inverter.connected, "the bridge connected")
        await inverter.read_hold(21)
        deadline = reactor.seconds() + 20
        while True:
            series = json.loads((await get(reactor, url))[1])["series"]
            if all(series.values()):
                break
            assert reactor.seconds() < deadline, f"not all recorded within 20 s: {series}"
            await task.deferLater(reactor, 0.1, lambda: None)
    finally:
        await bridge.stopService().addTimeout(15, reactor)
        await dongle.stop().addTimeout(5, reactor)
    assert 0 <= series["soc"][0][1] <= 100
    assert series["connected"][0][1] > 0
    assert series["hold/21"] == [[series["hold/21"][0][0], dongle.plant.holding[21]]]
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT x.value FROM octolux_samples x JOIN octolux_series s ON s.id = x.series"
            " WHERE s.key = 'connected' ORDER BY x.at"
        ).fetchall()
    assert rows[0] == (1.0,) and rows[-1] == (0.0,)  # the stop was recorded too
