"""Payload parsing, the command table and topic names: the MQTT contract without MQTT.

And ``CommandRunner``, the one way in for commands, with every result to every listener.
"""

from __future__ import annotations

import datetime

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.logger import LogLevel, capturedLogs, formatEvent

from octolux.device.commands import (
    COMMANDS,
    PayloadError,
    Topics,
    describe_payload,
    parse_block,
    parse_bool,
    parse_percent,
    parse_register,
    parse_set_hold,
)
from octolux.device.requests import CommandFailed
from octolux.device.runner import FAIL, OK, CommandResult, CommandRunner
from octolux.device.settings import SETTINGS
from octolux.lxp import holding


@pytest.mark.parametrize(
    "payload", [b"1", b"t", b"true", b"y", b"yes", b"on", b"ON", b"True", b"YeS", b" on\n", b"T"]
)
def test_mq_md_true_words_are_true(payload):
    assert parse_bool(payload) is True


@pytest.mark.parametrize(
    "payload", [b"0", b"off", b"false", b"no", b"n", b"f", b"maybe", b"2", b"onn", b"yes please"]
)
def test_anything_else_that_is_text_is_false(payload):
    assert parse_bool(payload) is False


@pytest.mark.parametrize(
    "payload", [b"", b"   ", b"\n", b"\xff\xfe", b"o\x00n", b"on\x07", b"\x80on", b"1" * 65]
)
def test_empty_binary_or_oversized_booleans_are_invalid(payload):
    with pytest.raises(PayloadError):
        parse_bool(payload)


@pytest.mark.parametrize(
    ("payload", "value"), [(b"0", 0), (b"50", 50), (b"100", 100), (b" 7\n", 7), (b"007", 7)]
)
def test_percent(payload, value):
    assert parse_percent(payload) == value


@pytest.mark.parametrize(
    "payload",
    [b"", b"-1", b"101", b"150", b"50.5", b"5e1", b"abc", b"+5", b"1_0", "\u0665".encode(),
     b"\xff", b"50%", b"5 0", b"99999999999999999999"],
)
def test_percent_rejects(payload):
    with pytest.raises(PayloadError):
        parse_percent(payload)


def test_payload_errors_say_why():
    with pytest.raises(PayloadError, match="percentage must be 0-100: 150"):
        parse_percent(b"150")
    with pytest.raises(PayloadError, match="not a whole number: '50.5'"):
        parse_percent(b"50.5")
    with pytest.raises(PayloadError, match="empty payload"):
        parse_bool(b"")
    with pytest.raises(PayloadError, match="not UTF-8"):
        parse_bool(b"\xff")


def test_register_numbers():
    assert parse_register(b"0") == 0
    assert parse_register(b"65535") == 65535
    assert parse_register(b"21") == 21
    for bad in (b"65536", b"-1", b"x", b""):
        with pytest.raises(PayloadError):
            parse_register(bad)


def test_input_blocks():
    assert [parse_block(str(n).encode()) for n in range(1, 7)] == [1, 2, 3, 4, 5, 6]
    for bad in (b"0", b"7", b"one", b""):
        with pytest.raises(PayloadError):
            parse_block(bad)


class RecordingInverter:
    """Records the requests a command makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def request(*args):
            self.calls.append((name, *args))
            return "deferred"

        return request


@pytest.mark.parametrize(
    ("name", "payload", "call"),
    [
        ("ac_charge", b"on", ("set_bit", 21, 7, True)),
        ("ac_charge", b"off", ("set_bit", 21, 7, False)),
        ("forced_discharge", b"yes", ("set_bit", 21, 10, True)),
        ("charge_priority", b"1", ("set_bit", 21, 11, True)),
        ("charge_priority", b"0", ("set_bit", 21, 11, False)),
        ("charge_pct", b"30", ("write_single", 64, 30)),
        ("discharge_pct", b"50", ("write_single", 65, 50)),
        ("charge_amount_pct", b"90", ("write_single", 67, 90)),
        ("read_hold", b"21", ("read_hold", 21)),
        ("read_input", b"1", ("read_input", 0, 40)),
        ("read_input", b"2", ("read_input", 40, 40)),
        ("read_input", b"3", ("read_input", 80, 40)),
        ("read_input", b"4", ("read_input", 120, 40)),
        ("feed_in_grid", b"off", ("set_bit", 21, 15, False)),
        ("eps", b"on", ("set_bit", 21, 0, True)),
        ("micro_grid", b"on", ("set_bit", 110, 2, True)),
        ("ac_charge_pct", b"40", ("write_single", 66, 40)),
        ("charge_priority_pct", b"41", ("write_single", 74, 41)),
        ("charge_priority_soc", b"42", ("write_single", 75, 42)),
        ("forced_discharge_pct", b"43", ("write_single", 82, 43)),
        ("forced_discharge_soc", b"44", ("write_single", 83, 44)),
        ("discharge_cutoff_soc", b"15", ("write_single", 105, 15)),
        ("eps_cutoff_soc", b"16", ("write_single", 125, 16)),
        ("ac_charge_start_soc", b"17", ("write_single", 160, 17)),
        ("ac_charge_end_soc", b"95", ("write_single", 161, 95)),
        ("ct_power_offset", b"-200", ("write_single", 119, 0x10000 - 200)),
        ("ct_power_offset", b"150", ("write_single", 119, 150)),
        # low byte hour, high byte minute: 23:30 is 0x1E17
        ("ac_charge_slot_1", b"23:30-05:00", ("write_singles", 68, (0x1E17, 5))),
        ("ac_charge_slot_3", b"00:00-00:00", ("write_singles", 72, (0, 0))),
        ("charge_priority_slot_2", b"12:01-13:59", ("write_singles", 78, (0x010C, 0x3B0D))),
        ("forced_discharge_slot_1", b"16:00-19:00", ("write_singles", 84, (16, 19))),
        # One end of a slot: that register alone.
        ("ac_charge_slot_1_start", b"23:30", ("write_single", 68, 0x1E17)),
        ("ac_charge_slot_1_end", b"05:00", ("write_single", 69, 5)),
        ("charge_priority_slot_3_end", b"13:59", ("write_single", 81, 0x3B0D)),
        ("forced_discharge_slot_2_start", b"00:01", ("write_single", 86, 0x0100)),
        ("charge_current_limit", b"140", ("write_single", 101, 140)),
        ("discharge_current_limit", b"0", ("write_single", 102, 0)),
        ("charge_last", b"on", ("set_bit", 110, 4, True)),
        ("clock", b"2026-11-30T12:34:56", ("write_multi", 12, (26 | 11 << 8, 30 | 12 << 8,
                                                             34 | 56 << 8))),
        ("refresh", b"1", ("refresh",)),
    ],
)
def test_each_command_asks_the_inverter_for_one_request(name, payload, call):
    inverter = RecordingInverter()
    command = COMMANDS[name]
    assert command.run(inverter, command.parse(payload)) == "deferred"
    assert inverter.calls == [call]


def test_the_command_table_has_the_contracted_commands():
    mq_md = {
        "ac_charge", "forced_discharge", "discharge_pct", "charge_pct",
        "charge_priority", "charge_amount_pct", "read_hold", "read_input",
    }
    issue_9 = {
        "set_hold", "sync_time", "refresh", "ac_charge_pct", "charge_priority_pct",
        "charge_priority_soc", "forced_discharge_pct", "forced_discharge_soc",
        "discharge_cutoff_soc", "eps_cutoff_soc", "ac_charge_start_soc", "ac_charge_end_soc",
        "feed_in_grid", "eps", "clock",
        *(f"{schedule}_slot_{n}" for schedule in ("ac_charge", "charge_priority",
                                                  "forced_discharge") for n in (1, 2, 3)),
    }
    assert mq_md | issue_9 <= set(COMMANDS)
    assert all(command.description and command.payload for command in COMMANDS.values())


def test_every_writable_setting_is_a_command_and_no_read_only_one_is():
    for name, setting in SETTINGS.items():
        assert (name in COMMANDS) == setting.writable, name


def test_topics_under_the_default_prefix():
    topics = Topics()
    assert topics.status == "octolux/status"
    assert topics.inputs(1) == "octolux/inputs/1"
    assert topics.hold(65) == "octolux/hold/65"
    assert topics.command("ac_charge") == "octolux/cmd/ac_charge"
    assert topics.commands == "octolux/cmd/#"
    assert topics.settings == "octolux/settings"
    assert topics.command("set_hold/21") == "octolux/cmd/set_hold/21"
    assert topics.result("set_hold/21") == "octolux/result/set_hold/21"
    assert topics.result("ac_charge") == "octolux/result/ac_charge"


def test_topics_of_a_named_inverter_under_another_prefix():
    topics = Topics("home/lux", "garage")
    assert topics.status == "home/lux/status"
    assert topics.inputs(3) == "home/lux/garage/inputs/3"
    assert topics.hold(21) == "home/lux/garage/hold/21"
    assert topics.commands == "home/lux/garage/cmd/#"
    assert topics.settings == "home/lux/garage/settings"
    assert topics.result("charge_pct") == "home/lux/garage/result/charge_pct"


def test_command_name_from_topic():
    topics = Topics()
    assert topics.command_name("octolux/cmd/discharge_pct") == "discharge_pct"
    assert topics.command_name(topics.command("read_hold")) == "read_hold"
    assert topics.command_name("octolux/cmd/set_hold/21") == "set_hold/21"
    assert topics.command_name("octolux/cmd/a/b") == "a/b"  # answered FAIL: unknown command
    for other in ("octolux/cmd/", "octolux/cmd/a//b", "octolux/cmd/a/", "octolux/result/x",
                  "other/cmd/x", "octolux"):
        assert topics.command_name(other) is None
    assert Topics("p", "x").command_name("p/x/cmd/ac_charge") == "ac_charge"
    assert Topics("p", "x").command_name("p/cmd/ac_charge") is None


def test_describe_payload_for_logs():
    assert describe_payload(b"50") == "'50'"
    assert describe_payload(b"50 -> OK") == "'50 -> OK'"
    assert describe_payload(b"it's") == '"it\'s"'
    assert describe_payload(b"\xff\x00") == r"b'\xff\x00'"
    assert describe_payload(b"a" * 100).endswith("...")


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("ac_charge_slot_1", b"25:00-01:00"),
        ("ac_charge_slot_1", b"9-5"),
        ("ac_charge_slot_1", b""),
        ("ac_charge_slot_2", b"09:00-17:60"),
        ("ac_charge_slot_2", b"9:00-17:00"),
        ("forced_discharge_slot_3", b"09:00"),
        ("forced_discharge_slot_3", b"09:00 - 10:00"),
        ("ac_charge_slot_1_start", b"24:00"),
        ("ac_charge_slot_1_start", b"23:30:00"),  # the register holds minutes
        ("ac_charge_slot_1_end", b"9:00"),
        ("forced_discharge_slot_1_end", b"09:00-10:00"),
        ("charge_current_limit", b"141"),
        ("discharge_current_limit", b"-1"),
        ("ct_power_offset", b"1001"),
        ("ct_power_offset", b"-1001"),
        ("ct_power_offset", b"--1"),
        ("ct_power_offset", b"1.5"),
        ("eps_cutoff_soc", b"101"),
        ("eps_cutoff_soc", b"91"),  # the inverter takes 0-90
        ("discharge_cutoff_soc", b"9"),  # 10-90
        ("discharge_cutoff_soc", b"95"),
        ("clock", b"2026-13-01T00:00:00"),
        ("clock", b"2026-11-30"),
        ("clock", b"1999-12-31T23:59:59"),
        ("clock", b"2026-11-30T12:34:56+01:00"),
        ("sync_time", b"later"),
        ("sync_time", b""),
        ("refresh", b""),
    ],
)
def test_bad_payloads_of_the_new_commands_are_refused(name, payload):
    with pytest.raises(PayloadError):
        COMMANDS[name].parse(payload)


def test_sync_time_writes_the_local_time_to_the_clock():
    inverter = RecordingInverter()
    command = COMMANDS["sync_time"]
    before = datetime.datetime.now().replace(microsecond=0)
    command.run(inverter, command.parse(b"now"))
    after = datetime.datetime.now()
    ((method, register, values),) = inverter.calls
    assert (method, register) == ("write_multi", 12)
    assert before <= holding.decode_clock(*values) <= after


def test_set_hold_takes_known_writable_registers_within_their_range():
    assert parse_set_hold(b"50", "65") == (65, 50)
    assert parse_set_hold(b"62292", "21") == (21, 62292)
    assert parse_set_hold(b"7685", "68") == (68, 7685)  # 05:30
    assert parse_set_hold(b"65336", "119") == (119, 65336)  # -200 W
    for payload, register in [
        (b"101", "65"),  # a percentage
        (b"24", "68"),  # hour 24
        (b"1", "12"),  # the clock: written whole, by clock or sync_time
        (b"1", "0"),  # not known to be writable
        (b"1", "239"),
        (b"65536", "21"),
        (b"1", "x"),
        (b"1", "65536"),
        (b"-1", "21"),
    ]:
        with pytest.raises(PayloadError):
            parse_set_hold(payload, register)


def test_set_hold_takes_any_register_when_allowed():
    assert parse_set_hold(b"1", "239", any_register=True) == (239, 1)
    assert parse_set_hold(b"101", "65", any_register=True) == (65, 101)
    with pytest.raises(PayloadError):
        parse_set_hold(b"65536", "239", any_register=True)


def test_set_hold_writes_the_register():
    inverter = RecordingInverter()
    command = COMMANDS["set_hold"]
    command.run(inverter, command.parse(b"33", "66"))
    assert inverter.calls == [("write_single", 66, 33)]


# -- CommandRunner: the one way in -----------------------------------------------------


class AnsweringInverter:
    """Answers each write with its value at once; other requests stay pending for the test."""

    name = "garage"

    def __init__(self):
        self.calls = []
        self.pending: list[Deferred] = []

    def write_single(self, register, value):
        self.calls.append(("write_single", register, value))
        return succeed(value)

    def read_hold(self, register, count=1):
        self.calls.append(("read_hold", register, count))
        self.pending.append(Deferred())
        return self.pending[-1]


def test_every_result_goes_to_every_listener_and_is_kept():
    runner = CommandRunner(AnsweringInverter(), now=lambda: 1000.0)
    first, second = [], []
    runner.listeners += [first.append, second.append]
    running = runner.run("discharge_pct", b"50")
    runner.run("discharge_pct", b"500")
    ok = CommandResult(1000.0, "discharge_pct", "'50'", OK)
    refused = CommandResult(1000.0, "discharge_pct", "'500'", FAIL, "percentage must be 0-100: 500")
    assert running.result == ok
    assert first == second == list(runner.recent) == [ok, refused]


def test_a_result_comes_when_the_inverter_answers():
    inverter = AnsweringInverter()
    runner = CommandRunner(inverter, now=lambda: 0.0)
    heard = []
    runner.listeners.append(heard.append)
    running = runner.run("read_hold", b"21")
    assert inverter.calls == [("read_hold", 21, 1)] and heard == []
    inverter.pending[0].errback(CommandFailed("no reply within 10 s"))
    assert running.result.reason == "no reply within 10 s"
    assert [result.result for result in heard] == [FAIL]


def test_a_listener_that_raises_keeps_the_result_from_nobody():
    runner = CommandRunner(AnsweringInverter())
    heard = []

    def broken(result):
        raise RuntimeError("a bug in one listener")

    runner.listeners += [broken, heard.append]
    with capturedLogs() as events:
        running = runner.run("charge_pct", b"20")
    assert running.result.result == OK
    assert [result.result for result in heard] == [OK]
    assert any(event.get("log_failure") is not None for event in events)


def test_set_hold_of_any_register_only_when_the_runner_allows_it():
    strict, lenient = AnsweringInverter(), AnsweringInverter()
    assert CommandRunner(strict).run("set_hold/239", b"1").result.result == FAIL
    assert CommandRunner(lenient, any_register=True).run("set_hold/239", b"1").result.result == OK
    assert (strict.calls, lenient.calls) == ([], [("write_single", 239, 1)])


def test_unknown_commands_and_missing_arguments_fail_without_a_request():
    inverter = AnsweringInverter()
    runner = CommandRunner(inverter)
    for name in ("self_destruct", "set_hold", "discharge_pct/65"):
        assert runner.run(name, b"1").result.reason == "unknown command"
    assert inverter.calls == []


def test_the_log_line_names_where_the_command_came_from():
    runner = CommandRunner(AnsweringInverter())
    with capturedLogs() as events:
        runner.run("discharge_pct", b"50")
        runner.run("discharge_pct", b"50", source="octolux/garage/cmd/discharge_pct")
    lines = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.info]
    assert lines == [
        "garage: cmd/discharge_pct '50' -> OK",
        "octolux/garage/cmd/discharge_pct '50' -> OK",
    ]
