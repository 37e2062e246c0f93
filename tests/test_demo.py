"""The README's first command works: the demo shows live data and a command's round trip."""

import os
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _processes_mentioning(word):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if word in line]


def test_demo_shows_inputs_and_a_command_result_then_stops_everything():
    # No skip when mosquitto is missing: the demo installs it itself.
    result = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=dict(os.environ, DEMO_SECONDS="24"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for block in (1, 2, 3):
        assert re.search(rf"^octolux/inputs/{block} \{{.*\}}$", output, re.M), output[-2000:]
    assert "octolux/status online" in output
    assert re.search(r"^octolux/result/ac_charge OK$", output, re.M), output[-2000:]
    # bit 7 set in the register value the inverter reports after the command
    holds = [int(v) for v in re.findall(r"^octolux/hold/21 (\d+)$", output, re.M)]
    assert holds and holds[-1] & 0x80
    work = re.search(r"logs kept in (\S+)\)", output).group(1)
    assert not _processes_mentioning(work), "the demo left processes running"
