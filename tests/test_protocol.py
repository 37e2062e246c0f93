"""LxpProtocol: bytes in, frames out to a handler; bad frames cost only themselves."""

from __future__ import annotations

import collections
import math
import random
import socket

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from octolux import lxp
from octolux.net.badframes import BAD_FRAME_LINES, BAD_FRAME_SUMMARY_INTERVAL
from octolux.net.endpoints import describe_peer
from octolux.net.protocol import LxpFactory, LxpProtocol

DATALOG = "2222222222"
SERIAL = "5555555555"
PEER = IPv4Address("TCP", "192.0.2.5", 8000)

HEARTBEAT = lxp.Heartbeat(DATALOG)
READ_REPLY = lxp.ReadReply(lxp.DeviceFunction.READ_HOLD, DATALOG, SERIAL, 21, (0x80,))
WRITE_ACK = lxp.WriteSingleReply(DATALOG, SERIAL, 65, 50)


class RecordingHandler:
    """A FrameHandler that records what it is told."""

    def __init__(self):
        self.frames: list = []
        self.made: list[LxpProtocol] = []
        self.lost: list[str] = []

    def connection_made(self, protocol):
        self.made.append(protocol)

    def frame_received(self, frame):
        self.frames.append(frame)

    def connection_lost(self, protocol, reason):
        self.lost.append(reason)


class KeepAliveTransport(StringTransport):
    """A StringTransport that, like a TCP transport, can switch keepalive on."""

    keepalive = False

    def setTcpKeepAlive(self, enabled):
        self.keepalive = enabled


def connect(handler=None, *, timeout=None, transport=None, clock=None):
    handler = handler or RecordingHandler()
    clock = clock or Clock()
    transport = transport or StringTransport(peerAddress=PEER)
    protocol = LxpProtocol(handler, clock, no_data_timeout=timeout, name="test")
    protocol.makeConnection(transport)
    return protocol, handler, transport, clock


def test_frames_split_across_reads_are_delivered_whole():
    protocol, handler, transport, _ = connect()
    stream = lxp.build(HEARTBEAT) + lxp.build(READ_REPLY) + lxp.build(WRITE_ACK)
    for index in range(len(stream)):
        protocol.dataReceived(stream[index : index + 1])
    assert handler.frames == [HEARTBEAT, READ_REPLY, WRITE_ACK]


def test_several_frames_in_one_read_are_all_delivered_in_order():
    protocol, handler, transport, _ = connect()
    protocol.dataReceived(lxp.build(WRITE_ACK) + lxp.build(HEARTBEAT) + lxp.build(READ_REPLY))
    assert handler.frames == [WRITE_ACK, HEARTBEAT, READ_REPLY]


def test_everything_the_dongle_sends_is_a_reply_whatever_its_address_byte():
    # BJ and DG dongles and EG4 inverters reply with address 0, as requests
    # carry; a protocol 1 reply of one value has the very shape of a request.
    replies = [
        lxp.ReadReply(lxp.DeviceFunction.READ_INPUT, DATALOG, SERIAL, 0, tuple(range(40)),
                      protocol=5, address=0),
        lxp.ReadReply(lxp.DeviceFunction.READ_HOLD, DATALOG, SERIAL, 21, (3,), protocol=1,
                      address=0),
        lxp.ExceptionReply(lxp.DeviceFunction.WRITE_SINGLE, DATALOG, SERIAL, 21, 3, address=0),
        lxp.WriteSingleReply(DATALOG, SERIAL, 65, 50, address=0),
    ]
    protocol, handler, transport, _ = connect()
    protocol.dataReceived(b"".join(map(lxp.build, replies)))
    assert handler.frames == replies
    request = lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, DATALOG, SERIAL, 21, 3)
    protocol.dataReceived(lxp.build(request))
    assert handler.frames[-1] == replies[1]  # the same bytes: from the dongle, a reply


def test_bad_crc_costs_only_that_frame_and_is_logged_once():
    protocol, handler, transport, _ = connect()
    corrupt = bytearray(lxp.build(READ_REPLY))
    corrupt[-1] ^= 0xFF
    with capturedLogs() as events:
        protocol.dataReceived(lxp.build(HEARTBEAT) + bytes(corrupt) + lxp.build(WRITE_ACK))
    assert handler.frames == [HEARTBEAT, WRITE_ACK]
    assert not transport.disconnecting
    info = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.info]
    assert info == [f"test: skipped {len(corrupt)} bytes from 192.0.2.5:8000: bad CRC"]


def test_garbage_between_frames_is_skipped_and_hex_only_at_debug():
    protocol, handler, transport, _ = connect()
    with capturedLogs() as events:
        protocol.dataReceived(lxp.build(HEARTBEAT) + b"\x00\xffjunk" + lxp.build(WRITE_ACK))
    assert handler.frames == [HEARTBEAT, WRITE_ACK]
    assert not transport.disconnecting
    by_level = {}
    for event in events:
        by_level.setdefault(event["log_level"], []).append(formatEvent(event))
    assert by_level[LogLevel.info] == ["test: skipped 6 bytes from 192.0.2.5:8000: garbage"]
    assert "test: skipped bytes: 00ff6a756e6b" in by_level[LogLevel.debug]


def _dense_garbage(size: int) -> bytes:
    """``size`` random bytes with an A1 1A every 9 bytes: each one a frame start to check."""
    data = bytearray(random.Random(8).randbytes(size))
    data[0::9] = b"\xa1" * len(data[0::9])
    data[1::9] = b"\x1a" * len(data[1::9])
    return bytes(data)


def test_a_garbage_flood_logs_a_bounded_number_of_lines():
    # 10 MB of dense garbage once wrote 1.3 million lines in 20 s. Here it
    # comes over 200 s of fake time, 64 KB a read, then the connection closes.
    protocol, handler, transport, clock = connect()
    garbage = _dense_garbage(10 * 1024 * 1024)
    chunk = 65536
    reads = range(0, len(garbage), chunk)
    seconds_per_read = 200 / len(reads)
    with capturedLogs() as events:
        for start in reads:
            protocol.dataReceived(garbage[start : start + chunk])
            clock.advance(seconds_per_read)
        protocol.connectionLost(Failure(ConnectionDone()))
    info = [event for event in events if event["log_level"] == LogLevel.info]
    # The first few lines, one saying that summaries follow, one summary per
    # interval (60, 120 and 180 s after the first), and a last one at close.
    intervals = math.ceil(200 / BAD_FRAME_SUMMARY_INTERVAL)
    assert len(info) <= BAD_FRAME_LINES + 1 + intervals + 1
    assert len(info) == BAD_FRAME_LINES + 1 + 3 + 1
    debug = [event for event in events if event["log_level"] == LogLevel.debug]
    assert len(debug) == BAD_FRAME_LINES
    assert all(len(formatEvent(event)) < 200 for event in debug)
    # Every bad frame is in a line or a summary, under its reason, and every byte.
    lines, summaries = info[:BAD_FRAME_LINES], [e for e in info if "counts" in e]
    assert len(summaries) == 4
    counted = collections.Counter(event["reason"] for event in lines)
    for summary in summaries:
        counted.update(summary["counts"])
        assert summary["frames"] == sum(summary["counts"].values())
    assert counted == protocol.decoder.rejected
    logged_bytes = sum(e["length"] for e in lines) + sum(e["length"] for e in summaries)
    # (Random bytes can form a frame of unknown function: it is delivered.)
    delivered = sum(len(lxp.build(frame)) for frame in handler.frames)
    assert logged_bytes + delivered + protocol.decoder.buffered == len(garbage)
    assert "impossible length" in formatEvent(summaries[0])
    assert clock.getDelayedCalls() == []


def test_bad_frames_are_summed_up_per_interval_while_they_last():
    protocol, handler, transport, clock = connect()
    corrupt = bytearray(lxp.build(READ_REPLY))
    corrupt[-1] ^= 0xFF
    with capturedLogs() as events:
        for _ in range(BAD_FRAME_LINES + 3):
            protocol.dataReceived(bytes(corrupt))
        clock.advance(BAD_FRAME_SUMMARY_INTERVAL)
        protocol.dataReceived(b"junk" + lxp.build(HEARTBEAT))
        clock.advance(BAD_FRAME_SUMMARY_INTERVAL)
        clock.advance(BAD_FRAME_SUMMARY_INTERVAL)  # a quiet interval: no line
        protocol.connectionLost(Failure(ConnectionDone()))
    lines = [formatEvent(e) for e in events if e["log_level"] == LogLevel.info]
    peer = "192.0.2.5:8000"
    first = f"test: skipped {len(corrupt)} bytes from {peer}: bad CRC"
    assert lines == [first] * BAD_FRAME_LINES + [
        f"test: more bad frames from {peer}; from now on one summary every 60 s",
        f"test: skipped 3 more bad frames ({3 * len(corrupt)} bytes) from {peer} in 60 s: "
        "bad CRC 3",
        f"test: skipped 1 more bad frames (4 bytes) from {peer} in 60 s: garbage 1",
    ]
    assert handler.frames == [HEARTBEAT]


def test_unreported_bad_frames_are_summed_up_when_the_connection_closes():
    protocol, handler, transport, clock = connect()
    with capturedLogs() as events:
        for _ in range(BAD_FRAME_LINES + 2):
            protocol.dataReceived(b"\x00junk")
        clock.advance(12.5)
        protocol.connectionLost(Failure(ConnectionDone()))
    lines = [formatEvent(e) for e in events if e["log_level"] == LogLevel.info]
    assert lines[-1] == (
        "test: skipped 2 more bad frames (10 bytes) from 192.0.2.5:8000 in 12.5 s: garbage 2"
    )
    assert clock.getDelayedCalls() == []


def test_unknown_but_well_formed_traffic_is_delivered_not_dropped():
    protocol, handler, transport, _ = connect()
    cloud_write = lxp.WriteParamRequest(DATALOG, 7, b"\x01\x02")
    odd = lxp.UnknownFrame(0xC7, DATALOG, b"\x01\x02\x03")
    protocol.dataReceived(lxp.build(cloud_write) + lxp.build(odd))
    assert handler.frames == [cloud_write, odd]
    assert not transport.disconnecting


def test_a_handler_error_is_logged_and_the_next_frames_still_arrive():
    class Fussy(RecordingHandler):
        def frame_received(self, frame):
            super().frame_received(frame)
            if frame == HEARTBEAT:
                raise RuntimeError("handler bug")

    protocol, handler, transport, _ = connect(Fussy())
    with capturedLogs() as events:
        protocol.dataReceived(lxp.build(HEARTBEAT) + lxp.build(WRITE_ACK))
    assert handler.frames == [HEARTBEAT, WRITE_ACK]
    assert not transport.disconnecting
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)


def test_send_writes_the_built_frame():
    protocol, handler, transport, _ = connect()
    request = lxp.ReadRequest(lxp.DeviceFunction.READ_INPUT, DATALOG, SERIAL, 0, 40)
    protocol.send(request)
    assert transport.value() == lxp.build(request)


def test_connection_made_reports_the_peer_and_sets_keepalive():
    transport = KeepAliveTransport(peerAddress=PEER)
    protocol, handler, _, _ = connect(transport=transport)
    assert handler.made == [protocol]
    assert protocol.peer == "192.0.2.5:8000"
    assert transport.keepalive is True


class TcpTransport(KeepAliveTransport):
    """Also Nagle's switch, and a real (unconnected) TCP socket as its handle."""

    nodelay = False

    def __init__(self, handle, **kwargs):
        super().__init__(**kwargs)
        self.handle = handle

    def setTcpNoDelay(self, enabled):
        self.nodelay = enabled

    def getHandle(self):
        return self.handle


class QuickAckCounter(socket.socket):
    """A TCP socket that counts the immediate ACKs asked of it (TCP_QUICKACK)."""

    def __init__(self, family=socket.AF_INET):
        super().__init__(family, socket.SOCK_STREAM)
        self.quickacks = 0

    def setsockopt(self, level, option, value):
        super().setsockopt(level, option, value)  # the kernel takes it (or raises)
        if (level, option, value) == (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1):
            self.quickacks += 1


def test_nagle_is_off_and_every_read_is_acknowledged_at_once():
    # A dongle with Nagle on holds its next frame (a command's echo) until our
    # ACK of the last one: delayed, that is up to 40 ms (bench/roundtrip.py).
    with QuickAckCounter() as handle:
        transport = TcpTransport(handle, peerAddress=PEER)
        protocol, handler, _, _ = connect(transport=transport)
        assert transport.nodelay is True
        data = lxp.build(READ_REPLY)
        protocol.dataReceived(data[:5])
        protocol.dataReceived(data[5:] + lxp.build(WRITE_ACK))
        assert handle.quickacks == 2
        assert handler.frames == [READ_REPLY, WRITE_ACK]


def test_a_handle_that_takes_no_quickack_is_left_alone():
    with QuickAckCounter(socket.AF_UNIX) as handle:  # SOCK_STREAM, but not TCP
        protocol, handler, _, _ = connect(transport=TcpTransport(handle, peerAddress=PEER))
        protocol.dataReceived(lxp.build(READ_REPLY))
        protocol.dataReceived(lxp.build(WRITE_ACK))
        assert handle.quickacks == 0
        assert handler.frames == [READ_REPLY, WRITE_ACK]


def test_transports_without_keepalive_are_fine():
    protocol, handler, transport, _ = connect()
    assert handler.made == [protocol]


def test_connection_lost_gives_a_readable_reason():
    protocol, handler, transport, _ = connect()
    protocol.connectionLost(Failure(ConnectionDone()))
    protocol2, handler2, _, _ = connect()
    protocol2.connectionLost(Failure(ConnectionLost()))
    assert handler.lost == ["Connection was closed cleanly"]
    assert handler2.lost == ["Connection to the other side was lost in a non-clean fashion"]


def test_silence_for_the_no_data_timeout_aborts_the_connection():
    protocol, handler, transport, clock = connect(timeout=900)
    clock.advance(899)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnected  # aborted, not merely closed: the peer may be gone
    protocol.connectionLost(Failure(ConnectionDone()))
    assert handler.lost == ["no data for 900 s"]
    assert clock.getDelayedCalls() == []


def test_any_bytes_push_the_no_data_timeout_back():
    protocol, handler, transport, clock = connect(timeout=900)
    clock.advance(600)
    protocol.dataReceived(b"\x00")  # even garbage shows the peer is alive
    clock.advance(600)
    assert not transport.disconnecting
    protocol.dataReceived(lxp.build(HEARTBEAT))
    clock.advance(899.5)
    assert not transport.disconnecting
    clock.advance(0.5)
    assert transport.disconnected


def test_connection_lost_cancels_the_no_data_timer():
    protocol, handler, transport, clock = connect(timeout=900)
    assert len(clock.getDelayedCalls()) == 1
    protocol.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []
    assert handler.lost == ["Connection was closed cleanly"]


@pytest.mark.parametrize("timeout", [None, 0])
def test_no_timeout_means_no_timer(timeout):
    protocol, handler, transport, clock = connect(timeout=timeout)
    assert clock.getDelayedCalls() == []
    clock.advance(100_000)
    assert not transport.disconnecting


def test_factory_builds_protocols_for_its_handler():
    handler = RecordingHandler()
    clock = Clock()
    factory = LxpFactory(handler, clock, no_data_timeout=60, name="inv")
    protocol = factory.buildProtocol(PEER)
    protocol.makeConnection(StringTransport(peerAddress=PEER))
    assert protocol.handler is handler
    assert protocol.name == "inv"
    assert protocol.factory is factory
    assert len(clock.getDelayedCalls()) == 1


def test_describe_peer():
    assert describe_peer(PEER) == "192.0.2.5:8000"
    assert describe_peer(IPv4Address("TCP", "::1", 8000)) == "[::1]:8000"
    assert describe_peer("somewhere") == "somewhere"


@pytest.fixture
def debug_level():
    """Switch the process-wide log level to debug for one test."""
    from octolux.net import logging as octolux_logging

    before = octolux_logging.levels.level
    octolux_logging.set_level("debug")
    yield
    octolux_logging.levels.level = before


def test_frames_in_and_out_are_hex_dumped_at_debug(debug_level):
    protocol, _, transport, _ = connect()
    with capturedLogs() as events:
        protocol.dataReceived(lxp.build(WRITE_ACK))
        protocol.send(HEARTBEAT)
    lines = [formatEvent(event) for event in events if event["log_level"] == LogLevel.debug]
    assert f"test: received {lxp.build(WRITE_ACK).hex()}" in lines
    assert f"test: sending {lxp.build(HEARTBEAT).hex()}" in lines


def test_no_hex_dumps_are_built_at_info():
    protocol, _, _, _ = connect()
    with capturedLogs() as events:
        protocol.dataReceived(lxp.build(WRITE_ACK))
        protocol.send(HEARTBEAT)
    assert not [event for event in events if event["log_level"] == LogLevel.debug]
