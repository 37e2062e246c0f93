"""Server mode as run by users: `twistd octolux` listens, `lxp-simulator --connect` dials.

Two simulated dongles dial one listener; one section names its dongle, the
other names nothing and learns its serials. The simulator starts first, so it
also shows that a dongle keeps redialling until the bridge is there.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest_twisted
from e2e_support import MqttProbe, poll_until
from support import free_port, run_twistd, stop_process
from twisted.internet import reactor

_prefixes = itertools.count()
TIMEOUT = 20.0


@pytest_twisted.ensureDeferred
async def test_twistd_bridge_in_server_mode_and_dialling_simulators(tmp_path, mosquitto):
    prefix = f"srvproc-{next(_prefixes)}"
    listen_port, api_port = free_port(), free_port()
    config = tmp_path / "octolux.ini"
    config.write_text(
        f"[lxp a]\nlisten = 127.0.0.1:{listen_port}\ndatalog = SIMDL00001\n"
        "command_timeout = 5\n"
        f"[lxp b]\nlisten = 127.0.0.1:{listen_port}\ncommand_timeout = 5\n"
        f"[server]\nport = {api_port}\n"
        f"[mqtt]\nuri = mqtt://{mosquitto.host}:{mosquitto.port}\nprefix = {prefix}\n"
    )
    sim_log, bridge_log = tmp_path / "simulator.log", tmp_path / "octolux.log"
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#"])
    simulator = bridge = None
    try:
        await probe.ready(reactor)
        simulator = run_twistd(
            ["-n", "--pidfile=", "-l", "-", "lxp-simulator", "--connect",
             f"127.0.0.1:{listen_port}", "--count", "2", "--interval", "2", "--heartbeat", "1",
             "--burst-gap", "0.1", "--first-burst-delay", "0.2", "--seed", "9"],
            cwd=tmp_path, log_path=sim_log,
        )
        await poll_until(reactor, lambda: "retrying" in sim_log.read_text(), TIMEOUT,
                         "the simulator retrying", lambda: sim_log.read_text()[-2000:])
        bridge = run_twistd(["-n", "--pidfile=", "-l", "-", "octolux", "-c", str(config)],
                            cwd=tmp_path, log_path=bridge_log)
        for name in ("a", "b"):
            message = await probe.next_on(reactor, f"{prefix}/{name}/inputs/1", timeout=TIMEOUT)
            assert "soc" in json.loads(message.payload)

        before = len(probe.on(f"{prefix}/b/result/charge_pct"))
        probe.publish(f"{prefix}/b/cmd/charge_pct", b"37")
        result = await probe.next_on(reactor, f"{prefix}/b/result/charge_pct", after=before,
                                     timeout=TIMEOUT)
        assert result.text == "OK"
        writes = re.findall(r"dongle (\w+): request from \S+: WriteSingleRequest register=64"
                            r" value=37", sim_log.read_text())
        assert writes == ["SIMDL00002"]

        text = bridge_log.read_text()
        assert "b: learned the datalog (dongle) serial 'SIMDL00002'" in text
        assert "put `serial = SIMINV0002` in" in text
        assert "a: the datalogger connected from 127.0.0.1:" in text
    finally:
        for process in (bridge, simulator):
            if process is not None:
                stop_process(process)
        await probe.close(reactor)
