"""Inverter: the request queue, reply matching, state, observers and reconnection.

Deterministic: a fake endpoint whose connection attempts the test completes
(with a StringTransport) or refuses, and a fake clock.
"""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from vectors import parsed

from octolux import lxp
from octolux.device.commands import Topics
from octolux.device.inverter import SEND_MARGIN, CommandFailed, Inverter
from octolux.lxp.inputs import BLOCK_KEYS
from octolux.mqtt.bridge import InverterBridge
from octolux.mqtt.client import Message

DATALOG = "2222222222"  # the serials of the captured frames in tests/data
SERIAL = "5555555555"
OTHER_DATALOG = "3333333333"
OTHER_SERIAL = "9999999999"
PEER = IPv4Address("TCP", "192.0.2.5", 8000)
TIMEOUT = 10.0

HOLD = lxp.DeviceFunction.READ_HOLD
INPUT = lxp.DeviceFunction.READ_INPUT
WRITE = lxp.DeviceFunction.WRITE_SINGLE

_case = SynchronousTestCase()
result_of = _case.successResultOf
no_result = _case.assertNoResult


def failure_reason(deferred: Deferred) -> str:
    """The CommandFailed reason a fired Deferred failed with."""
    return _case.failureResultOf(deferred, CommandFailed).value.reason


def read_hold_request(register, count=1):
    return lxp.ReadRequest(HOLD, DATALOG, SERIAL, register, count)


def read_input_request(register, count=40):
    return lxp.ReadRequest(INPUT, DATALOG, SERIAL, register, count)


def hold_reply(register, *values, datalog=DATALOG, serial=SERIAL):
    return lxp.ReadReply(HOLD, datalog, serial, register, tuple(values))


def input_reply(register, values):
    return lxp.ReadReply(INPUT, DATALOG, SERIAL, register, tuple(values))


def write_request(register, value):
    return lxp.WriteSingleRequest(DATALOG, SERIAL, register, value)


def write_ack(register, value):
    return lxp.WriteSingleReply(DATALOG, SERIAL, register, value)


def exception_reply(function, register, code=lxp.ExceptionCode.ILLEGAL_VALUE):
    return lxp.ExceptionReply(function, DATALOG, SERIAL, register, code)


def captured(name):
    return parsed(name)


@attrs.define
class Link:
    """One faked TCP connection: what the inverter sent, and a way to answer."""

    protocol: object  # ClientService's proxy around our LxpProtocol
    transport: StringTransport
    lost: bool = False

    def receive(self, *frames) -> None:
        self.protocol.dataReceived(b"".join(lxp.build(frame) for frame in frames))

    def sent(self) -> list:
        """The frames written since the last call."""
        frames = lxp.FrameDecoder(lxp.Direction.TO_DONGLE).feed(self.transport.value())
        self.transport.clear()
        return frames

    def drop(self, error=None) -> None:
        self.lost = True
        self.protocol.connectionLost(Failure(error or ConnectionLost()))


class FakeEndpoint:
    """An IStreamClientEndpoint whose attempts the test accepts or refuses."""

    def __init__(self):
        self.attempts: list[tuple[object, Deferred]] = []
        self.cancelled = 0
        self.auto_accept = False
        self.links: list[Link] = []

    def connect(self, factory):
        attempt = Deferred(canceller=self._cancelled)
        self.attempts.append((factory, attempt))
        if self.auto_accept:
            self.accept()
        return attempt

    def accept(self) -> Link:
        factory, attempt = self.attempts[-1]
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        link = Link(protocol, transport)
        self.links.append(link)
        attempt.callback(protocol)
        return link

    def _cancelled(self, attempt) -> None:
        self.cancelled += 1  # Deferred.cancel then fails it with CancelledError

    def refuse(self) -> None:
        self.attempts[-1][1].errback(ConnectionRefusedError())


class Recorder:
    """An observer that records every call."""

    def __init__(self):
        self.events: list[tuple] = []

    def inputs_received(self, blocks):
        self.events.append(("inputs", blocks))

    def registers_received(self, registers):
        self.events.append(("registers", registers))

    def connection_changed(self, connected):
        self.events.append(("connected", connected))


@attrs.define
class Harness:
    clock: Clock
    endpoint: FakeEndpoint
    inverter: Inverter
    observer: Recorder

    @property
    def link(self) -> Link:
        return self.endpoint.links[-1]

    def connect(self) -> Link:
        link = self.endpoint.accept()
        self.observer.events.clear()
        return link

    def stop(self) -> Deferred:
        stopped = self.inverter.stopService()
        if self.endpoint.links and not self.link.lost:
            self.link.drop(ConnectionDone())  # StringTransport never calls connectionLost
        return stopped


def make_harness(*, first_observer=None, **options) -> Harness:
    clock = Clock()
    endpoint = FakeEndpoint()
    options.setdefault("command_timeout", TIMEOUT)
    options.setdefault("retry_policy", lambda attempt: 2.0 * 2 ** (attempt - 1))
    inverter = Inverter(endpoint, DATALOG, SERIAL, clock=clock, **options)
    if first_observer is not None:
        inverter.add_observer(first_observer)
    observer = Recorder()
    inverter.add_observer(observer)
    inverter.startService()
    return Harness(clock, endpoint, inverter, observer)


@pytest.fixture
def harness():
    """A started Inverter; afterwards it must stop cleanly, leaving no timers."""
    made = make_harness()
    yield made
    if made.inverter.running:
        result_of(made.stop())
    assert made.clock.getDelayedCalls() == []


@pytest.fixture
def link(harness) -> Link:
    return harness.connect()


# -- requests and replies -----------------------------------------------------------


def test_read_hold_is_answered_by_its_reply(harness, link):
    done = harness.inverter.read_hold(21)
    assert link.sent() == [read_hold_request(21)]
    no_result(done)
    link.receive(hold_reply(21, 0x80))
    assert result_of(done) == {21: 0x80}
    assert harness.inverter.registers == {21: 0x80}
    assert harness.observer.events == [("registers", {21: 0x80})]


def test_read_hold_of_several_registers(harness, link):
    done = harness.inverter.read_hold(64, 3)
    assert link.sent() == [read_hold_request(64, 3)]
    link.receive(hold_reply(64, 100, 50, 80))
    assert result_of(done) == {64: 100, 65: 50, 66: 80}


def test_write_single_fires_with_the_echo(harness, link):
    done = harness.inverter.write_single(65, 50)
    assert link.sent() == [write_request(65, 50)]
    link.receive(write_ack(65, 50))
    assert result_of(done) == 50
    assert harness.inverter.registers[65] == 50
    assert harness.observer.events == [("registers", {65: 50})]


def test_the_result_fires_before_observers_hear_the_register(harness, link):
    order = []
    harness.inverter.add_observer(_Calls(order))
    harness.inverter.write_single(65, 50).addCallback(lambda value: order.append("result"))
    link.receive(write_ack(65, 50))
    assert order == ["result", "registers"]


class _Calls(Recorder):
    def __init__(self, order):
        super().__init__()
        self.order = order

    def registers_received(self, registers):
        self.order.append("registers")


def test_an_echo_of_another_value_is_news_and_the_write_waits_for_its_own(harness, link):
    done = harness.inverter.write_single(65, 50)
    link.receive(write_ack(65, 49))  # someone else's write, or a late echo of ours
    no_result(done)
    assert harness.inverter.registers[65] == 49
    assert harness.observer.events == [("registers", {65: 49})]
    link.receive(write_ack(65, 50))
    assert result_of(done) == 50


def test_a_write_whose_echo_never_comes_fails_at_its_deadline(harness, link):
    done = harness.inverter.write_single(65, 50)
    link.receive(write_ack(65, 49))
    harness.clock.advance(TIMEOUT)
    assert failure_reason(done) == "no reply within 10 s"


@attrs.define
class _Publisher:
    """Records (topic, payload) as the bridge publishes them."""

    published: list

    def publish(self, topic, payload, *, qos=0, retain=False, coalesce=False, batch=False):
        self.published.append((topic, payload))


def test_a_late_echo_does_not_answer_the_next_write(harness, link):
    """Issue 8, defect 1: 52 times out, its echo comes while 53 is on the wire."""
    published = []
    topics = Topics()
    bridge = InverterBridge(harness.inverter, _Publisher(published), topics)
    harness.inverter.add_observer(bridge)
    bridge.command_received(Message(topics.command("discharge_pct"), b"52", False))
    harness.clock.advance(TIMEOUT)
    bridge.command_received(Message(topics.command("discharge_pct"), b"53", False))
    assert link.sent() == [write_request(65, 52), write_request(65, 53)]
    harness.clock.advance(2)
    link.receive(write_ack(65, 52))  # the late echo of 52
    harness.clock.advance(1)
    link.receive(write_ack(65, 53))
    assert published == [  # (no settings: its other registers were never read)
        ("octolux/result/discharge_pct", "FAIL"),
        ("octolux/hold/65", "52"),
        ("octolux/result/discharge_pct", "OK"),
        ("octolux/hold/65", "53"),
    ]


def test_requests_go_one_at_a_time_in_order(harness, link):
    first = harness.inverter.read_hold(21)
    second = harness.inverter.write_single(65, 50)
    third = harness.inverter.read_input(0)
    assert link.sent() == [read_hold_request(21)]
    link.receive(hold_reply(21, 1))
    assert link.sent() == [write_request(65, 50)]
    link.receive(write_ack(65, 50))
    assert link.sent() == [read_input_request(0)]
    assert result_of(first) == {21: 1}
    assert result_of(second) == 50
    no_result(third)
    link.receive(captured("read_input_reply_reg0"))
    assert set(result_of(third)) == {1}


def test_input_broadcast_satisfies_a_pending_read_of_the_same_registers(harness, link):
    done = harness.inverter.read_input(0, 40)
    link.receive(captured("read_input_reply_reg0"))  # a broadcast is that very data
    blocks = result_of(done)
    assert set(blocks) == {1}
    assert set(blocks[1]) == set(BLOCK_KEYS[1])
    assert harness.observer.events == [("inputs", blocks)]


def test_a_127_register_frame_is_news_but_not_the_answer_to_a_read_of_40(harness, link):
    done = harness.inverter.read_input(0, 40)
    link.receive(captured("read_input_all_reply_protocol5_127regs"))
    no_result(done)
    assert [set(blocks) for _, blocks in harness.observer.events] == [{1, 2, 3}]
    link.receive(captured("read_input_reply_reg0"))
    assert set(result_of(done)) == {1}


def test_a_late_read_reply_of_another_count_does_not_answer_the_next_read(harness, link):
    first = harness.inverter.read_hold(64, 3)
    harness.clock.advance(TIMEOUT)
    assert failure_reason(first) == "no reply within 10 s"
    second = harness.inverter.read_hold(64, 1)
    assert link.sent() == [read_hold_request(64, 3), read_hold_request(64, 1)]
    link.receive(hold_reply(64, 100, 50, 80))  # the late reply to the first read
    no_result(second)
    assert harness.inverter.registers == {64: 100, 65: 50, 66: 80}
    link.receive(hold_reply(64, 99))
    assert result_of(second) == {64: 99}


def test_input_broadcast_does_not_satisfy_a_pending_read_hold(harness, link):
    done = harness.inverter.read_hold(0, 40)
    link.receive(captured("read_input_reply_reg0"))
    no_result(done)
    assert [kind for kind, _ in harness.observer.events] == ["inputs"]
    link.receive(hold_reply(0, *range(40)))
    assert result_of(done) == dict(zip(range(40), range(40), strict=True))


def test_a_shorter_reply_does_not_satisfy_a_bigger_read(harness, link):
    done = harness.inverter.read_hold(0, 40)
    link.receive(hold_reply(0, *range(20)))  # someone else read 20
    no_result(done)
    assert harness.inverter.registers[19] == 19  # but it is fresh news all the same


def test_a_write_ack_does_not_satisfy_a_read_of_the_same_register(harness, link):
    done = harness.inverter.read_hold(65)
    link.receive(write_ack(65, 50))  # the app or the cloud wrote it
    no_result(done)
    assert harness.inverter.registers[65] == 50
    assert harness.observer.events == [("registers", {65: 50})]
    link.receive(hold_reply(65, 50))
    assert result_of(done) == {65: 50}


def test_a_reply_to_another_clients_read_is_published_but_does_not_satisfy_ours(harness, link):
    done = harness.inverter.read_hold(21)
    link.receive(hold_reply(22, 7))
    no_result(done)
    assert harness.observer.events == [("registers", {22: 7})]
    link.receive(hold_reply(21, 3))
    assert result_of(done) == {21: 3}


def test_a_reply_from_another_inverter_serial_does_not_satisfy_ours(harness, link):
    done = harness.inverter.read_hold(21)
    with capturedLogs() as events:
        link.receive(hold_reply(21, 5, serial=OTHER_SERIAL), hold_reply(21, 5, serial=OTHER_SERIAL))
    no_result(done)
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1
    assert OTHER_SERIAL in warnings[0]
    assert "inverter serial in config.ini" in warnings[0]


def test_frames_for_another_datalog_are_ignored_and_reported_once(harness, link):
    done = harness.inverter.read_hold(21)
    with capturedLogs() as events:
        for _ in range(3):
            link.receive(hold_reply(21, 5, datalog=OTHER_DATALOG))
    no_result(done)
    assert harness.observer.events == []
    assert harness.inverter.registers == {}
    assert not link.transport.disconnecting
    warnings = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]
    assert len(warnings) == 1
    assert OTHER_DATALOG in warnings[0]
    assert "check the datalog serial in config.ini" in warnings[0]


def test_exception_reply_fails_the_matching_request_only(harness, link):
    write = harness.inverter.write_single(21, 0xFFFF)
    queued = harness.inverter.read_hold(21)
    link.sent()
    link.receive(exception_reply(WRITE, 21))
    assert failure_reason(write) == "exception reply: ILLEGAL_VALUE"
    assert link.sent() == [read_hold_request(21)]
    no_result(queued)
    assert not link.transport.disconnecting


def test_the_captured_exception_reply_fails_its_write(harness, link):
    done = harness.inverter.write_single(21, 1)
    link.receive(captured("exception_reply_write_single_reg21_illegal_value"))
    assert failure_reason(done) == "exception reply: ILLEGAL_VALUE"


def test_an_exception_reply_with_address_0_fails_its_write_at_once(harness, link):
    # BJ and DG dongles and EG4 inverters address their replies 0, as requests are.
    done = harness.inverter.write_single(21, 1)
    link.receive(attrs.evolve(exception_reply(WRITE, 21), address=0, protocol=5))
    assert failure_reason(done) == "exception reply: ILLEGAL_VALUE"


def test_replies_with_address_0_answer_and_are_news(harness, link):
    done = harness.inverter.read_hold(21)
    link.receive(attrs.evolve(hold_reply(21, 9), address=0, protocol=5))
    assert result_of(done) == {21: 9}
    assert harness.inverter.registers == {21: 9}


def test_exception_replies_for_other_requests_are_ignored(harness, link):
    done = harness.inverter.read_hold(21)
    link.receive(
        exception_reply(WRITE, 21),  # someone's write to the register we read
        exception_reply(HOLD, 22),  # someone's read of another register
    )
    no_result(done)
    assert not link.transport.disconnecting
    link.receive(hold_reply(21, 9))
    assert result_of(done) == {21: 9}


def test_unrelated_traffic_changes_nothing_and_keeps_the_connection(harness, link):
    done = harness.inverter.read_hold(12, 3)
    link.sent()
    link.receive(
        captured("write_param_reply"),
        lxp.WriteParamRequest(DATALOG, 7, b"\x01\x00"),  # the vendor cloud
        captured("read_param_reply_param0_300s"),
        captured("write_multi_ack"),
        # A request's bytes from the dongle fit no reply: a bad frame. (A
        # protocol 1 read request would fit: a reply of one value.)
        captured("write_multi_request_time"),
        lxp.UnknownFrame(0xC7, DATALOG, b"\x00\x01"),
        captured("heartbeat"),
    )
    no_result(done)
    assert harness.observer.events == []
    assert harness.inverter.registers == {}
    assert link.sent() == []  # heartbeat echo is off by default
    assert not link.transport.disconnecting
    link.receive(captured("read_hold_reply_reg12_time"))
    assert set(result_of(done)) == {12, 13, 14}


def test_frames_of_an_unknown_function_are_logged_once_per_function(harness, link):
    with capturedLogs() as events:
        link.receive(*[lxp.UnknownFrame(0xC7, DATALOG, b"\x00\x01")] * 1000,
                     lxp.UnknownFrame(0xC9, DATALOG, b"\x05\x00"))
    lines = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.info
             and "unknown tcp function" in formatEvent(e)]
    assert len(lines) == 2
    assert "function 199" in lines[0] and "function 201" in lines[1]
    assert not link.transport.disconnecting


def test_bad_bytes_between_frames_do_not_drop_the_connection(harness, link):
    done = harness.inverter.read_hold(21)
    corrupt = bytearray(lxp.build(hold_reply(21, 1)))
    corrupt[-2] ^= 0x55
    link.protocol.dataReceived(b"\xa1\x1agarbage" + bytes(corrupt) + b"\x00" * 5)
    no_result(done)
    assert not link.transport.disconnecting
    assert harness.inverter.connected
    link.receive(hold_reply(21, 2))
    assert result_of(done) == {21: 2}


# -- timeouts, disconnection, queue hygiene ----------------------------------------


def test_no_reply_fails_the_request_and_the_next_one_is_sent(harness, link):
    first = harness.inverter.read_hold(21)
    harness.clock.advance(5)
    second = harness.inverter.read_hold(65)
    assert link.sent() == [read_hold_request(21)]
    harness.clock.advance(5)
    assert failure_reason(first) == "no reply within 10 s"
    assert link.sent() == [read_hold_request(65)]
    link.receive(hold_reply(65, 100))
    assert result_of(second) == {65: 100}


def test_a_queued_command_with_too_little_time_left_is_never_sent(harness, link):
    """Issue 8, defect 5: a mute dongle, 71 then 72 20 ms later."""
    first = harness.inverter.write_single(65, 71)
    harness.clock.advance(0.02)
    second = harness.inverter.write_single(64, 72)
    assert link.sent() == [write_request(65, 71)]
    harness.clock.advance(TIMEOUT - 0.02)
    assert failure_reason(first) == "no reply within 10 s"
    assert failure_reason(second) == "not sent: 0.0 s of 10 s left"
    assert link.transport.value() == b""  # no write frame left the bridge


def test_a_queued_command_is_sent_while_enough_time_is_left(harness, link):
    harness.inverter.write_single(65, 71)
    harness.clock.advance(SEND_MARGIN)
    second = harness.inverter.write_single(64, 72)
    link.sent()
    harness.clock.advance(TIMEOUT - SEND_MARGIN)  # exactly the margin left for the second
    assert link.sent() == [write_request(64, 72)]
    link.receive(write_ack(64, 72))
    assert result_of(second) == 72


def test_the_send_margin_is_at_most_half_a_short_command_timeout():
    harness = make_harness(command_timeout=1.0)
    link = harness.connect()
    harness.inverter.read_hold(21)
    harness.clock.advance(0.4)
    second = harness.inverter.read_hold(22)
    harness.clock.advance(0.6)  # 0.4 s (< 0.5 s) left for the second
    assert link.sent() == [read_hold_request(21)]
    assert failure_reason(second) == "not sent: 0.4 s of 1 s left"
    result_of(harness.stop())


def test_a_connection_that_comes_too_late_for_a_command_does_not_send_it(harness):
    done = harness.inverter.write_single(65, 0)
    harness.clock.advance(TIMEOUT - 1)
    link = harness.connect()
    assert failure_reason(done) == "not connected within 10 s"
    assert link.sent() == []


def test_a_request_queued_too_long_behind_others_fails(harness, link):
    harness.inverter.read_hold(21)
    harness.clock.advance(5)
    second = harness.inverter.read_hold(65)
    harness.clock.advance(5)  # the first times out, the second goes out
    harness.clock.advance(5)
    assert failure_reason(second) == "no reply within 10 s"


def test_a_command_while_disconnected_fails_after_the_timeout_and_is_never_sent(harness):
    done = harness.inverter.write_single(65, 0)
    harness.clock.advance(TIMEOUT - 0.1)
    no_result(done)
    harness.clock.advance(0.1)
    assert failure_reason(done) == "not connected within 10 s"
    link = harness.connect()
    assert link.sent() == []


def test_a_command_while_disconnected_is_sent_on_connection(harness):
    done = harness.inverter.write_single(65, 0)
    harness.clock.advance(3)
    link = harness.connect()
    assert link.sent() == [write_request(65, 0)]
    link.receive(write_ack(65, 0))
    assert result_of(done) == 0


def test_a_request_whose_time_is_up_as_the_connection_comes_is_not_sent():
    harness = make_harness(retry_policy=lambda attempt: TIMEOUT)
    harness.endpoint.refuse()  # the retry is now due at t=10
    done = harness.inverter.read_hold(21)  # and so is this deadline, scheduled later
    harness.endpoint.auto_accept = True
    harness.clock.advance(TIMEOUT)  # reconnects first, then the timer would fire
    assert harness.inverter.connected
    assert harness.link.sent() == []
    assert failure_reason(done) == "not connected within 10 s"
    result_of(harness.stop())
    assert harness.clock.getDelayedCalls() == []


def test_the_request_on_the_wire_fails_when_the_connection_drops(harness, link):
    on_wire = harness.inverter.read_hold(21)
    queued = harness.inverter.read_hold(22)
    link.drop()
    assert failure_reason(on_wire) == "connection lost"
    no_result(queued)
    harness.clock.advance(2)  # reconnection delay
    new_link = harness.connect()
    assert new_link.sent() == [read_hold_request(22)]
    new_link.receive(hold_reply(22, 4))
    assert result_of(queued) == {22: 4}


def test_a_late_reply_after_a_timeout_is_still_news(harness, link):
    done = harness.inverter.read_hold(21)
    harness.clock.advance(TIMEOUT)
    failure_reason(done)
    link.receive(hold_reply(21, 8))
    assert harness.inverter.registers[21] == 8
    assert harness.observer.events == [("registers", {21: 8})]


def test_cancelling_a_request_frees_the_wire(harness, link):
    first = harness.inverter.read_hold(21)
    second = harness.inverter.read_hold(22)
    link.sent()
    first.cancel()
    _case.failureResultOf(first, CancelledError)
    assert link.sent() == [read_hold_request(22)]
    second.cancel()
    _case.failureResultOf(second, CancelledError)


def test_invalid_requests_fail_with_command_failed(harness, link):
    for done in (
        harness.inverter.read_hold(70000),
        harness.inverter.read_hold(0, 0),
        harness.inverter.read_input(0, 128),
        harness.inverter.write_single(65, -1),
        harness.inverter.set_bit(21, 16, True),
    ):
        assert failure_reason(done).startswith("invalid request: ")
    assert link.sent() == []


def test_requests_fail_at_once_when_not_running():
    clock = Clock()
    inverter = Inverter(FakeEndpoint(), DATALOG, SERIAL, clock=clock)
    assert failure_reason(inverter.read_hold(21)) == "not running"
    assert clock.getDelayedCalls() == []


def test_serials_must_have_ten_characters():
    with pytest.raises(ValueError, match="datalog"):
        Inverter(FakeEndpoint(), "short", SERIAL, clock=Clock())
    with pytest.raises(ValueError, match="serial"):
        Inverter(FakeEndpoint(), DATALOG, "01234567890", clock=Clock())


# -- set_bit ---------------------------------------------------------------------------


def test_set_bit_reads_then_writes_back_to_back_and_checks_the_echo(harness, link):
    done = harness.inverter.set_bit(21, 7, True)
    other = harness.inverter.read_hold(65)  # must not come between read and write
    assert link.sent() == [read_hold_request(21)]
    link.receive(hold_reply(21, 0x0001))
    assert link.sent() == [write_request(21, 0x0081)]
    no_result(done)
    link.receive(write_ack(21, 0x0081))
    assert result_of(done) == 0x0081
    assert link.sent() == [read_hold_request(65)]
    no_result(other)
    assert harness.inverter.registers[21] == 0x0081


def test_set_bit_can_clear_a_bit(harness, link):
    done = harness.inverter.set_bit(21, 10, False)
    link.receive(hold_reply(21, 0x0481))
    assert link.sent()[-1] == write_request(21, 0x0081)
    link.receive(write_ack(21, 0x0081))
    assert result_of(done) == 0x0081


def test_set_bit_waits_for_the_echo_of_its_own_value(harness, link):
    done = harness.inverter.set_bit(21, 7, True)
    link.receive(hold_reply(21, 0x0001))
    link.receive(write_ack(21, 0x0001))  # not our write's echo
    no_result(done)
    harness.clock.advance(TIMEOUT)
    assert failure_reason(done) == "no reply within 10 s"


def test_set_bit_does_not_write_when_its_read_is_answered_too_late(harness, link):
    done = harness.inverter.set_bit(21, 7, True)
    link.sent()
    harness.clock.advance(TIMEOUT - 0.5)
    link.receive(hold_reply(21, 0x0001))
    assert failure_reason(done) == "not sent: 0.5 s of 10 s left"
    assert link.sent() == []


def test_set_bit_exception_on_the_read_fails_without_writing(harness, link):
    done = harness.inverter.set_bit(21, 7, True)
    link.sent()
    link.receive(exception_reply(HOLD, 21, lxp.ExceptionCode.BUSY))
    assert failure_reason(done) == "exception reply: BUSY"
    assert link.sent() == []


def test_set_bit_times_out_as_a_whole(harness, link):
    done = harness.inverter.set_bit(21, 7, True)
    harness.clock.advance(6)
    link.receive(hold_reply(21, 0))
    harness.clock.advance(4)
    assert failure_reason(done) == "no reply within 10 s"


# -- state and observers --------------------------------------------------------------


def test_input_bursts_reach_observers_and_latest_inputs(harness, link):
    link.receive(
        captured("read_input_reply_reg0"),
        captured("read_input_reply_reg40"),
        captured("read_input_reply_reg80"),
    )
    blocks = [event[1] for event in harness.observer.events]
    assert [list(b) for b in blocks] == [[1], [2], [3]]
    merged = {key: value for b in blocks for key, value in b[next(iter(b))].items()}
    assert merged.items() <= harness.inverter.latest_inputs.items()


def test_partial_input_frames_update_latest_inputs_without_telling_observers(harness, link):
    link.receive(input_reply(4, [521, 0x6455]))  # v_bat, soc/soh: no whole block
    assert harness.observer.events == []
    assert harness.inverter.latest_inputs["v_bat"] == 52.1
    assert harness.inverter.latest_inputs["soc"] == 0x55


def test_every_input_register_is_kept_raw_whatever_block_it_is_in(harness, link):
    # An SNA's three 127-register pushes, a battery module's registers, two
    # registers of no whole block: every one kept, as received.
    link.receive(
        input_reply(0, range(127)),
        input_reply(127, range(1000, 1127)),
        input_reply(254, range(2000, 2127)),
        input_reply(5002, [4, 280]),
        input_reply(4, [521, 0x6455]),
    )
    expected = {**dict(enumerate(range(127))), **dict(enumerate(range(1000, 1127), 127)),
                **dict(enumerate(range(2000, 2127), 254)), 5002: 4, 5003: 280, 4: 521,
                5: 0x6455}
    assert harness.inverter.input_registers == expected
    assert harness.inverter.registers == {}  # holding registers are another store


def test_connection_changes_reach_observers(harness):
    assert not harness.inverter.connected
    link = harness.endpoint.accept()
    assert harness.inverter.connected
    link.drop()
    assert not harness.inverter.connected
    assert harness.observer.events == [("connected", True), ("connected", False)]


def test_an_observer_that_raises_breaks_nothing():
    class Broken:
        def inputs_received(self, blocks):
            raise RuntimeError("observer bug")

        registers_received = connection_changed = inputs_received

    fresh = make_harness(first_observer=Broken())
    with capturedLogs() as events:
        link = fresh.endpoint.accept()
        done = fresh.inverter.read_hold(21)
        link.receive(hold_reply(21, 3), captured("read_input_reply_reg0"))
    assert result_of(done) == {21: 3}
    kinds = [kind for kind, _ in fresh.observer.events]
    assert kinds == ["connected", "registers", "inputs"]
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 3
    assert all(e["log_failure"].check(RuntimeError) for e in failures)
    assert not link.transport.disconnecting
    result_of(fresh.stop())


def test_heartbeats_are_echoed_when_asked():
    harness = make_harness(heartbeat_echo=True)
    link = harness.connect()
    link.receive(lxp.Heartbeat(DATALOG, protocol=5))
    assert link.sent() == [lxp.Heartbeat(DATALOG)]  # rebuilt as protocol 2
    link.receive(lxp.Heartbeat(OTHER_DATALOG))
    assert link.sent() == []
    result_of(harness.stop())


def test_heartbeats_are_not_echoed_by_default(harness, link):
    link.receive(lxp.Heartbeat(DATALOG))
    assert link.sent() == []


# -- connection, reconnection and the log ----------------------------------------------


def info_lines(events) -> list[str]:
    return [formatEvent(e) for e in events if e["log_level"] >= LogLevel.info]


def ours(lines: list[str]) -> list[str]:
    """Our lines only (ClientService logs its own retry line too)."""
    return [line for line in lines if line.startswith("inverter: ")]


def test_no_data_timeout_aborts_and_client_service_reconnects_with_backoff():
    harness = make_harness(no_data_timeout=900)
    with capturedLogs() as events:
        link = harness.endpoint.accept()
        harness.clock.advance(899)
        link.receive(lxp.Heartbeat(DATALOG))
        harness.clock.advance(899)
        assert not link.transport.disconnecting
        harness.clock.advance(1)
        assert link.transport.disconnected  # aborted
        link.drop(ConnectionAborted())
        assert len(harness.endpoint.attempts) == 1
        harness.clock.advance(2)
        assert len(harness.endpoint.attempts) == 2
        harness.endpoint.refuse()
        harness.clock.advance(3.9)
        assert len(harness.endpoint.attempts) == 2
        harness.clock.advance(0.1)
        assert len(harness.endpoint.attempts) == 3
        harness.endpoint.accept()
        result_of(harness.stop())
    assert harness.clock.getDelayedCalls() == []
    assert ours(info_lines(events)) == [
        "inverter: connected to 192.0.2.5:8000",
        "inverter: connection to 192.0.2.5:8000 lost: no data for 900 s, reconnecting in 2.0 s",
        "inverter: cannot connect: Connection was refused by other side, retrying in 4.0 s"
        " (attempt 2)",
        "inverter: connected to 192.0.2.5:8000",
        "inverter: disconnected from 192.0.2.5:8000: Connection was closed cleanly",
    ]


def test_a_successful_connection_resets_the_backoff(harness):
    harness.endpoint.refuse()
    harness.clock.advance(2)
    harness.endpoint.refuse()
    harness.clock.advance(4)
    link = harness.endpoint.accept()
    link.drop()
    harness.clock.advance(1.9)
    assert len(harness.endpoint.attempts) == 3
    harness.clock.advance(0.1)
    assert len(harness.endpoint.attempts) == 4


def test_stop_fails_pending_requests_and_leaves_no_delayed_calls(harness, link):
    on_wire = harness.inverter.read_hold(21)
    queued = harness.inverter.write_single(65, 1)
    stopped = harness.inverter.stopService()
    assert failure_reason(on_wire) == "stopping"
    assert failure_reason(queued) == "stopping"
    assert link.transport.disconnecting
    no_result(stopped)  # until the connection is really closed
    link.drop(ConnectionDone())
    assert result_of(stopped) is None
    assert harness.clock.getDelayedCalls() == []
    assert failure_reason(harness.inverter.read_hold(21)) == "not running"


def test_stop_while_waiting_to_reconnect_leaves_no_delayed_calls(harness):
    harness.endpoint.refuse()
    pending = harness.inverter.read_input(0)
    assert len(harness.clock.getDelayedCalls()) == 2  # retry and command timeout
    assert result_of(harness.inverter.stopService()) is None
    assert failure_reason(pending) == "stopping"
    assert harness.clock.getDelayedCalls() == []


def test_stop_while_connecting_cancels_the_attempt(harness):
    stopped = harness.inverter.stopService()
    assert result_of(stopped) is None
    assert harness.endpoint.cancelled == 1
    assert harness.clock.getDelayedCalls() == []


def test_the_service_can_start_again_after_stopping(harness, link):
    result_of(harness.stop())
    harness.inverter.startService()
    assert len(harness.endpoint.attempts) == 2
    new_link = harness.connect()
    done = harness.inverter.read_hold(21)
    assert new_link.sent() == [read_hold_request(21)]
    new_link.receive(hold_reply(21, 1))
    assert result_of(done) == {21: 1}


def test_inverters_share_nothing():
    first, second = make_harness(), make_harness()
    link = first.connect()
    first.inverter.read_hold(21)
    link.receive(hold_reply(21, 1))
    assert second.inverter.registers == {}
    assert not second.inverter.connected
    for made in (first, second):
        result_of(made.stop())
        assert made.clock.getDelayedCalls() == []


def test_failed_requests_are_logged_at_debug_only(harness, link):
    with capturedLogs() as events:
        harness.inverter.write_single(65, 50).addErrback(lambda failure: None)
        link.receive(exception_reply(WRITE, 65))
    assert ours(info_lines(events)) == []  # the caller logs the outcome
    debug = [formatEvent(e) for e in events if e["log_level"] == LogLevel.debug]
    assert "inverter: write_single(65, 50) failed: exception reply: ILLEGAL_VALUE" in debug


def test_callbacks_may_queue_the_next_request(harness, link):
    chained = []

    def next_request(registers):
        chained.append(harness.inverter.read_hold(22))

    harness.inverter.read_hold(21).addCallback(next_request)
    link.sent()
    link.receive(hold_reply(21, 1))
    assert link.sent() == [read_hold_request(22)]
    link.receive(hold_reply(22, 2))
    assert result_of(chained[0]) == {22: 2}


def test_reads_of_many_registers_at_once_succeed(harness, link):
    done = harness.inverter.read_input(0, 127)
    assert link.sent() == [read_input_request(0, 127)]
    link.receive(captured("read_input_all_reply_protocol5_127regs"))
    assert set(result_of(done)) == {1, 2, 3}


def test_endpoint_failures_are_reported_through_deferreds_only(harness):
    # A refused attempt is not an unhandled error: ClientService consumes it.
    with capturedLogs() as events:
        harness.endpoint.refuse()
    assert not [e for e in events if "log_failure" in e]


def test_a_datalogger_down_for_long_does_not_flood_the_log():
    harness = make_harness(retry_policy=lambda attempt: 60.0)
    with capturedLogs() as events:
        for _ in range(25):
            harness.endpoint.refuse()
            harness.clock.advance(60)
        result_of(harness.stop())
    attempts = [
        int(line.rsplit("(attempt ", 1)[1].rstrip(")"))
        for line in ours(info_lines(events))
        if "cannot connect" in line
    ]
    # The first three, then every tenth; the others only at debug.
    assert attempts == [1, 2, 3, 10, 20]
    debug = [formatEvent(e) for e in events if e["log_level"] == LogLevel.debug]
    assert sum("cannot connect" in line for line in debug) == 20


class _HeldPacer:
    """A Pacer whose turns the test gives out."""

    def __init__(self):
        self.turns: list[tuple[float, Deferred]] = []

    def run(self, units, work):
        turn = Deferred()
        self.turns.append((units, turn))
        return turn.addCallback(lambda _: work())


def test_the_reads_on_connecting_wait_their_turn_with_the_fleets_pacer():
    pacer = _HeldPacer()
    harness = make_harness(read_holding_on_connect=True, pacer=pacer)
    link = harness.connect()
    assert link.sent() == []  # nothing before the pacer allows it
    assert [units for units, _ in pacer.turns] == [40]
    pacer.turns[0][1].callback(None)
    assert link.sent() == [read_hold_request(0, 40)]
    link.receive(hold_reply(0, *range(40)))
    assert len(pacer.turns) == 2 and link.sent() == []
    done = harness.inverter.read_hold(21)  # a command needs no turn
    assert link.sent() == [read_hold_request(21)]
    link.receive(hold_reply(21, 5))
    assert result_of(done) == {21: 5}
    result_of(harness.stop())
