"""Two minutes of the fault soak (bench/soak.py): the invariants hold under every fault.

The soak runs as its own process group (mosquitto, the simulator and the
bridge are its children); whatever happens here, the whole group is stopped.
It writes its figures as JSON, and the assertions below read them: each one
names the figure, so a failure says which invariant broke, and the soak's
printed summary (with the problems it found) is in the message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOAK_SECONDS = 120
# Start-up, the drain (results still due, up to command_timeout + 10 s) and stopping.
OVERHEAD_SECONDS = 150


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    """Run the two-minute soak once; yields (figures, printed output, exit status)."""
    figures_path = tmp_path_factory.mktemp("soak") / "figures.json"
    process = subprocess.Popen(
        # Simulator restarts and freezes more often than by default, so that two
        # minutes go through every fault profile.
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", str(SOAK_SECONDS),
         "--seed", "1", "--simulator-every", "12", "--freeze-every", "20",
         "--json", str(figures_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=SOAK_SECONDS + OVERHEAD_SECONDS)
    finally:
        if process.poll() is None:
            # The soak stops its children on SIGTERM; SIGKILL the group if it cannot.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    assert figures_path.exists(), f"the soak wrote no figures (status {process.returncode}):\n" \
        + output
    yield json.loads(figures_path.read_text()), output, process.returncode


def test_exactly_one_result_per_acknowledged_command(soak):
    figures, output, _ = soak
    commands = figures["commands"]
    assert commands["acknowledged"] >= 100, output
    assert commands["missing"] == 0, output
    assert commands["duplicates"] == 0, output
    assert commands["OK"] + commands["FAIL"] + commands["missing"] + commands["duplicates"] \
        <= commands["acknowledged"], output
    assert figures["invariants"]["exactly one result per acknowledged command"], output


def test_no_write_after_fail(soak):
    figures, output, _ = soak
    writes = figures["writes"]
    assert writes["sent after FAIL"] == 0, output
    assert writes["sent after OK or unasked"] == 0, output
    assert figures["invariants"]["no write after FAIL"], output
    # The soak saw writes reach the inverter: its judgement had something to judge.
    assert writes["received by the inverter"] > 0, output
    assert writes["received, never sent"] == 0, output


def test_no_bad_payload_answered_ok(soak):
    figures, output, _ = soak
    assert figures["commands"]["invalid (must FAIL)"] > 0, output
    assert figures["fail reasons"].get("refused payload", 0) > 0, output
    assert figures["invariants"]["no bad payload answered OK"], output


def test_no_traceback_in_the_bridge_log(soak):
    figures, output, _ = soak
    assert figures["bridge log"]["tracebacks"] == 0, output
    assert figures["invariants"]["no traceback in the bridge log"], output


def test_the_bridge_is_alive_at_the_end(soak):
    figures, output, _ = soak
    assert figures["invariants"]["bridge alive at the end"], output
    assert figures["bridge RSS MiB"]["end"] > 0, output


def test_the_faults_were_injected(soak):
    figures, output, _ = soak
    faults = figures["faults"]
    # The faults every two-minute run is sure to see (the rarer ones, BUSY replies,
    # dropped and silent connections, depend on timing and are only reported).
    for kind in ("broker restarts", "simulator restarts", "simulator frozen (SIGSTOP)",
                 "garbage before a frame", "corrupt CRC", "frame split", "reply delayed"):
        assert faults.get(kind, 0) > 0, f"no {kind!r} injected:\n{output}"
    reconnections = figures["reconnections"]
    assert reconnections["datalogger connected"] > 1, output
    assert reconnections["broker connected"] > 1, output


def test_the_soak_reports_every_invariant_held(soak):
    figures, output, status = soak
    broken = [name for name, held in figures["invariants"].items() if not held]
    assert broken == [], output
    assert status == 0, output
