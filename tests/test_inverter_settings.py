"""Inverter requests for the settings: multi writes, paired writes, refresh, read_only.

The same deterministic harness as tests/test_inverter.py: a fake endpoint, a
StringTransport and a fake clock.
"""

from __future__ import annotations

import test_inverter
from test_inverter import (
    DATALOG,
    HOLD,
    SERIAL,
    exception_reply,
    failure_reason,
    hold_reply,
    input_reply,
    make_harness,
    no_result,
    read_hold_request,
    result_of,
    write_ack,
    write_request,
)
from twisted.internet.error import ConnectionLost
from twisted.logger import capturedLogs, formatEvent

from octolux import lxp
from octolux.device.inverter import HOLDING_BLOCKS, READ_ONLY_REASON

CLOCK_VALUES = (26 | 11 << 8, 30 | 12 << 8, 34 | 56 << 8)  # 2026-11-30 12:34:56

# The same fixtures: a started Inverter that must stop leaving no timers, and its link.
harness = test_inverter.harness
link = test_inverter.link


def multi_request(register, values):
    return lxp.WriteMultiRequest(DATALOG, SERIAL, register, tuple(values))


def multi_ack(register, count, serial=SERIAL):
    return lxp.WriteMultiReply(DATALOG, serial, register, count)


# -- write_multi -------------------------------------------------------------------------


def test_write_multi_sends_one_frame_and_reports_the_registers_it_wrote(harness, link):
    done = harness.inverter.write_multi(12, CLOCK_VALUES)
    assert link.sent() == [multi_request(12, CLOCK_VALUES)]
    no_result(done)
    link.receive(multi_ack(12, 3))
    written = dict(zip((12, 13, 14), CLOCK_VALUES, strict=True))
    assert result_of(done) == written
    assert harness.inverter.registers == written
    assert harness.observer.events == [("registers", written)]


def test_an_ack_of_another_count_does_not_answer_a_multi_write(harness, link):
    done = harness.inverter.write_multi(12, CLOCK_VALUES)
    link.receive(multi_ack(12, 2))
    no_result(done)
    assert harness.inverter.registers == {}
    assert harness.observer.events == []
    harness.clock.advance(10)
    assert failure_reason(done) == "no reply within 10 s"


def test_a_multi_write_ack_for_someone_else_changes_nothing(harness, link):
    done = harness.inverter.write_multi(12, CLOCK_VALUES)
    link.receive(multi_ack(40, 3))  # another client's write
    no_result(done)
    assert harness.observer.events == []
    link.receive(exception_reply(lxp.DeviceFunction.WRITE_MULTI, 12))
    assert failure_reason(done) == "exception reply: ILLEGAL_VALUE"


def test_write_multi_times_out(harness, link):
    done = harness.inverter.write_multi(12, CLOCK_VALUES)
    harness.clock.advance(10)
    assert failure_reason(done) == "no reply within 10 s"


def test_write_multi_refuses_an_invalid_request(harness, link):
    assert failure_reason(harness.inverter.write_multi(12, ())).startswith("invalid request")
    assert failure_reason(harness.inverter.write_multi(12, (70000,))).startswith(
        "invalid request")
    assert link.sent() == []


# -- write_singles ---------------------------------------------------------------------------


def test_write_singles_writes_each_register_back_to_back(harness, link):
    done = harness.inverter.write_singles(68, (0x1E17, 5))
    other = harness.inverter.read_hold(65)  # must not come between the two writes
    assert link.sent() == [write_request(68, 0x1E17)]
    link.receive(write_ack(68, 0x1E17))
    assert link.sent() == [write_request(69, 5)]
    no_result(done)
    link.receive(write_ack(69, 5))
    assert result_of(done) == (0x1E17, 5)
    assert link.sent() == [read_hold_request(65)]
    no_result(other)
    assert harness.inverter.registers == {68: 0x1E17, 69: 5}


def test_write_singles_stops_at_the_first_failure(harness, link):
    done = harness.inverter.write_singles(68, (1, 2))
    link.sent()
    link.receive(exception_reply(lxp.DeviceFunction.WRITE_SINGLE, 68))
    assert failure_reason(done) == "exception reply: ILLEGAL_VALUE"
    assert link.sent() == []


def test_write_singles_refuses_an_invalid_request(harness, link):
    assert failure_reason(harness.inverter.write_singles(68, ())).startswith("invalid request")
    assert failure_reason(harness.inverter.write_singles(68, (1, -1))).startswith(
        "invalid request")
    assert link.sent() == []


# -- set_bit writes only what changes -------------------------------------------------------


def test_set_bit_already_as_asked_writes_nothing(harness, link):
    done = harness.inverter.set_bit(21, 7, True)
    assert link.sent() == [read_hold_request(21)]
    link.receive(hold_reply(21, 0x0081))
    assert result_of(done) == 0x0081
    assert link.sent() == []


def test_clearing_a_clear_bit_writes_nothing(harness, link):
    done = harness.inverter.set_bit(21, 10, False)
    link.receive(hold_reply(21, 0x0081))
    assert result_of(done) == 0x0081
    assert link.sent() == [read_hold_request(21)]


# -- refresh and the read on connecting --------------------------------------------------------


def answer_reads(link, holding=None, exceptions=()):
    """Answer every read the inverter sends, one at a time, until it sends none."""
    holding = holding or {}
    asked = []
    while sent := link.sent():
        (request,) = sent
        asked.append((request.function, request.register, request.count))
        if request.register in exceptions:
            link.receive(exception_reply(request.function, request.register,
                                         lxp.ExceptionCode.ILLEGAL_ADDRESS))
        elif request.function == HOLD:
            values = [holding.get(r, 0) for r in range(request.register, request.register + 40)]
            link.receive(hold_reply(request.register, *values))
        else:
            link.receive(input_reply(request.register, [0] * 40))
    return asked


def test_refresh_reads_every_holding_block_then_the_input_blocks(harness, link):
    done = harness.inverter.refresh()
    asked = answer_reads(link, {21: 0x80, 239: 9})
    assert asked == [(HOLD, r, 40) for r in (0, 40, 80, 120, 160, 200)] + [
        (lxp.DeviceFunction.READ_INPUT, r, 40) for r in (0, 40, 80)
    ]
    assert result_of(done) is None
    assert len(harness.inverter.registers) == 240
    assert harness.inverter.registers[21] == 0x80 and harness.inverter.registers[239] == 9


def test_refresh_sends_one_read_at_a_time_and_a_command_goes_between(harness, link):
    harness.inverter.refresh()
    assert link.sent() == [read_hold_request(0, 40)]
    command = harness.inverter.write_single(65, 50)
    link.receive(hold_reply(0, *[0] * 40))
    # The command was queued before the next read: it goes first.
    assert link.sent() == [write_request(65, 50)]
    link.receive(write_ack(65, 50))
    assert result_of(command) == 50
    assert link.sent() == [read_hold_request(40, 40)]


def test_a_block_the_inverter_refuses_is_skipped(harness, link):
    done = harness.inverter.refresh(inputs=False)
    with capturedLogs() as events:
        asked = answer_reads(link, exceptions=(120,))
    assert [register for _, register, _ in asked] == list(HOLDING_BLOCKS)
    assert result_of(done) is None
    assert any("read_hold(120, 40): exception reply: ILLEGAL_ADDRESS, skipped" in formatEvent(e)
               for e in events)


def test_a_read_that_times_out_fails_the_refresh_but_the_others_still_run(harness, link):
    done = harness.inverter.refresh(inputs=False)
    link.sent()
    harness.clock.advance(10)
    asked = answer_reads(link)
    assert [register for _, register, _ in asked] == list(HOLDING_BLOCKS[1:])
    assert failure_reason(done) == "read_hold(0, 40): no reply within 10 s"


def test_a_lost_connection_ends_the_refresh(harness, link):
    done = harness.inverter.refresh()
    link.sent()
    link.drop(ConnectionLost())
    assert failure_reason(done) == "read_hold(0, 40): connection lost"
    harness.clock.advance(2)  # the reconnection delay
    assert harness.connect().sent() == []  # nothing left over from the old refresh


def test_holding_registers_are_read_on_every_connection_when_asked():
    made = make_harness(read_holding_on_connect=True)
    link = made.endpoint.accept()
    asked = answer_reads(link, {65: 50})
    assert asked == [(HOLD, r, 40) for r in HOLDING_BLOCKS]
    assert made.inverter.registers[65] == 50
    link.drop(ConnectionLost())
    made.clock.advance(2)
    again = made.endpoint.accept()
    assert answer_reads(again) == asked
    result_of(made.stop())
    assert made.clock.getDelayedCalls() == []


def test_the_read_on_connecting_logs_what_failed():
    made = make_harness(read_holding_on_connect=True)
    link = made.endpoint.accept()
    with capturedLogs() as events:
        link.sent()
        made.clock.advance(10)
        answer_reads(link)
    assert any("reading the holding registers on connecting: read_hold(0, 40): no reply"
               in formatEvent(e) for e in events)
    result_of(made.stop())


# -- read_only ----------------------------------------------------------------------------------


def test_a_read_only_inverter_refuses_every_write_and_sends_none():
    made = make_harness(read_only=True)
    link = made.endpoint.accept()
    refused = [
        made.inverter.write_single(65, 50),
        made.inverter.write_singles(68, (1, 2)),
        made.inverter.write_multi(12, CLOCK_VALUES),
        made.inverter.set_bit(21, 7, True),
    ]
    for deferred in refused:
        assert failure_reason(deferred) == READ_ONLY_REASON
    assert link.sent() == []
    # Reads still work.
    done = made.inverter.read_hold(21)
    link.receive(hold_reply(21, 1))
    assert result_of(done) == {21: 1}
    result_of(made.stop())


def test_read_only_is_enforced_at_the_queue_whatever_asks():
    made = make_harness(read_only=True)
    link = made.endpoint.accept()

    def sneaky_steps():
        yield write_request(65, 50)

    done = made.inverter.requests.submit("a write by another way", sneaky_steps())
    assert failure_reason(done) == READ_ONLY_REASON
    assert link.sent() == []
    result_of(made.stop())
