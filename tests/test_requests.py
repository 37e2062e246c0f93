"""RequestEngine on its own: no transport, no reactor; a fake clock and a list for a wire.

What the engine is told (connected, replies, hold) is all it knows, so each
rule of the queue is checked here directly: one request on the wire, order,
deadlines, the send margin, which reply answers which request.
"""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from octolux import lxp
from octolux.device.requests import LXP_REPLIES, SEND_MARGIN, CommandFailed, RequestEngine

DATALOG, SERIAL = "2222222222", "5555555555"
HOLD = lxp.DeviceFunction.READ_HOLD
INPUT = lxp.DeviceFunction.READ_INPUT
WRITE = lxp.DeviceFunction.WRITE_SINGLE
TIMEOUT = 10.0

_case = SynchronousTestCase()
result_of = _case.successResultOf
no_result = _case.assertNoResult


def reason_of(deferred) -> str:
    return _case.failureResultOf(deferred, CommandFailed).value.reason


def one_step(request):
    """A request of one step whose result is its answer."""
    answer = yield request
    return answer


def read(register, count=1):
    return lxp.ReadRequest(HOLD, DATALOG, SERIAL, register, count)


def hold_reply(register, *values, serial=SERIAL):
    return lxp.ReadReply(HOLD, DATALOG, serial, register, values)


def write(register, value):
    return lxp.WriteSingleRequest(DATALOG, SERIAL, register, value)


def echo(register, value):
    return lxp.WriteSingleReply(DATALOG, SERIAL, register, value)


@attrs.define
class Rig:
    clock: Clock
    wire: list
    engine: RequestEngine
    asked: list = attrs.Factory(list)

    def submit(self, request, name="request"):
        asked = self.engine.submit(name, one_step(request))
        self.asked.append(asked)
        return asked

    def stop(self) -> None:
        """Stop the engine; failures no test looked at are not "unhandled errors"."""
        self.engine.stop()
        for asked in self.asked:
            asked.addErrback(lambda _: None)

    def sent(self) -> list:
        frames, self.wire[:] = list(self.wire), []
        return frames


def make_rig(*, timeout=TIMEOUT, connected=True, **options) -> Rig:
    clock, wire = Clock(), []
    engine = RequestEngine(clock, wire.append, timeout=timeout, **options)
    engine.start()
    if connected:
        engine.connected()
    return Rig(clock, wire, engine)


@pytest.fixture
def rig():
    made = make_rig()
    yield made
    made.stop()
    assert made.clock.getDelayedCalls() == []  # every deadline settled


# -- order and answers -------------------------------------------------------------------


def test_one_request_on_the_wire_at_a_time_in_the_order_asked(rig):
    first, second, third = rig.submit(read(21)), rig.submit(read(22)), rig.submit(write(65, 1))
    assert rig.sent() == [read(21)]
    assert rig.engine.reply_received(hold_reply(21, 5))
    assert rig.sent() == [read(22)]
    rig.engine.reply_received(hold_reply(22, 6))
    assert rig.sent() == [write(65, 1)]
    rig.engine.reply_received(echo(65, 1))
    assert [result_of(d) for d in (first, second, third)] == [
        hold_reply(21, 5), hold_reply(22, 6), echo(65, 1)]
    assert rig.sent() == []


def test_an_echo_of_another_value_is_not_the_answer_to_a_write(rig):
    done = rig.submit(write(65, 50))
    assert not rig.engine.reply_received(echo(65, 49))  # someone else's write, or a late echo
    no_result(done)
    assert rig.engine.reply_received(echo(65, 50))
    assert result_of(done) == echo(65, 50)


@pytest.mark.parametrize("reply", [
    hold_reply(21, 1, 2),  # another count: someone else's read, or a late one of ours
    hold_reply(22, 1),  # another register
    hold_reply(21, 1, serial="9999999999"),  # another inverter
    lxp.ReadReply(INPUT, DATALOG, SERIAL, 21, (1,)),  # input registers, not holding
    echo(21, 1),  # a write of the register being read
    lxp.ExceptionReply(WRITE, DATALOG, SERIAL, 21, lxp.ExceptionCode.ILLEGAL_VALUE),
])
def test_news_that_is_not_the_answer_leaves_the_read_waiting(rig, reply):
    done = rig.submit(read(21))
    assert rig.engine.answered_by(reply) is None
    assert not rig.engine.reply_received(reply)
    no_result(done)


def test_a_refusal_fails_the_request_at_once_with_its_reason_and_the_next_goes_out(rig):
    done = rig.submit(write(21, 0xFFFF))
    queued = rig.submit(read(21))
    rig.sent()
    refusal = lxp.ExceptionReply(WRITE, DATALOG, SERIAL, 21, lxp.ExceptionCode.ILLEGAL_VALUE)
    assert rig.engine.reply_received(refusal)
    assert reason_of(done) == "exception reply: ILLEGAL_VALUE"
    assert rig.sent() == [read(21)]
    no_result(queued)


def test_a_request_of_two_steps_runs_them_back_to_back(rig):
    def read_then_write():
        reply = yield read(21)
        answer = yield write(21, reply.values[0] | 0x80)
        return answer.value

    done = rig.engine.submit("set bit 7", read_then_write())
    other = rig.submit(read(65))
    assert rig.sent() == [read(21)]
    rig.engine.reply_received(hold_reply(21, 1))
    assert rig.sent() == [write(21, 0x81)]  # not the other read in between
    rig.engine.reply_received(echo(21, 0x81))
    assert result_of(done) == 0x81
    assert rig.sent() == [read(65)]
    no_result(other)


def test_steps_that_raise_fail_the_request_and_free_the_wire(rig):
    def refuses():
        yield read(21)
        raise CommandFailed("invalid request: no")

    done = rig.engine.submit("refuses", refuses())
    queued = rig.submit(read(22))
    rig.engine.reply_received(hold_reply(21, 1))
    assert reason_of(done) == "invalid request: no"
    assert rig.sent() == [read(21), read(22)]
    no_result(queued)


# -- deadlines and the send margin ---------------------------------------------------------


def test_a_request_on_the_wire_fails_at_its_deadline_and_the_next_goes_out(rig):
    first = rig.submit(read(21))
    rig.clock.advance(3)
    second = rig.submit(read(22))
    rig.clock.advance(6.5)
    no_result(first)
    rig.clock.advance(0.5)
    assert reason_of(first) == "no reply within 10 s"
    assert rig.sent() == [read(21), read(22)]
    no_result(second)


def test_a_late_answer_after_the_deadline_answers_nothing(rig):
    first = rig.submit(read(21))
    rig.clock.advance(TIMEOUT)
    reason_of(first)
    second = rig.submit(read(21, 2))
    assert not rig.engine.reply_received(hold_reply(21, 1))  # the first read's, too late
    no_result(second)


def test_a_queued_request_goes_out_with_exactly_the_margin_left(rig):
    rig.submit(read(21))
    rig.clock.advance(SEND_MARGIN)
    second = rig.submit(read(22))
    rig.sent()
    rig.clock.advance(TIMEOUT - SEND_MARGIN)  # the first expires: SEND_MARGIN left for the second
    assert rig.sent() == [read(22)]
    no_result(second)


def test_a_queued_request_with_less_than_the_margin_left_is_never_sent(rig):
    rig.submit(read(21))
    rig.clock.advance(SEND_MARGIN - 0.5)
    second = rig.submit(write(65, 1))
    rig.sent()
    rig.clock.advance(TIMEOUT - SEND_MARGIN + 0.5)  # the first expires: 1.5 s left for it
    assert reason_of(second) == "not sent: 1.5 s of 10 s left"
    assert rig.sent() == []


def test_the_margin_is_at_most_half_a_short_timeout():
    made = make_rig(timeout=1.0)
    assert made.engine.send_margin == 0.5
    made.submit(read(21))
    made.clock.advance(0.4)
    second = made.submit(read(22))
    made.clock.advance(0.6)
    assert reason_of(second) == "not sent: 0.4 s of 1 s left"
    made.stop()


def test_a_second_step_whose_turn_comes_too_late_is_not_sent(rig):
    def read_then_write():
        yield read(21)
        yield write(21, 1)

    done = rig.engine.submit("read then write", read_then_write())
    rig.sent()
    rig.clock.advance(TIMEOUT - 0.5)
    rig.engine.reply_received(hold_reply(21, 0))
    assert reason_of(done) == "not sent: 0.5 s of 10 s left"
    assert rig.sent() == []


# -- the wire coming and going, holding, stopping -----------------------------------------


def test_requests_wait_for_the_wire_and_fail_in_time_without_it():
    made = make_rig(connected=False)
    waiting = made.submit(read(21))
    made.clock.advance(3)
    made.engine.connected()
    assert made.sent() == [read(21)]
    lost = made.submit(read(22))
    made.engine.disconnected()
    assert reason_of(waiting) == "connection lost"
    made.clock.advance(TIMEOUT)
    assert reason_of(lost) == "not connected within 10 s"
    assert made.sent() == []


def test_a_connection_that_comes_too_late_sends_nothing():
    made = make_rig(connected=False)
    done = made.submit(write(65, 0))
    made.clock.advance(TIMEOUT - 1)
    made.engine.connected()
    assert reason_of(done) == "not connected within 10 s"
    assert made.sent() == []


def test_a_held_queue_sends_nothing_and_says_what_it_waited_for(rig):
    rig.engine.hold("inverter serial not learned")
    first = rig.submit(read(21))
    rig.clock.advance(TIMEOUT)
    assert reason_of(first) == "inverter serial not learned within 10 s"
    second = rig.submit(read(22))
    assert rig.sent() == []
    rig.engine.release()
    assert rig.sent() == [read(22)]
    no_result(second)


def test_prepare_addresses_each_frame_as_it_goes_out_and_may_refuse_it():
    def prepare(frame):
        if isinstance(frame, lxp.WriteSingleRequest):
            raise CommandFailed("read_only is set for this inverter")
        return attrs.evolve(frame, inverter=SERIAL)

    made = make_rig(prepare=prepare)
    refused = made.submit(write(65, 1))
    done = made.submit(lxp.ReadRequest(HOLD, DATALOG, "0000000000", 21, 1))
    assert reason_of(refused) == "read_only is set for this inverter"
    assert made.sent() == [read(21)]  # and it is answered as addressed
    made.engine.reply_received(hold_reply(21, 7))
    assert result_of(done) == hold_reply(21, 7)
    made.stop()


def test_cancelling_frees_the_wire(rig):
    first, second = rig.submit(read(21)), rig.submit(read(22))
    rig.sent()
    first.cancel()
    _case.failureResultOf(first, CancelledError)
    assert rig.sent() == [read(22)]
    no_result(second)


def test_stop_fails_everything_pending_and_refuses_new_requests(rig):
    on_wire, queued = rig.submit(read(21)), rig.submit(read(22))
    rig.engine.stop()
    assert reason_of(on_wire) == reason_of(queued) == "stopping"
    assert reason_of(rig.submit(read(23))) == "not running"
    assert rig.clock.getDelayedCalls() == []


def test_failures_are_logged_at_debug_only(rig):
    with capturedLogs() as events:
        done = rig.submit(read(21), name="read_hold(21, 1)")
        rig.clock.advance(TIMEOUT)
    reason_of(done)
    lines = [(e["log_level"], formatEvent(e)) for e in events]
    assert (LogLevel.debug, "inverter: read_hold(21, 1) failed: no reply within 10 s") in lines
    assert all(level == LogLevel.debug for level, _ in lines)


# -- another wire: the engine knows LXP only through its rule ----------------------------


@attrs.frozen
class Ask:
    unit: int
    register: int


@attrs.frozen
class Reply:
    unit: int
    register: int
    value: int | None = None
    error: str | None = None


class UnitRule:
    """A Modbus-like rule: a reply answers the request for its unit and register."""

    @staticmethod
    def answers(request: Ask, reply: Reply) -> bool:
        return (reply.unit, reply.register) == (request.unit, request.register)

    @staticmethod
    def refusal(reply: Reply) -> str | None:
        return None if reply.error is None else f"exception reply: {reply.error}"


def test_any_wire_with_its_own_rule():
    made = make_rig(rule=UnitRule())
    first, second = made.submit(Ask(1, 21)), made.submit(Ask(1, 22))
    assert not made.engine.reply_received(Reply(2, 21, 5))  # another unit on the bus
    assert made.engine.reply_received(Reply(1, 21, 5))
    assert result_of(first) == Reply(1, 21, 5)
    assert made.engine.reply_received(Reply(1, 22, error="ILLEGAL_ADDRESS"))
    assert reason_of(second) == "exception reply: ILLEGAL_ADDRESS"
    assert made.sent() == [Ask(1, 21), Ask(1, 22)]
    made.stop()


def test_the_lxp_rule_is_the_default():
    assert make_rig().engine._rule is LXP_REPLIES
