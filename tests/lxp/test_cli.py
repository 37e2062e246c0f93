"""``python -m octolux.lxp decode``: what a user's dongle sends, as JSON lines."""

import json
import subprocess
import sys

from vectors import VECTORS


def run_decode(*arguments, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "octolux.lxp", "decode", *arguments],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


def test_decodes_every_vector_to_one_json_line_each():
    hexes = [v["hex"] for v in VECTORS.values()]
    result = run_decode(*hexes)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(hexes)
    for line, vector in zip(lines, VECTORS.values(), strict=True):
        described = json.loads(line)
        documented = vector["decoded"]["frame"]
        for key in ("protocol", "tcp_function", "datalog"):
            assert described[key] == documented[key]
        for key in ("device_function", "inverter", "register"):
            if key in documented:
                assert described[key] == documented[key], (vector["name"], key)


def test_input_replies_carry_raw_registers_and_named_inputs():
    result = run_decode(VECTORS["read_input_reply_reg0"]["hex"])
    described = json.loads(result.stdout)
    assert described["registers"] == VECTORS["read_input_reply_reg0"]["decoded"]["raw_registers"]
    assert described["inputs"]["v_acr"] == 234.1


def test_exception_replies_carry_their_code():
    result = run_decode(VECTORS["exception_reply_write_single_reg21_illegal_value"]["hex"])
    described = json.loads(result.stdout)
    assert described["exception_code"] == 3
    assert described["device_function"] == 134


def test_stdin_bad_lines_reported_others_decoded_exit_non_zero():
    good = VECTORS["heartbeat"]["hex"]
    corrupt = VECTORS["write_single_ack_reg66_100"]["hex"][:-4] + "0000"
    result = run_decode("-", stdin=f"{good}\nnot hex at all\n{corrupt}\n{good}\n")
    assert result.returncode != 0
    assert len(result.stdout.splitlines()) == 2
    assert "not hexadecimal" in result.stderr
    assert "bad CRC" in result.stderr
