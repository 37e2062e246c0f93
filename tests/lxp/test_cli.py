"""``python -m octolux.lxp decode``: what a user's dongle sends, as JSON lines."""

import json
import subprocess
import sys

import pytest
from vectors import VECTORS, direction_of

from octolux import lxp


def run_decode(*arguments, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "octolux.lxp", "decode", *arguments],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("direction", list(lxp.Direction), ids=str)
def test_decodes_every_vector_to_one_json_line_each(direction):
    vectors = [v for name, v in VECTORS.items() if direction_of(name) is direction]
    options = ["--to-dongle"] if direction is lxp.Direction.TO_DONGLE else []
    result = run_decode(*options, *(v["hex"] for v in vectors))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(vectors)
    for line, vector in zip(lines, vectors, strict=True):
        described = json.loads(line)
        documented = vector["decoded"]["frame"]
        for key in ("protocol", "tcp_function", "datalog"):
            assert described[key] == documented[key]
        for key in ("device_function", "inverter", "register"):
            if key in documented:
                assert described[key] == documented[key], (vector["name"], key)


def test_the_direction_decides_request_or_reply():
    # A protocol 1 read request has the shape of a one-value protocol 1 reply.
    request = VECTORS["read_hold_request_reg12_count3"]["hex"]
    as_sent = json.loads(run_decode("--to-dongle", request).stdout)
    as_reply = json.loads(run_decode(request).stdout)
    assert (as_sent["kind"], as_sent["count"]) == ("ReadRequest", 3)
    assert (as_reply["kind"], as_reply["registers"], as_reply["address"]) == (
        "ReadReply", {"12": 3}, 0)


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
