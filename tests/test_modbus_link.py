"""The RS485 transport under the Inverter: ModbusProtocol, ModbusPoller, SerialEndpoint.

Deterministic: a StringTransport for the wire and a fake clock, except the
serial port, which is a real pseudo-terminal on the real reactor.
"""

from __future__ import annotations

import os
import tty

import pytest
import pytest_twisted
from e2e_support import poll_until
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from octolux import lxp, modbus
from octolux.device.inverter import CommandFailed, Inverter
from octolux.device.modbus import (
    INPUT_BLOCKS,
    ModbusFactory,
    ModbusLine,
    ModbusPoller,
    ModbusProtocol,
    SerialEndpoint,
    datalog_stand_in,
)
from octolux.device.requests import SEND_MARGIN

DATALOG = datalog_stand_in(1)
SERIAL = "SIMINV0001"
INPUT = lxp.DeviceFunction.READ_INPUT

_case = SynchronousTestCase()
result_of = _case.successResultOf
no_result = _case.assertNoResult


class FakeLine:
    """What a ModbusProtocol reports to, keeping what it is told."""

    def __init__(self, units=(1,)):
        self.units = frozenset(units)
        self.replies: list[tuple[int, lxp.Frame]] = []
        self.events: list[str] = []

    @property
    def frames(self) -> list[lxp.Frame]:
        return [frame for _, frame in self.replies]

    def connection_made(self, protocol) -> None:
        self.events.append("made")

    def reply_received(self, unit: int, frame) -> None:
        self.replies.append((unit, frame))

    def connection_lost(self, protocol, reason: str) -> None:
        self.events.append(f"lost: {reason}")


def connected(*, rtu: bool, silence: float = 0.0, units=(1,)):
    clock = Clock()
    line = FakeLine(units)
    protocol = ModbusProtocol(line, clock, rtu=rtu, silence=silence)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, line, clock


def sent(transport: StringTransport, *, rtu: bool) -> list[modbus.Message]:
    data = transport.value()
    transport.clear()
    decoder = modbus.RtuDecoder(requests=True) if rtu else modbus.TcpDecoder(requests=True)
    return decoder.feed(data)


def test_an_lxp_read_goes_out_as_modbus_and_its_reply_comes_back_as_lxp():
    protocol, transport, line, _ = connected(rtu=False)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 40, 2))
    assert sent(transport, rtu=False) == [
        modbus.Message(1, modbus.ReadRequest(4, 40, 2), transaction=1)]
    protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(1, modbus.ReadResponse(4, (0x1234, 7)), transaction=1)))
    assert line.frames == [lxp.ReadReply(INPUT, DATALOG, SERIAL, 40, (0x1234, 7))]


def test_writes_and_exceptions_come_back_as_the_dongle_would_relay_them():
    protocol, transport, line, _ = connected(rtu=True)
    protocol.send(1, lxp.WriteSingleRequest(DATALOG, SERIAL, 64, 30))
    assert sent(transport, rtu=True) == [modbus.Message(1, modbus.WriteSingle(64, 30))]
    protocol.dataReceived(modbus.encode_rtu(modbus.Message(1, modbus.WriteSingle(64, 30))))
    protocol.send(1, lxp.WriteMultiRequest(DATALOG, SERIAL, 12, (1, 2, 3)))
    assert sent(transport, rtu=True) == [
        modbus.Message(1, modbus.WriteMultipleRequest(12, (1, 2, 3)))]
    protocol.dataReceived(modbus.encode_rtu(
        modbus.Message(1, modbus.WriteMultipleResponse(12, 3))))
    protocol.send(1, lxp.WriteSingleRequest(DATALOG, SERIAL, 64, 300))
    protocol.dataReceived(modbus.encode_rtu(modbus.Message(1, modbus.ExceptionResponse(6, 3))))
    assert line.frames == [
        lxp.WriteSingleReply(DATALOG, SERIAL, 64, 30),
        lxp.WriteMultiReply(DATALOG, SERIAL, 12, 3),
        lxp.ExceptionReply(lxp.DeviceFunction.WRITE_SINGLE, DATALOG, SERIAL, 64, 3),
    ]


def test_a_reply_for_another_unit_costs_only_itself_and_is_logged_once():
    protocol, transport, line, _ = connected(rtu=True)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    other = modbus.encode_rtu(modbus.Message(2, modbus.ReadResponse(4, (9,))))
    ours = modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,))))
    with capturedLogs() as events:
        protocol.dataReceived(other + other + ours)
    assert line.frames == [lxp.ReadReply(INPUT, DATALOG, SERIAL, 0, (5,))]
    assert [formatEvent(e) for e in events if "unit 2" in formatEvent(e)] == [
        "modbus: ignoring replies from unit 2 (none of ours)"]


def test_a_garbled_rtu_reply_costs_only_itself():
    protocol, transport, line, _ = connected(rtu=True)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    good = modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,))))
    garbled = bytearray(good)
    garbled[4] ^= 0xFF
    protocol.dataReceived(bytes(garbled) + b"\x00\xff" + good)
    assert line.frames == [lxp.ReadReply(INPUT, DATALOG, SERIAL, 0, (5,))]


def test_a_reply_that_does_not_fit_the_request_answers_nothing():
    protocol, transport, line, _ = connected(rtu=False)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 2))
    # Another transaction (a late reply), then another count: neither is the answer.
    protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(1, modbus.ReadResponse(4, (1, 2)), transaction=9)))
    protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(1, modbus.ReadResponse(4, (1,)), transaction=1)))
    assert line.frames == []
    protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(1, modbus.ReadResponse(4, (1, 2)), transaction=1)))
    assert len(line.frames) == 1


def test_rtu_keeps_the_bus_quiet_for_the_silence_before_a_request():
    silence = modbus.silence_seconds(19200)
    protocol, transport, line, clock = connected(rtu=True, silence=silence)
    clock.advance(1)
    protocol.dataReceived(b"\x01")  # the tail of someone's frame, just now
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    assert transport.value() == b""
    clock.advance(silence)
    assert sent(transport, rtu=True) == [modbus.Message(1, modbus.ReadRequest(4, 0, 1))]
    clock.advance(1)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 40, 1))
    assert sent(transport, rtu=True) == [modbus.Message(1, modbus.ReadRequest(4, 40, 1))]


def test_an_adapters_echo_is_learned_from_a_read_and_never_confirms_a_write():
    protocol, transport, line, _ = connected(rtu=True)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    request = transport.value()
    transport.clear()
    reply = modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,))))
    for byte in range(len(request)):  # the echo, a byte at a time, then the reply
        protocol.dataReceived(request[byte:byte + 1])
    protocol.dataReceived(reply)
    assert protocol.adapter_echoes
    assert line.frames == [lxp.ReadReply(INPUT, DATALOG, SERIAL, 0, (5,))]
    protocol.send(1, lxp.WriteSingleRequest(DATALOG, SERIAL, 64, 30))
    write = transport.value()
    protocol.dataReceived(write)  # its echo: the same bytes as the confirmation
    assert len(line.frames) == 1
    protocol.dataReceived(write)  # the inverter's confirmation
    assert line.frames[1] == lxp.WriteSingleReply(DATALOG, SERIAL, 64, 30)


def test_without_an_echo_a_writes_reply_confirms_it():
    protocol, transport, line, _ = connected(rtu=True)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    transport.clear()
    reply = modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,))))
    protocol.dataReceived(reply[:2])  # the same first bytes as the request: held...
    protocol.dataReceived(reply[2:])  # ...and passed on once they are not its echo
    assert not protocol.adapter_echoes
    protocol.send(1, lxp.WriteSingleRequest(DATALOG, SERIAL, 64, 30))
    protocol.dataReceived(transport.value())
    assert line.frames[1] == lxp.WriteSingleReply(DATALOG, SERIAL, 64, 30)


def test_what_modbus_cannot_carry_is_not_sent():
    protocol, transport, line, _ = connected(rtu=False)
    protocol.send(1, lxp.Heartbeat(DATALOG))
    protocol.send(1, lxp.ReadParamRequest(DATALOG, 0))
    assert transport.value() == b""


def test_units_on_one_line_take_turns():
    protocol, transport, line, _ = connected(rtu=True, units=(1, 2))
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    protocol.send(2, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 40, 1))
    assert sent(transport, rtu=True) == [modbus.Message(1, modbus.ReadRequest(4, 0, 1))]
    protocol.dataReceived(modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,)))))
    assert sent(transport, rtu=True) == [modbus.Message(2, modbus.ReadRequest(4, 40, 1))]
    protocol.dataReceived(modbus.encode_rtu(modbus.Message(2, modbus.ReadResponse(4, (6,)))))
    assert line.replies == [(1, lxp.ReadReply(INPUT, DATALOG, SERIAL, 0, (5,))),
                            (2, lxp.ReadReply(INPUT, DATALOG, SERIAL, 40, (6,)))]


def test_a_unit_that_does_not_answer_holds_the_line_for_one_turn_only():
    protocol, transport, line, clock = connected(rtu=True, units=(1, 2))
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    protocol.send(2, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 40, 1))
    sent(transport, rtu=True)
    clock.advance(SEND_MARGIN)
    assert sent(transport, rtu=True) == [modbus.Message(2, modbus.ReadRequest(4, 40, 1))]
    # Unit 1's late reply answers nothing: the line waits for unit 2's.
    protocol.dataReceived(modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,)))))
    assert line.replies == []
    assert clock.getDelayedCalls() != []


def test_a_slow_reply_still_answers_when_nobody_else_waits():
    protocol, transport, line, clock = connected(rtu=True, units=(1, 2))
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    clock.advance(SEND_MARGIN + 1)
    protocol.dataReceived(modbus.encode_rtu(modbus.Message(1, modbus.ReadResponse(4, (5,)))))
    assert line.frames == [lxp.ReadReply(INPUT, DATALOG, SERIAL, 0, (5,))]
    # A turn that ran out goes to the next request as soon as there is one.
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 40, 1))
    clock.advance(SEND_MARGIN)
    transport.clear()
    protocol.send(2, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 80, 1))
    assert sent(transport, rtu=True) == [modbus.Message(2, modbus.ReadRequest(4, 80, 1))]


def test_a_units_newer_request_replaces_its_older_one():
    protocol, transport, line, _ = connected(rtu=False)
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 0, 1))
    protocol.send(1, lxp.ReadRequest(INPUT, DATALOG, SERIAL, 40, 1))
    assert [m.pdu.address for m in sent(transport, rtu=False)] == [0, 40]
    protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(1, modbus.ReadResponse(4, (5,)), transaction=1)))  # the old one's
    assert line.replies == []


# -- the poller, with the Inverter above the protocol -------------------------------------


@implementer(IStreamClientEndpoint)
class StringEndpoint:
    """Connects at once, over a StringTransport."""

    def __init__(self):
        self.transports: list[StringTransport] = []

    def connect(self, factory):
        built = factory.buildProtocol(None)
        transport = StringTransport()
        self.transports.append(transport)
        built.makeConnection(transport)
        return succeed(built)


def on_a_line(*serials, clock=None):
    """Started inverters, units 1, 2, ... on one started ModbusLine over a StringTransport."""
    clock = clock or Clock()
    endpoint = StringEndpoint()
    line = ModbusLine(endpoint, clock=clock, rtu=False, address="tcp://gateway:502")
    inverters = []
    for unit, serial in enumerate(serials, 1):
        inverter = Inverter(None, datalog_stand_in(unit), serial, clock=clock,
                            command_timeout=10)
        line.attach(inverter, unit)
        inverter.startService()
        inverters.append(inverter)
    return clock, line, endpoint, inverters


@pytest.fixture
def polled():
    clock, line, endpoint, (inverter,) = on_a_line(SERIAL)
    poller = ModbusPoller(inverter, clock=clock, poll_interval=10)
    poller.startService()
    line.startService()
    protocol = line._links[1].protocol
    yield clock, inverter, protocol, endpoint.transports[-1]
    poller.stopService()
    line.stopService()
    inverter.stopService()
    protocol.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def answer_reads(protocol, transport, *, refuse=()):
    """Answer every read on the wire (each answer lets the next out); the registers read."""
    read = []
    while True:
        requests = sent(transport, rtu=False)
        if not requests:
            return read
        (message,) = requests
        pdu = message.pdu
        read.append(pdu.address)
        if pdu.address in refuse:
            response = modbus.ExceptionResponse(4, 2)
        else:
            response = modbus.ReadResponse(pdu.function, (0,) * pdu.count)
        protocol.dataReceived(modbus.encode_tcp(
            modbus.Message(1, response, message.transaction)))


def test_the_poller_reads_every_input_block_each_interval(polled):
    clock, inverter, protocol, transport = polled
    clock.advance(0)
    assert answer_reads(protocol, transport) == list(INPUT_BLOCKS)
    clock.advance(9.9)
    assert transport.value() == b""
    clock.advance(0.1)
    assert answer_reads(protocol, transport) == list(INPUT_BLOCKS)


def test_rounds_never_overlap_on_a_slow_bus(polled):
    clock, inverter, protocol, transport = polled
    clock.advance(0)
    on_the_wire = []
    for _ in range(5):
        # One read on the wire at a time: the next only once this one has
        # failed (no reply within the command timeout).
        (message,) = sent(transport, rtu=False)
        on_the_wire.append(message.pdu.address)
        clock.advance(10)
    # A round that took 40 s is followed at once by the next, never by two.
    assert on_the_wire == [0, 40, 80, 120, 0]


def test_a_block_the_inverter_refuses_is_not_asked_again(polled):
    clock, inverter, protocol, transport = polled
    clock.advance(0)
    assert answer_reads(protocol, transport, refuse={120}) == [0, 40, 80, 120]
    clock.advance(10)
    assert answer_reads(protocol, transport) == [0, 40, 80]


def test_the_poller_stops_with_the_connection(polled):
    clock, inverter, protocol, transport = polled
    clock.advance(0)
    answer_reads(protocol, transport)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert not inverter.connected
    clock.advance(10)
    assert transport.value() == b""


def test_the_line_asks_an_unknown_serial_at_once_and_the_inverter_learns_it():
    clock, line, endpoint, (known, unknown) = on_a_line(SERIAL, None)
    line.startService()
    transport = endpoint.transports[-1]
    (question,) = sent(transport, rtu=False)
    assert question == modbus.Message(2, modbus.ReadRequest(4, 80, 40), transaction=1)
    assert known.connected and unknown.connected
    values = [0] * 40
    for offset, pair in enumerate(("AB", "CD", "EF", "GH", "IJ")):  # registers 115-119
        values[35 + offset] = ord(pair[0]) | ord(pair[1]) << 8
    line._links[2].protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(2, modbus.ReadResponse(4, values), transaction=1)))
    assert unknown.serial == "ABCDEFGHIJ"
    line.stopService()
    for inverter in (known, unknown):
        inverter.stopService()


def test_an_inverter_that_does_not_answer_is_logged_once_then_when_it_answers(polled):
    clock, inverter, protocol, transport = polled
    with capturedLogs() as events:
        clock.advance(0)
        for _ in range(8):  # two rounds of four unanswered reads
            sent(transport, rtu=False)
            clock.advance(10)
        answer_reads(protocol, transport)
    lines = [formatEvent(e) for e in events if e["log_level"] == LogLevel.info]
    assert lines == ["inverter: input registers 0-39: no reply within 10 s",
                     "inverter: the inverter answers the polls again"]


def test_a_write_through_the_inverter_is_a_modbus_write(polled):
    clock, inverter, protocol, transport = polled
    done = inverter.write_single(64, 30)
    (message,) = sent(transport, rtu=False)
    assert message.pdu == modbus.WriteSingle(64, 30)
    no_result(done)
    protocol.dataReceived(modbus.encode_tcp(modbus.Message(1, message.pdu, message.transaction)))
    assert result_of(done) == 30
    assert inverter.registers[64] == 30


def test_a_refused_write_fails_with_the_exception(polled):
    clock, inverter, protocol, transport = polled
    done = inverter.write_single(64, 300)
    (message,) = sent(transport, rtu=False)
    protocol.dataReceived(modbus.encode_tcp(
        modbus.Message(1, modbus.ExceptionResponse(6, 3), message.transaction)))
    assert _case.failureResultOf(done, CommandFailed).value.reason == (
        "exception reply: ILLEGAL_VALUE")


# -- a serial port that disappears ----------------------------------------------------------


class Recorder:
    """An InverterObserver that keeps the connection changes."""

    def __init__(self):
        self.changes: list[bool] = []

    def connection_changed(self, connected: bool) -> None:
        self.changes.append(connected)

    def inputs_received(self, blocks) -> None:
        pass

    def registers_received(self, registers) -> None:
        pass


def open_pty(link: str) -> tuple[int, int]:
    primary, secondary = os.openpty()
    tty.setraw(primary)
    os.symlink(os.ttyname(secondary), link)
    return primary, secondary


def test_opening_a_missing_serial_port_fails_the_attempt(tmp_path):
    endpoint = SerialEndpoint(reactor, str(tmp_path / "ttyUSB9"), 19200)
    factory = ModbusFactory(FakeLine(), Clock(), rtu=True)
    failure = _case.failureResultOf(endpoint.connect(factory), ConnectError)
    assert "ttyUSB9" in failure.getErrorMessage()


@pytest_twisted.ensureDeferred
async def test_a_serial_port_that_disappears_is_reopened(tmp_path):
    link = str(tmp_path / "ttyUSB0")
    ends = open_pty(link)
    recorder = Recorder()
    inverter = Inverter(None, DATALOG, SERIAL, clock=reactor, name="serial")
    line = ModbusLine(SerialEndpoint(reactor, link, 19200), clock=reactor, rtu=True,
                      address=f"serial://{link}", retry_policy=lambda attempt: 0.05)
    line.attach(inverter, 1)
    inverter.add_observer(recorder)
    inverter.startService()
    line.startService()
    try:
        await poll_until(reactor, lambda: recorder.changes == [True], 5, "the port opened")
        # Unplugged: the port goes, and stays gone for a few attempts.
        for fd in ends:
            os.close(fd)
        os.unlink(link)
        await poll_until(reactor, lambda: recorder.changes == [True, False], 5, "the loss")
        with capturedLogs() as events:
            await poll_until(reactor, lambda: sum("cannot connect" in formatEvent(e)
                                                  for e in events) >= 2, 5, "two attempts")
        ends = open_pty(link)
        await poll_until(reactor, lambda: recorder.changes == [True, False, True], 5,
                         "the port reopened")
    finally:
        await line.stopService()
        await inverter.stopService()
        for fd in ends:
            os.close(fd)
