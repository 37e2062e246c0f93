"""`twistd lxp-simulator` options and wiring."""

from __future__ import annotations

import datetime
import json

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from octolux import lxp
from simulator import tap
from simulator.dongle import BroadcastFormat, Dongle, Faults

OPTIONS = [
    "port", "interface", "datalog", "serial", "interval", "burst-gap", "first-burst-delay",
    "heartbeat", "format", "speed", "seed", "start", "clock-offset", "state", "count", "drop-every",
    "garbage", "corrupt-crc", "split", "reply-delay", "mute", "silent-after",
    "exception-rate", "max-clients", "foreign-traffic", "grid-down", "verbose", "dongle",
    "model", "batteries",
]


def parse(*arguments) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(arguments))
    return options


def test_every_option_is_in_the_help():
    text = str(tap.Options())
    for name in OPTIONS:
        assert f"--{name}" in text, name


def test_defaults():
    (config,) = parse().configs
    assert config.datalog == "SIMDL00001" and config.inverter == "SIMINV0001"
    assert (config.interval, config.burst_gap, config.heartbeat) == (120, 1, 60)
    assert config.format is BroadcastFormat.BURSTS
    assert config.speed == 1 and config.seed is None and config.state_path is None
    assert config.faults == Faults()
    options = parse()
    assert (options["port"], options["interface"], options["count"]) == (8000, "127.0.0.1", 1)


def test_every_option_reaches_the_config():
    options = parse(
        "--datalog", "AB12345678", "--serial", "CD12345678", "--interval", "20",
        "--burst-gap", "0.5", "--first-burst-delay", "3", "--heartbeat", "30",
        "--format", "all127", "--speed", "60", "--seed", "7", "--start", "2024-12-21T06:30",
        "--clock-offset", "-300",
        "--drop-every", "300", "--garbage", "0.1", "--corrupt-crc", "0.2", "--split", "8",
        "--reply-delay", "0.5", "--mute", "--silent-after", "600", "--exception-rate", "0.3",
        "--max-clients", "1", "--foreign-traffic", "45", "--grid-down",
    )
    (config,) = options.configs
    assert (config.datalog, config.inverter) == ("AB12345678", "CD12345678")
    assert (config.interval, config.burst_gap, config.first_burst_delay) == (20, 0.5, 3)
    assert config.heartbeat == 30 and config.format is BroadcastFormat.ALL127
    assert (config.speed, config.seed) == (60, 7)
    assert config.start == datetime.datetime(2024, 12, 21, 6, 30)
    assert config.clock_offset == -300
    assert config.faults == Faults(
        drop_every=300, garbage=0.1, corrupt_crc=0.2, split=8, reply_delay=0.5, mute=True,
        silent_after=600, exception_rate=0.3, max_clients=1, foreign_traffic=45,
        grid_down=True,
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["--datalog", "SHORT"],
        ["--serial", "ELEVENCHARS"],
        ["--format", "all"],
        ["--garbage", "1.5"],
        ["--corrupt-crc", "-0.1"],
        ["--interval", "0"],
        ["--heartbeat", "-1"],
        ["--count", "0"],
        ["--port", "65535", "--count", "2"],
        ["--port", "70000"],
        ["--start", "yesterday"],
        ["--clock-offset", "5min"],
        ["--max-clients", "0"],
        ["--split", "-1"],
        ["--datalog", "NODIGITSXX", "--count", "2"],
        ["--datalog", "SIMDL99999", "--count", "2"],  # 100000 does not fit in five digits
    ],
)
def test_bad_options_are_usage_errors(arguments):
    with pytest.raises(usage.UsageError):
        parse(*arguments)


@pytest.mark.parametrize("option", ["--datalog", "--serial"])
def test_a_bad_serial_is_named_in_the_usage_error(option):
    with pytest.raises(usage.UsageError, match=f"{option} must be 10 characters of 8-bit text"):
        parse(option, "SIMINV000\u20ac")


def test_a_broken_state_file_is_a_usage_error(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(usage.UsageError, match="broken.json"):
        parse("--state", str(broken))
    impossible = tmp_path / "impossible.json"
    impossible.write_text(json.dumps({"holding": {"65": 101}}))
    with pytest.raises(usage.UsageError, match="register 65"):
        parse("--state", str(impossible))


def test_serials_for_count_are_numbered_on():
    assert [tap.serial_for("SIMDL00001", index) for index in range(3)] == [
        "SIMDL00001", "SIMDL00002", "SIMDL00003",
    ]
    assert tap.serial_for("AB00000099", 1) == "AB00000100"
    with pytest.raises(ValueError):
        tap.serial_for("ABCDEFGHI9", 1)


def test_state_files_for_count():
    assert tap.state_path_for("/var/sim/state.json", 0, 1) == "/var/sim/state.json"
    assert tap.state_path_for("/var/sim/state.json", 2, 3) == "/var/sim/state-2.json"


def test_make_service_serves_count_dongles_on_consecutive_ports(tmp_path):
    memory = MemoryReactorClock()
    options = parse("--port", "9000", "--count", "3", "--seed", "5", "--interface", "0.0.0.0",
                    "--state", str(tmp_path / "s.json"), "--garbage", "0.25")
    simulators = tap.makeService(options, memory)
    dongles = list(simulators)
    assert all(isinstance(dongle, Dongle) for dongle in dongles)
    simulators.startService()
    listening = [(port, factory.config.datalog, factory.config.inverter, interface)
                 for port, factory, _, interface in memory.tcpServers]
    assert listening == [
        (9000, "SIMDL00001", "SIMINV0001", "0.0.0.0"),
        (9001, "SIMDL00002", "SIMINV0002", "0.0.0.0"),
        (9002, "SIMDL00003", "SIMINV0003", "0.0.0.0"),
    ]
    configs = [dongle.config for dongle in dongles]
    assert [config.seed for config in configs] == [5, 6, 7]
    assert [config.state_path for config in configs] == [
        str(tmp_path / f"s-{index}.json") for index in range(3)
    ]
    assert {config.faults.garbage for config in configs} == {0.25}
    simulators.stopService()


@pytest_twisted.ensureDeferred
async def test_count_dongles_are_independent_over_real_tcp():
    from test_simulator_tcp import TIMEOUT, connect, disconnect

    simulators = tap.makeService(parse("--port", "0", "--count", "2", "--heartbeat", "0.1"),
                                 reactor)
    simulators.startService()
    try:
        dongles = list(simulators)
        ports = [await dongle.when_listening().addTimeout(TIMEOUT, reactor) for dongle in dongles]
        assert len(set(ports)) == 2
        for port, datalog in zip(ports, ["SIMDL00001", "SIMDL00002"], strict=True):
            client = await connect(port)
            heartbeat = await client.wait_for(lambda frame: isinstance(frame, lxp.Heartbeat))
            assert heartbeat.datalog == datalog
            await disconnect(client)
    finally:
        await simulators.stopService()
