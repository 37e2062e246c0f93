"""End to end as users run it: `twistd -n` processes of the simulator and the bridge, and mosquitto.

The test talks to the broker with its own paho client, to the HTTP API over
TCP, and reads the simulator's log to see which frames reached the inverter.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest_twisted
from e2e_support import MqttProbe, get, poll_until
from support import free_port, run_twistd, stop_process
from test_e2e import MQ_MD_KEYS
from twisted.internet import reactor

DATALOG = "SIMDL00042"
SERIAL = "SIMINV0042"
PASSWORD = "pRoC-e2e-pw-never-logged"
_prefixes = itertools.count()


class Processes:
    """The simulator and bridge processes of one test, their logs and configuration."""

    def __init__(self, tmp_path: Path, mosquitto):
        self.tmp = tmp_path
        self.mosquitto = mosquitto
        self.prefix = f"proc-{next(_prefixes)}"
        self.sim_port = free_port()
        self.api_port = free_port()
        self.sim_log = tmp_path / "simulator.log"
        self.bridge_log = tmp_path / "octolux.log"
        self.config = tmp_path / "octolux.ini"
        self.config.write_text(
            f"[lxp]\nhost = 127.0.0.1\nport = {self.sim_port}\n"
            f"serial = {SERIAL}\ndatalog = {DATALOG}\ncommand_timeout = 4\n"
            f"[server]\nport = {self.api_port}\n"
            f"[mqtt]\nuri = mqtt://octolux:{PASSWORD}@{mosquitto.host}:{mosquitto.port}\n"
            f"prefix = {self.prefix}\n"
            # The original tool's [octopus] section, as its users have it: without
            # [rules] enabled the bridge only logs what it would do. Its price API is
            # a closed loopback port, so nothing leaves this machine.
            "[octopus]\nproduct_code = AGILE-18-02-21\ntariff_code = E-1R-AGILE-18-02-21-G\n"
            f"url = http://127.0.0.1:{free_port()}\ncache = {tmp_path / 'prices.json'}\n"
            # A section this project does not use is ignored with a log line.
            "[influxdb]\nhost = nas\n"
        )
        self.simulator: subprocess.Popen | None = None
        self.bridge: subprocess.Popen | None = None

    def start_simulator(self) -> None:
        self.simulator = run_twistd(
            ["-n", "--pidfile=", "-l", "-", "lxp-simulator", "--port", str(self.sim_port),
             "--datalog", DATALOG, "--serial", SERIAL, "--interval", "2", "--burst-gap", "0.1",
             "--first-burst-delay", "0.2", "--seed", "7", "--state", str(self.tmp / "state.json")],
            cwd=self.tmp, log_path=self.sim_log,
        )

    def start_bridge(self, *extra: str) -> None:
        self.bridge = run_twistd(
            ["-n", "--pidfile=", "-l", "-", "octolux", "-c", str(self.config), *extra],
            cwd=self.tmp, log_path=self.bridge_log,
        )

    def stop(self) -> None:
        for proc in (self.bridge, self.simulator):
            if proc is not None:
                stop_process(proc)

    def simulator_writes(self) -> list[tuple[int, int]]:
        """(register, value) of every write request the simulator logged."""
        text = self.sim_log.read_text() if self.sim_log.exists() else ""
        return [
            (int(register), int(value))
            for register, value in re.findall(
                r"request from \S+: WriteSingleRequest .*?register=(\d+) value=(\d+)", text
            )
        ]


async def command(probe: MqttProbe, prefix: str, name: str, payload: bytes) -> str:
    before = len(probe.on(f"{prefix}/result/{name}"))
    probe.publish(f"{prefix}/cmd/{name}", payload)
    result = await probe.next_on(reactor, f"{prefix}/result/{name}", after=before, timeout=15)
    return result.text


def has_value(probe: MqttProbe, topic: str, predicate):
    return [m for m in probe.on(topic) if predicate(int(m.text))]


@pytest_twisted.ensureDeferred
async def test_twistd_bridge_and_simulator_with_a_real_broker(tmp_path, mosquitto):
    procs = Processes(tmp_path, mosquitto)
    prefix = procs.prefix
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#"])
    try:
        await probe.ready(reactor)
        procs.start_simulator()
        procs.start_bridge()

        # inputs/1..3 with every MQ.md key, and the status.
        for block, keys in MQ_MD_KEYS.items():
            message = await probe.next_on(reactor, f"{prefix}/inputs/{block}", timeout=20)
            values = json.loads(message.payload)
            assert [key for key in keys if key not in values] == []
        assert probe.on(f"{prefix}/status")[-1].text == "online"

        # Commands as MQ.md shows them.
        assert await command(probe, prefix, "discharge_pct", b"50") == "OK"
        await probe.until(reactor, lambda: has_value(probe, f"{prefix}/hold/65", lambda v: v == 50))
        assert await command(probe, prefix, "ac_charge", b"on") == "OK"
        await probe.until(
            reactor, lambda: has_value(probe, f"{prefix}/hold/21", lambda v: v & 0x80),
            what="hold/21 with bit 7 set",
        )
        writes = procs.simulator_writes()
        assert writes[0] == (65, 50) and writes[1][0] == 21 and writes[1][1] & 0x80

        # Bad payloads: FAIL, and no frame reaches the inverter.
        for name, payload in [("discharge_pct", b"101"), ("charge_pct", b"x"),
                              ("ac_charge", b" "), ("ac_charge", b"\xc3\x28")]:
            assert await command(probe, prefix, name, payload) == "FAIL", (name, payload)
        assert await command(probe, prefix, "read_hold", b"65") == "OK"  # the wire still works
        assert procs.simulator_writes() == writes

        # The HTTP API.
        response, body = await get(reactor, f"http://127.0.0.1:{procs.api_port}/api/registers")
        assert (response.code, json.loads(body)["65"]) == (200, 50)
        response, body = await get(reactor, f"http://127.0.0.1:{procs.api_port}/api/inputs")
        assert "soc" in json.loads(body)

        # The simulator process goes away and comes back on the same port.
        stop_process(procs.simulator)
        broadcasts = len(probe.on(f"{prefix}/inputs/1"))
        procs.start_simulator()
        # Reconnected (a command sent before could fail: it is not sent with
        # less than half its 4 s left, and the reconnection takes about that).
        await probe.next_on(reactor, f"{prefix}/inputs/1", after=broadcasts, timeout=20)
        assert await command(probe, prefix, "discharge_pct", b"70") == "OK"
        assert procs.simulator_writes()[-1] == (65, 70)

        # The broker restarts: the bridge reconnects and subscribes again.
        await mosquitto.restarted(reactor)
        await probe.ready(reactor)
        await probe.until(
            reactor, lambda: "Connected to MQTT broker" in _after_restart(procs.bridge_log),
            timeout=20, what="the bridge reconnected to the broker",
        )
        assert await command(probe, prefix, "charge_pct", b"80") == "OK"
        assert procs.simulator_writes()[-1] == (64, 80)

        # A clean stop says offline, retained.
        status_count = len(probe.on(f"{prefix}/status"))
        assert stop_process(procs.bridge) == -signal.SIGTERM
        offline = await probe.next_on(reactor, f"{prefix}/status", after=status_count)
        assert offline.text == "offline"
    finally:
        procs.stop()
        await probe.close(reactor)

    log = procs.bridge_log.read_text()
    assert PASSWORD not in log
    assert f"{mosquitto.host}:{mosquitto.port}" in log
    assert "[influxdb]: not used by octolux, ignored" in log
    assert "on E-1R-AGILE-18-02-21-G: off (logs what it would do)" in log
    assert "cmd/discharge_pct '50' -> OK" in log
    assert "cmd/discharge_pct '101' -> FAIL (percentage must be 0-100: 101)" in log
    assert "#debug]" not in log  # the default level is info
    assert "Traceback" not in log and "Unhandled" not in log, log


def _after_restart(path: Path) -> str:
    """The bridge's log after the last time it lost the broker."""
    text = path.read_text()
    return text.rpartition("Lost MQTT broker")[2]


@pytest_twisted.ensureDeferred
async def test_a_killed_bridge_leaves_its_last_will(tmp_path, mosquitto):
    procs = Processes(tmp_path, mosquitto)
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{procs.prefix}/status"])
    try:
        await probe.ready(reactor)
        procs.start_bridge()  # no simulator needed: MQTT runs regardless
        online = await probe.next_on(reactor, f"{procs.prefix}/status", timeout=20)
        assert online.text == "online"
        procs.bridge.send_signal(signal.SIGKILL)
        will = await probe.next_on(reactor, f"{procs.prefix}/status", after=1, timeout=20)
        assert will.text == "offline"
    finally:
        procs.stop()
        await probe.close(reactor)


async def wait_for_exit(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    await poll_until(reactor, lambda: proc.poll() is not None, timeout, "the process to exit")
    return proc.returncode


@pytest_twisted.ensureDeferred
async def test_a_config_mistake_stops_start_up_with_one_line(tmp_path):
    config = tmp_path / "octolux.ini"
    config.write_text("[lxp]\nhost = 127.0.0.1\nport = abc\nserial = SIMINV0001\n"
                      "datalog = SIMDL00001\n")
    log = tmp_path / "out.log"
    proc = run_twistd(["-n", "--pidfile=", "octolux", "-c", str(config)], tmp_path, log)
    assert await wait_for_exit(proc) != 0
    # One line, and nothing else: no usage text, no traceback.
    assert log.read_text().strip().splitlines() == [
        f"octolux: {config}: [lxp] port: not a number: 'abc'"
    ]

    proc = run_twistd(["-n", "--pidfile=", "octolux"], tmp_path, log)  # ./config.ini
    assert await wait_for_exit(proc) != 0
    last = log.read_text().strip().splitlines()[-1]
    assert last.endswith("config.ini: cannot read: No such file or directory")


@pytest_twisted.ensureDeferred
async def test_an_api_port_in_use_stops_start_up_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "octolux.ini"
        config.write_text(f"[lxp]\nhost = 127.0.0.1\nport = 1\nserial = {SERIAL}\n"
                          f"datalog = {DATALOG}\n[server]\nport = {port}\n")
        log = tmp_path / "out.log"
        proc = run_twistd(["-n", "--pidfile=", "-l", "-", "octolux", "-c", str(config)],
                          tmp_path, log)
        assert await wait_for_exit(proc) == 1
    text = log.read_text()
    assert f"HTTP API: cannot listen on 127.0.0.1:{port}: " in text
    assert "Traceback" not in text


@pytest_twisted.ensureDeferred
async def test_log_level_debug_is_shown_only_when_asked(tmp_path, mosquitto):
    for level, debug_expected in (("info", False), ("debug", True)):
        procs = Processes(tmp_path, mosquitto)
        procs.bridge_log = tmp_path / f"octolux-{level}.log"
        # No MQTT, no simulator: the HTTP API's access lines are debug events.
        procs.config.write_text(
            f"[lxp]\nhost = 127.0.0.1\nport = {procs.sim_port}\nserial = {SERIAL}\n"
            f"datalog = {DATALOG}\n[server]\nport = {procs.api_port}\n"
        )
        procs.start_bridge("--log-level", level)
        try:
            log = procs.bridge_log
            await poll_until(
                reactor, lambda log=log: log.exists() and "HTTP API on" in log.read_text(),
                20, "the HTTP API listening",
            )
            response, _ = await get(reactor, f"http://127.0.0.1:{procs.api_port}/api/inputs")
            assert response.code == 200
        finally:
            stop_process(procs.bridge)
        text = procs.bridge_log.read_text()
        assert ("GET /api/inputs -> 200" in text) is debug_expected, text
        assert ("#debug]" in text) is debug_expected
