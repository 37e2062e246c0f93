"""Serials on their own: learning the dongle's and the inverter's serials, and policing them.

No connection: a fake clock, a list for what is sent, frames built in the test.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from octolux import lxp
from octolux.device.serials import (
    MAX_REMEMBERED_SERIALS,
    NOT_YET_KNOWN,
    SERIAL_QUESTION_BLOCK,
    SERIAL_QUESTION_DELAY,
    Serials,
    serial_told_by,
)

DATALOG, SERIAL = "BA00000001", "IN00000001"
HOLD = lxp.DeviceFunction.READ_HOLD
INPUT = lxp.DeviceFunction.READ_INPUT


class Made:
    def __init__(self, datalog=None, serial=None):
        self.clock = Clock()
        self.learned: list[str] = []
        self.sent: list = []
        self.serials = Serials(datalog, serial, clock=self.clock, learned=self.learned.append)


def hold_reply(datalog=DATALOG, serial=SERIAL):
    return lxp.ReadReply(HOLD, datalog, serial, 21, (1,))


def block_3(serial_in_values: str, header=NOT_YET_KNOWN):
    """Input registers 80-119 whose registers 115-119 hold ``serial_in_values``."""
    values = [0] * 40
    text = serial_in_values.encode("latin-1")
    for index in range(5):
        values[35 + index] = text[2 * index] | text[2 * index + 1] << 8
    return lxp.ReadReply(INPUT, DATALOG, header, 80, tuple(values))


def warnings(events) -> list[str]:
    return [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]


def test_configured_serials_are_checked():
    with pytest.raises(ValueError, match="datalog"):
        Serials("short", SERIAL, clock=Clock(), learned=print)
    assert Serials(DATALOG, SERIAL, clock=Clock(), learned=print).known


def test_the_first_frame_teaches_the_datalog_then_frames_of_others_are_ignored_once_each():
    made = Made()
    with capturedLogs() as events:
        assert made.serials.admit(lxp.Heartbeat(DATALOG))
        assert made.serials.datalog == DATALOG
        for _ in range(3):
            assert not made.serials.admit(lxp.Heartbeat("XX00000009"))
    assert made.learned == ["datalog"]
    assert not made.serials.known  # the inverter serial is still to learn
    (warning,) = warnings(events)
    assert "'XX00000009'" in warning and "check the datalog serial" in warning
    learned = [formatEvent(e) for e in events if "learned" in formatEvent(e)]
    assert len(learned) == 1 and "`datalog = BA00000001`" in learned[0]


def test_a_foreign_serial_is_reported_once_and_only_so_many_are_remembered():
    made = Made(DATALOG, SERIAL)
    others = [f"XX{n:08d}" for n in range(MAX_REMEMBERED_SERIALS + 10)]
    with capturedLogs() as events:
        for datalog in others + others:
            made.serials.admit(lxp.Heartbeat(datalog))
    assert len(warnings(events)) == MAX_REMEMBERED_SERIALS


def test_the_inverter_serial_is_learned_from_a_reply_header():
    made = Made(DATALOG)
    made.serials.check_inverter(hold_reply())
    assert made.serials.serial == SERIAL and made.serials.known
    assert made.learned == ["serial"]


def test_a_reply_to_the_stand_in_teaches_the_serial_in_its_registers_but_never_the_stand_in():
    made = Made(DATALOG)
    made.serials.check_inverter(block_3(NOT_YET_KNOWN))
    made.serials.check_inverter(hold_reply(serial=NOT_YET_KNOWN))
    assert made.serials.serial is None and made.learned == []
    made.serials.check_inverter(block_3(SERIAL))
    assert made.serials.serial == SERIAL


def test_serial_told_by_reads_the_header_first():
    assert serial_told_by(hold_reply()) == SERIAL
    assert serial_told_by(block_3("OTHER00001", header=SERIAL)) == SERIAL
    assert serial_told_by(hold_reply(serial=NOT_YET_KNOWN)) is None


def test_another_inverter_is_reported_once_and_the_stand_in_not_at_all():
    made = Made(DATALOG, SERIAL)
    with capturedLogs() as events:
        for serial in ("OTHER00001", "OTHER00001", NOT_YET_KNOWN, SERIAL):
            made.serials.check_inverter(hold_reply(serial=serial))
    (warning,) = warnings(events)
    assert "'OTHER00001'" in warning
    assert made.serials.serial == SERIAL


def test_the_serial_question_goes_out_after_the_delay_addressed_to_the_stand_in():
    made = Made(DATALOG)
    made.serials.connected(made.sent.append)
    made.clock.advance(SERIAL_QUESTION_DELAY - 0.1)
    assert made.sent == []
    made.clock.advance(0.1)
    assert made.sent == [lxp.ReadRequest(INPUT, DATALOG, NOT_YET_KNOWN, SERIAL_QUESTION_BLOCK, 40)]
    assert made.clock.getDelayedCalls() == []


def test_the_question_waits_for_the_datalog_and_stops_once_the_serial_is_known():
    made = Made()
    made.serials.connected(made.sent.append)
    made.clock.advance(SERIAL_QUESTION_DELAY)
    assert made.sent == []  # nothing to address it with yet
    made.serials.admit(lxp.Heartbeat(DATALOG))
    made.serials.check_inverter(hold_reply())
    assert made.clock.getDelayedCalls() == []
    made.clock.advance(SERIAL_QUESTION_DELAY)
    assert made.sent == []


def test_no_question_after_the_connection_is_gone_nor_with_a_known_serial():
    made = Made(DATALOG)
    made.serials.connected(made.sent.append)
    made.serials.disconnected()
    assert made.clock.getDelayedCalls() == []
    known = Made(DATALOG, SERIAL)
    known.serials.connected(known.sent.append)
    assert known.clock.getDelayedCalls() == []


def test_requests_are_addressed_with_the_serials_known_when_they_are_sent():
    made = Made()
    built = lxp.ReadRequest(HOLD, *made.serials.addressee, 21, 1)
    assert (built.datalog, built.inverter) == (NOT_YET_KNOWN, NOT_YET_KNOWN)
    made.serials.admit(lxp.Heartbeat(DATALOG))
    made.serials.check_inverter(hold_reply())
    assert made.serials.address(built) == lxp.ReadRequest(HOLD, DATALOG, SERIAL, 21, 1)
    param = lxp.WriteParamRequest(NOT_YET_KNOWN, 7, b"\x01\x00")
    assert made.serials.address(param).datalog == DATALOG
