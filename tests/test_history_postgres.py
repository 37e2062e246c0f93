"""The history in a real PostgreSQL server, started by these tests (one per module).

The end-to-end test runs the whole bridge (simulator, mosquitto, the real
reactor) writing to PostgreSQL, stops the server for a while and starts it
again: MQTT and commands carry on meanwhile, and every sample reaches the
database once it is back.
"""

from __future__ import annotations

import json

import psycopg
import pytest
import pytest_twisted
from e2e_support import MqttProbe, get, poll_until
from postgres_support import PostgresCluster
from twisted.internet import reactor, threads
from twisted.logger import capturedLogs, formatEvent

from octolux.config.ini import Config, HistoryConfig, InverterConfig, MqttConfig, ServerConfig
from octolux.device.inverter import Inverter
from octolux.history.postgres import PostgresStore
from octolux.history.query import Query, Sample
from octolux.history.service import HistoryService
from octolux.service.tap import build_service
from octolux.web.api import ApiService
from simulator.dongle import start_simulator

T0 = 1_764_500_000.0


@pytest.fixture(scope="module")
def postgres():
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def rows(cluster, sql, *parameters):
    with psycopg.connect(cluster.uri, autocommit=True) as connection:
        return connection.execute(sql, parameters).fetchall()


def test_the_store_writes_downsamples_and_prunes(postgres):
    store = PostgresStore(postgres.uri, retention=86400)
    try:
        store.write([Sample("unit", T0 + i * 60, "soc", float(10 * i)) for i in range(6)])
        store.write([Sample("unit", T0, "soc", 5.0)])  # the same time: replaced
        query = Query("unit", ("soc", "none"), T0, T0 + 360, 120)
        assert store.query(query) == {"soc": [[T0, 7.5], [T0 + 120, 25], [T0 + 240, 45]],
                                      "none": []}
        assert store.query(Query("unit", ("soc",), T0, T0 + 360, 360, "max")) == {
            "soc": [[T0, 50]]
        }
        # A view for Grafana, with real timestamps.
        (first,) = rows(postgres, "SELECT extract(epoch FROM min(time)) FROM octolux_history"
                                  " WHERE inverter = 'unit'")
        assert float(first[0]) == T0
        store.prune(now=T0 + 86400 + 150)
        assert store.query(query)["soc"] == [[T0 + 120, 30], [T0 + 240, 45]]
    finally:
        store.close()


def test_the_password_is_masked_in_the_description(postgres):
    store = PostgresStore(postgres.uri)
    assert postgres.password not in store.description
    assert store.description == f"PostgreSQL postgresql://***@127.0.0.1:{postgres.port}/postgres"


@pytest_twisted.ensureDeferred
async def test_the_database_going_away_and_coming_back_costs_nothing(
    postgres, mosquitto, monkeypatch
):
    monkeypatch.setattr("octolux.history.writer.RETRY_DELAYS", (0.2,))
    dongle = await start_simulator(
        reactor, interval=0.5, burst_gap=0.02, first_burst_delay=0.05, seed=5
    ).addTimeout(5, reactor)
    config = Config(
        inverters=(InverterConfig(name="pg", host="127.0.0.1", port=dongle.port,
                                  serial=dongle.config.inverter, datalog=dongle.config.datalog),),
        server=ServerConfig(port=0),
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix="history-pg"),
        history=HistoryConfig(path=None, uri=postgres.uri),
    )
    bridge = build_service(config, reactor)
    history = next(s for s in bridge if isinstance(s, HistoryService))
    inverter = next(s for s in bridge if isinstance(s, Inverter))
    api = next(s for s in bridge if isinstance(s, ApiService))
    writer = history.writers[0]
    frames = []  # the time of every block 1 the bridge received: one soc sample each

    class CountFrames:
        def inputs_received(self, blocks):
            if 1 in blocks:
                frames.append(reactor.seconds())

        def registers_received(self, registers):
            pass

        def connection_changed(self, connected):
            pass

    inverter.add_observer(CountFrames())
    probe = MqttProbe(mosquitto.host, mosquitto.port, ["history-pg/#"])

    async def wait(condition, what, timeout=15.0):
        return await poll_until(reactor, condition, timeout, what)

    def soc_rows():
        return rows(postgres, "SELECT count(*) FROM octolux_history"
                              " WHERE inverter = 'pg' AND key = 'soc'")[0][0]

    with capturedLogs() as events:
        await probe.ready(reactor)
        bridge.startService()
        url = f"http://127.0.0.1:{api.port}/api/history?key=soc"
        try:
            await wait(lambda: writer.stats.written > 0, "the first samples in PostgreSQL")
            assert (await get(reactor, url))[0].code == 200

            await threads.deferToThread(postgres.stop)
            stopped_at, frames_before = reactor.seconds(), len(frames)
            inputs_before = len(probe.on("history-pg/inputs/1"))
            await wait(lambda: writer.stats.failing, "the writer noticing the outage")
            # The bridge carries on: frames arrive, MQTT publishes them, commands work.
            await wait(lambda: len(probe.on("history-pg/inputs/1")) >= inputs_before + 3,
                       "inputs on MQTT while the database is down")
            probe.publish("history-pg/cmd/charge_pct", b"42")
            result = await probe.next_on(reactor, "history-pg/result/charge_pct")
            assert result.text == "OK"
            response, body = await get(reactor, url)
            assert response.code == 503
            assert json.loads(body)["error"].startswith("history unavailable: ")
            assert writer.stats.pending > 0

            await threads.deferToThread(postgres.start)
            started_at = reactor.seconds()
            await wait(lambda: not writer.stats.failing and writer.stats.pending == 0,
                       "the buffer written after the restart")
            assert len(frames) > frames_before  # frames did arrive during the outage
            assert (await get(reactor, url))[0].code == 200
        finally:
            await bridge.stopService().addTimeout(20, reactor)
            await dongle.stop().addTimeout(5, reactor)
            await probe.close(reactor)

    stats = writer.stats
    assert (stats.lost, stats.pending) == (0, 0)
    assert soc_rows() == len(frames)  # every frame, none lost, none twice
    during = rows(postgres, "SELECT count(*) FROM octolux_history WHERE inverter = 'pg'"
                            " AND key = 'soc' AND time > to_timestamp(%s)"
                            " AND time < to_timestamp(%s)",
                  stopped_at, started_at)[0][0]
    assert during == len([t for t in frames if stopped_at < t < started_at]) > 0
    lines = [formatEvent(e) for e in events]
    history_lines = [line for line in lines if line.startswith("history: PostgreSQL")]
    assert len([line for line in history_lines if "cannot write" in line]) == 1
    assert len([line for line in history_lines if "writing again" in line]) == 1
    assert "0 samples lost" in next(line for line in history_lines if "writing again" in line)
    assert not [line for line in lines if postgres.password in line]
