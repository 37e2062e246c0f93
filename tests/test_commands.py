"""Payload parsing, the command table and topic names: the MQTT contract without MQTT."""

from __future__ import annotations

import pytest

from octolux.commands import (
    COMMANDS,
    PayloadError,
    Topics,
    describe_payload,
    parse_block,
    parse_bool,
    parse_percent,
    parse_register,
)


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
    assert [parse_block(str(n).encode()) for n in (1, 2, 3, 4)] == [1, 2, 3, 4]
    for bad in (b"0", b"5", b"one", b""):
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
    ],
)
def test_each_command_asks_the_inverter_for_one_request(name, payload, call):
    inverter = RecordingInverter()
    command = COMMANDS[name]
    assert command.run(inverter, command.parse(payload)) == "deferred"
    assert inverter.calls == [call]


def test_the_command_table_has_the_contracted_commands():
    assert set(COMMANDS) == {
        "ac_charge", "forced_discharge", "discharge_pct", "charge_pct",
        "charge_priority", "charge_amount_pct", "read_hold", "read_input",
    }
    assert all(command.description for command in COMMANDS.values())


def test_topics_under_the_default_prefix():
    topics = Topics()
    assert topics.status == "octolux/status"
    assert topics.inputs(1) == "octolux/inputs/1"
    assert topics.hold(65) == "octolux/hold/65"
    assert topics.command("ac_charge") == "octolux/cmd/ac_charge"
    assert topics.commands == "octolux/cmd/+"
    assert topics.result("ac_charge") == "octolux/result/ac_charge"


def test_topics_of_a_named_inverter_under_another_prefix():
    topics = Topics("home/lux", "garage")
    assert topics.status == "home/lux/status"
    assert topics.inputs(3) == "home/lux/garage/inputs/3"
    assert topics.hold(21) == "home/lux/garage/hold/21"
    assert topics.commands == "home/lux/garage/cmd/+"
    assert topics.result("charge_pct") == "home/lux/garage/result/charge_pct"


def test_command_name_from_topic():
    topics = Topics()
    assert topics.command_name("octolux/cmd/discharge_pct") == "discharge_pct"
    assert topics.command_name(topics.command("read_hold")) == "read_hold"
    for other in ("octolux/cmd/", "octolux/cmd/a/b", "octolux/result/x", "other/cmd/x", "octolux"):
        assert topics.command_name(other) is None
    assert Topics("p", "x").command_name("p/x/cmd/ac_charge") == "ac_charge"
    assert Topics("p", "x").command_name("p/cmd/ac_charge") is None


def test_describe_payload_for_logs():
    assert describe_payload(b"50") == "'50'"
    assert describe_payload(b"50 -> OK") == "'50 -> OK'"
    assert describe_payload(b"it's") == '"it\'s"'
    assert describe_payload(b"\xff\x00") == r"b'\xff\x00'"
    assert describe_payload(b"a" * 100).endswith("...")
