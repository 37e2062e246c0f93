"""Server mode without a reactor: matching connections to inverters, handover, the leash.

Each connection is the listener's factory's protocol on a StringTransport;
time is a ``task.Clock``.
"""

from __future__ import annotations

import errno

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher

from octolux import lxp
from octolux.device.inverter import CommandFailed, Inverter
from octolux.device.listener import (
    FLOOD_BYTES,
    UNIDENTIFIED_BYTES,
    DongleListener,
    Route,
)
from octolux.device.serials import SERIAL_QUESTION_DELAY
from octolux.lxp.splitter import FrameSplitter

DATALOG_A, SERIAL_A = "BA00000001", "IN00000001"
DATALOG_B, SERIAL_B = "BA00000002", "IN00000002"
READ_HOLD = lxp.DeviceFunction.READ_HOLD
READ_INPUT = lxp.DeviceFunction.READ_INPUT

_ports = iter(range(40000, 60000))


@pytest.fixture
def caplog_events():
    """Every log event emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


class Rig:
    def __init__(self, *serials, max_connections=64, identify_timeout=30.0, accept_unknown=None,
                 no_data_timeouts=()):
        self.clock = task.Clock()
        timeouts = list(no_data_timeouts) + [900.0] * (len(serials) - len(no_data_timeouts))
        self.inverters = [
            Inverter(None, datalog, serial, clock=self.clock, name=f"inv{index}",
                     command_timeout=10, no_data_timeout=timeout)
            for index, ((datalog, serial), timeout) in enumerate(
                zip(serials, timeouts, strict=True))
        ]
        for inverter in self.inverters:
            inverter.startService()
        self.listener = DongleListener(
            None, "127.0.0.1:4346", [Route(inverter) for inverter in self.inverters],
            clock=self.clock, max_connections=max_connections,
            identify_timeout=identify_timeout, accept_unknown=accept_unknown,
        )

    def connect(self):
        """A new dongle connection: (protocol, transport)."""
        address = IPv4Address("TCP", "127.0.0.1", next(_ports))
        protocol = self.listener._factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport


def sent(transport: StringTransport) -> list:
    frames = lxp.FrameDecoder(lxp.Direction.TO_DONGLE).feed(transport.value())
    transport.clear()
    return frames


def heartbeat(datalog: str) -> bytes:
    return lxp.build(lxp.Heartbeat(datalog))


def inputs(datalog: str, serial: str) -> bytes:
    return lxp.build(lxp.ReadReply(READ_INPUT, datalog, serial, 0, tuple(range(40))))


def test_a_connection_goes_to_the_inverter_its_datalog_names_and_is_answered():
    rig = Rig((DATALOG_A, SERIAL_A), (DATALOG_B, SERIAL_B))
    a, b = rig.inverters
    protocol, transport = rig.connect()
    assert not a.connected and not b.connected
    protocol.dataReceived(heartbeat(DATALOG_B))
    assert b.connected and not a.connected
    # The bridge answers the heartbeat, as the vendor's server would.
    assert sent(transport) == [lxp.Heartbeat(DATALOG_B)]
    protocol.dataReceived(inputs(DATALOG_B, SERIAL_B))
    assert b.latest_inputs and not a.latest_inputs


def test_several_dongles_on_one_listener_each_have_their_own_queue():
    rig = Rig((DATALOG_A, SERIAL_A), (DATALOG_B, SERIAL_B))
    a, b = rig.inverters
    (pa, ta), (pb, tb) = rig.connect(), rig.connect()
    pa.dataReceived(heartbeat(DATALOG_A))
    pb.dataReceived(heartbeat(DATALOG_B))
    sent(ta), sent(tb)
    got_a, got_b = a.read_hold(21), b.read_hold(21)
    (request_a,), (request_b,) = sent(ta), sent(tb)
    assert (request_a.datalog, request_a.inverter) == (DATALOG_A, SERIAL_A)
    assert (request_b.datalog, request_b.inverter) == (DATALOG_B, SERIAL_B)
    pb.dataReceived(lxp.build(lxp.ReadReply(READ_HOLD, DATALOG_B, SERIAL_B, 21, (7,))))
    pa.dataReceived(lxp.build(lxp.ReadReply(READ_HOLD, DATALOG_A, SERIAL_A, 21, (5,))))
    assert got_a.result == {21: 5} and got_b.result == {21: 7}


def test_an_unknown_datalog_is_refused_and_logged_once(caplog_events):
    rig = Rig((DATALOG_A, SERIAL_A))
    for _ in range(3):
        protocol, transport = rig.connect()
        protocol.dataReceived(heartbeat("XX99999999"))
        assert transport.disconnecting and sent(transport) == []
        protocol.connectionLost()
    refusals = [e for e in caplog_events if "refusing a datalogger" in e.get("log_format", "")]
    assert len(refusals) == 1
    assert not rig.inverters[0].connected and rig.listener.connections == set()


def test_accept_unknown_makes_an_inverter_named_by_the_serial():
    made = []

    def accept(datalog):
        inverter = Inverter(None, datalog, None, clock=rig.clock, name=datalog)
        inverter.startService()
        made.append(inverter)
        return Route(inverter)

    rig = Rig((DATALOG_A, SERIAL_A), accept_unknown=accept)
    protocol, transport = rig.connect()
    protocol.dataReceived(heartbeat("XX99999999"))
    assert [i.name for i in made] == ["XX99999999"] and made[0].connected
    assert not transport.disconnecting


def test_a_dongle_that_reconnects_replaces_its_older_connection():
    rig = Rig((DATALOG_A, SERIAL_A))
    (inverter,) = rig.inverters
    old, old_transport = rig.connect()
    old.dataReceived(heartbeat(DATALOG_A))
    sent(old_transport)
    pending = inverter.read_hold(21)
    assert len(sent(old_transport)) == 1
    new, new_transport = rig.connect()
    new.dataReceived(heartbeat(DATALOG_A))
    assert old_transport.disconnecting and inverter.connected
    assert isinstance(pending.result.value, CommandFailed)
    assert pending.result.value.reason == "connection lost"
    pending.addErrback(lambda _: None)
    old.connectionLost()  # the old one's close arrives late: it changes nothing
    assert inverter.connected
    sent(new_transport)
    inverter.read_hold(22)
    (request,) = sent(new_transport)
    assert request.register == 22 and old_transport.value() == b""


def test_a_connection_that_names_no_dongle_in_time_is_closed():
    rig = Rig((DATALOG_A, SERIAL_A), identify_timeout=30)
    protocol, transport = rig.connect()
    rig.clock.advance(29)
    assert not transport.disconnecting
    rig.clock.advance(1)
    assert transport.disconnecting


def test_garbage_before_any_frame_costs_only_that_connection():
    rig = Rig((DATALOG_A, SERIAL_A))
    good, good_transport = rig.connect()
    good.dataReceived(heartbeat(DATALOG_A))
    bad, bad_transport = rig.connect()
    bad.dataReceived(b"GET / HTTP/1.1\r\n" * (UNIDENTIFIED_BYTES // 16 + 1))
    assert bad_transport.disconnecting and not good_transport.disconnecting
    assert rig.inverters[0].connected


def test_a_flood_from_a_known_dongle_closes_only_its_connection():
    rig = Rig((DATALOG_A, SERIAL_A), (DATALOG_B, SERIAL_B))
    pa, ta = rig.connect()
    pb, tb = rig.connect()
    pa.dataReceived(heartbeat(DATALOG_A))
    pb.dataReceived(heartbeat(DATALOG_B))
    frame = inputs(DATALOG_A, SERIAL_A)
    for _ in range(FLOOD_BYTES // len(frame) + 2):
        pa.dataReceived(frame)
    assert ta.disconnecting and not tb.disconnecting


def test_the_same_rate_spread_over_time_is_no_flood():
    rig = Rig((DATALOG_A, SERIAL_A))
    protocol, transport = rig.connect()
    protocol.dataReceived(heartbeat(DATALOG_A))
    frame = inputs(DATALOG_A, SERIAL_A)
    for _ in range(3 * FLOOD_BYTES // len(frame)):
        protocol.dataReceived(frame)
        rig.clock.advance(0.1)
    assert not transport.disconnecting


def test_connections_beyond_the_maximum_are_refused():
    rig = Rig((DATALOG_A, SERIAL_A), max_connections=2)
    first, second, third = rig.connect(), rig.connect(), rig.connect()
    assert not first[1].disconnecting and not second[1].disconnecting
    assert third[1].disconnecting
    first[0].connectionLost()
    fourth = rig.connect()
    assert not fourth[1].disconnecting


class _TakenEndpoint:
    """A server endpoint whose address another process has."""

    def listen(self, factory):
        in_use = OSError(errno.EADDRINUSE, "Address already in use")
        return defer.fail(CannotListenError("127.0.0.1", 4346, in_use))


def test_an_address_that_cannot_be_bound_stops_start_up_with_one_line(caplog_events):
    listener = DongleListener(_TakenEndpoint(), "127.0.0.1:4346", [], clock=task.Clock())
    with pytest.raises(CannotListenError):
        listener.startService()
    assert listener.port is None
    errors = [formatEvent(e) for e in caplog_events if e["log_level"].name == "error"]
    assert errors == ["listener 127.0.0.1:4346: cannot listen: Address already in use"]


def test_serials_are_learned_from_the_dongle_and_commands_wait_for_them(caplog_events):
    rig = Rig((None, None))
    (inverter,) = rig.inverters
    protocol, transport = rig.connect()
    waiting = inverter.read_hold(21)
    protocol.dataReceived(heartbeat(DATALOG_A))
    assert inverter.datalog == DATALOG_A and inverter.serial is None
    assert sent(transport) == [lxp.Heartbeat(DATALOG_A)]  # the command waits
    rig.clock.advance(SERIAL_QUESTION_DELAY)
    (question,) = sent(transport)
    # Registers 80-119 (115-119 are the serial), to inverter 0000000000: what
    # LuxPower Advanced sends when it has no serial.
    assert (question.function, question.register, question.count) == (READ_INPUT, 80, 40)
    assert question.inverter == "0000000000"
    protocol.dataReceived(inputs(DATALOG_A, SERIAL_A))
    assert inverter.serial == SERIAL_A
    (request,) = sent(transport)
    assert (request.datalog, request.inverter, request.register) == (DATALOG_A, SERIAL_A, 21)
    protocol.dataReceived(lxp.build(lxp.ReadReply(READ_HOLD, DATALOG_A, SERIAL_A, 21, (9,))))
    assert waiting.result == {21: 9}
    lines = [formatEvent(e) for e in caplog_events if "learned" in e.get("log_format", "")]
    assert any("`datalog = BA00000001`" in line for line in lines)
    assert any("`serial = IN00000001`" in line for line in lines)
    assert len(lines) == 2


def test_a_command_queued_before_the_datalog_is_learned_goes_out_once_it_is():
    rig = Rig((None, SERIAL_A))  # the inverter serial configured, the dongle's not
    (inverter,) = rig.inverters
    protocol, transport = rig.connect()
    waiting = inverter.read_hold(21)
    protocol.dataReceived(heartbeat(DATALOG_A))
    answer, request = sent(transport)
    assert answer == lxp.Heartbeat(DATALOG_A)
    assert (request.datalog, request.inverter, request.register) == (DATALOG_A, SERIAL_A, 21)
    protocol.dataReceived(lxp.build(lxp.ReadReply(READ_HOLD, DATALOG_A, SERIAL_A, 21, (9,))))
    assert waiting.result == {21: 9}


def test_a_command_fails_in_time_when_the_serial_is_never_learned():
    rig = Rig((DATALOG_A, None))
    (inverter,) = rig.inverters
    protocol, _ = rig.connect()
    protocol.dataReceived(heartbeat(DATALOG_A))
    waiting = inverter.read_hold(21)
    rig.clock.advance(10)
    assert waiting.result.value.reason == "inverter serial not learned within 10 s"
    waiting.addErrback(lambda _: None)


def test_a_section_without_datalog_takes_the_first_dongle_and_keeps_it():
    rig = Rig((DATALOG_A, SERIAL_A), (None, SERIAL_B))
    a, b = rig.inverters
    p1, _ = rig.connect()
    p1.dataReceived(heartbeat(DATALOG_B))
    assert b.connected and b.datalog == DATALOG_B
    p2, t2 = rig.connect()
    p2.dataReceived(heartbeat("XX99999999"))  # the free section is taken now
    assert t2.disconnecting
    p3, _ = rig.connect()
    p3.dataReceived(heartbeat(DATALOG_A))
    assert a.connected


# -- the splitter the relay relies on ---------------------------------------------------


def stream():
    frames = [
        lxp.build(lxp.Heartbeat(DATALOG_A)),
        inputs(DATALOG_A, SERIAL_A),
        lxp.build(lxp.ReadRequest(READ_HOLD, DATALOG_A, SERIAL_A, 0, 40)),
    ]
    return frames, b"junk" + frames[0] + frames[1] + b"\xa1\x1a\xff\xff" + frames[2]


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_the_splitter_gives_back_the_very_bytes_in_whole_frames(step):
    frames, data = stream()
    splitter = FrameSplitter()
    chunks = []
    for offset in range(0, len(data), step):
        chunks += splitter.feed(data[offset : offset + step])
    assert b"".join(chunks) == data
    for frame in frames:
        assert frame in chunks
    assert splitter.buffered == 0


# -- the relay, without a reactor ------------------------------------------------------


class _NoEndpoint:
    """A client endpoint that never connects: the test plays the cloud's protocol itself."""

    def connect(self, factory):
        from twisted.internet import defer

        self.factory = factory
        return defer.Deferred()


def relayed_rig():
    rig = Rig((DATALOG_A, SERIAL_A))
    endpoint = _NoEndpoint()
    rig.listener.routes[0].cloud = lambda: endpoint
    rig.listener.routes[0].cloud_address = "cloud:4346"
    protocol, transport = rig.connect()
    protocol.dataReceived(heartbeat(DATALOG_A))
    (connection,) = rig.listener.connections
    return rig, protocol, transport, connection, endpoint


def cloud_up(endpoint):
    cloud = endpoint.factory.buildProtocol(None)
    cloud_transport = StringTransport()
    cloud.makeConnection(cloud_transport)
    return cloud, cloud_transport


def test_the_bridge_answers_heartbeats_until_the_cloud_is_there_then_only_the_cloud():
    rig, protocol, transport, connection, endpoint = relayed_rig()
    assert sent(transport) == [lxp.Heartbeat(DATALOG_A)]  # no cloud yet: the bridge answers
    cloud, cloud_transport = cloud_up(endpoint)
    protocol.dataReceived(heartbeat(DATALOG_A))
    assert sent(transport) == []  # the cloud's turn
    assert cloud_transport.value() == heartbeat(DATALOG_A)  # passed on untouched
    cloud.dataReceived(heartbeat(DATALOG_A))  # the cloud's answer goes to the dongle
    assert transport.value() == heartbeat(DATALOG_A)


def test_the_bridges_requests_never_land_inside_a_cloud_frame():
    rig, protocol, transport, connection, endpoint = relayed_rig()
    (inverter,) = rig.inverters
    cloud, _ = cloud_up(endpoint)
    sent(transport)
    cloud_request = lxp.build(lxp.ReadRequest(READ_HOLD, DATALOG_A, SERIAL_A, 80, 40))
    cloud.dataReceived(cloud_request[:11])  # half a frame from the cloud ...
    inverter.read_hold(21)  # ... and the bridge's own request in between
    cloud.dataReceived(cloud_request[11:])
    data = transport.value()
    assert data.endswith(cloud_request)  # whole, after ours
    frames = lxp.FrameDecoder(lxp.Direction.TO_DONGLE).feed(data)
    assert [f.register for f in frames] == [21, 80]


def test_frames_for_a_cloud_that_is_down_or_slow_are_dropped_not_kept():
    rig, protocol, transport, connection, endpoint = relayed_rig()
    frame = inputs(DATALOG_A, SERIAL_A)
    protocol.dataReceived(frame)
    assert connection.link.frames_dropped == 1  # not connected yet
    cloud, cloud_transport = cloud_up(endpoint)
    protocol.dataReceived(frame)
    assert cloud_transport.value() == frame and connection.link.frames_relayed == 1
    cloud.congestion.pauseProducing()  # the cloud's send buffer is full
    protocol.dataReceived(frame)
    assert connection.link.frames_dropped == 2 and cloud_transport.value() == frame
    assert rig.inverters[0].latest_inputs  # the local side never noticed


def test_cloud_frames_for_a_dongle_that_is_not_reading_are_dropped():
    rig, protocol, transport, connection, endpoint = relayed_rig()
    cloud, _ = cloud_up(endpoint)
    sent(transport)
    transport.producer.pauseProducing()
    cloud.dataReceived(heartbeat(DATALOG_A))
    assert transport.value() == b"" and connection.chunks_dropped == 1


def test_closing_bad_connections_logs_one_line_a_minute(caplog_events):
    rig = Rig((DATALOG_A, SERIAL_A), identify_timeout=1)
    for _ in range(50):
        rig.connect()
    rig.clock.advance(1)  # all 50 time out at once
    rig.clock.advance(60)
    rig.connect()
    rig.clock.advance(1)
    lines = [formatEvent(e) for e in caplog_events
             if "closing the connection" in e.get("log_format", "")
             and e["log_level"].name == "info"]
    assert len(lines) == 2
    assert "(49 more closed since the last such line)" in lines[1]


def test_each_connection_has_its_own_section_s_no_data_timeout():
    # One listener, two sections: a dongle broadcasting every 20 s may be given up
    # on after 60 s of silence without shortening the other's 600 s.
    rig = Rig((DATALOG_A, SERIAL_A), (DATALOG_B, SERIAL_B), identify_timeout=90.0,
              no_data_timeouts=(60.0, 600.0))
    a, b = rig.inverters
    (pa, ta), (pb, tb) = rig.connect(), rig.connect()
    rig.clock.advance(80)  # silent, but still within identify_timeout: no section's yet
    assert not ta.disconnecting and not tb.disconnecting
    pa.dataReceived(heartbeat(DATALOG_A))
    pb.dataReceived(heartbeat(DATALOG_B))
    rig.clock.advance(59)
    pa.dataReceived(heartbeat(DATALOG_A))  # data pushes A's timeout back
    rig.clock.advance(59)
    assert a.connected and not ta.disconnecting
    rig.clock.advance(2)
    assert ta.disconnecting  # 61 s of silence: A's 60 s
    pa.connectionLost()
    assert not a.connected
    rig.clock.advance(600 - 120 - 1)
    assert b.connected and not tb.disconnecting
    rig.clock.advance(2)
    assert tb.disconnecting  # B's own 600 s
    pb.connectionLost()
    assert not b.connected


def test_an_unidentified_connection_has_only_the_identify_timeout():
    rig = Rig((DATALOG_A, SERIAL_A), identify_timeout=30.0, no_data_timeouts=(10.0,))
    protocol, transport = rig.connect()
    rig.clock.advance(29)
    assert not transport.disconnecting  # not the section's 10 s: it names no section yet
    rig.clock.advance(2)
    assert transport.disconnecting


def _accepting_service(listener_settings):
    from twisted.internet.testing import MemoryReactorClock

    from octolux.config.ini import Config, InverterConfig, ServerConfig
    from octolux.service.tap import build_service

    section = InverterConfig(
        "inverter", None, SERIAL_A, DATALOG_A, listen=("127.0.0.1", 4999),
        cloud=("127.0.0.1", 5999), no_data_timeout=30.0, command_timeout=3.0, read_only=True,
    )
    config = Config(inverters=(section,), server=ServerConfig(port=0),
                    listener=listener_settings)
    service = build_service(config, MemoryReactorClock())
    return next(s for s in service if isinstance(s, DongleListener))


def test_an_accepted_dongle_has_the_defaults_not_another_section_s_settings():
    from octolux.config.ini import COMMAND_TIMEOUT, NO_DATA_TIMEOUT, ListenerConfig

    listener = _accepting_service(ListenerConfig(accept_unknown=True))
    route = listener.route_for("XX99999999")
    inverter = route.inverter
    assert inverter.name == "XX99999999"
    assert (inverter.no_data_timeout, inverter.command_timeout, inverter.read_only) == (
        NO_DATA_TIMEOUT, COMMAND_TIMEOUT, False)
    assert route.cloud is None  # the section's relay is the section's


def test_listener_cloud_relays_the_accepted_dongles():
    from octolux.config.ini import ListenerConfig

    listener = _accepting_service(
        ListenerConfig(accept_unknown=True, cloud=("127.0.0.1", 6999)))
    route = listener.route_for("XX99999999")
    assert route.cloud is not None and route.cloud_address == "127.0.0.1:6999"
    # Connections are split into frames from their first byte, for the relay.
    assert listener.relays


def _block_3(datalog: str, header_serial: str, serial_in_values: str) -> bytes:
    """A reply for input registers 80-119; registers 115-119 hold ``serial_in_values``."""
    values = [0] * 40
    text = serial_in_values.encode("latin-1")
    for index in range(5):
        values[35 + index] = text[2 * index] | text[2 * index + 1] << 8
    return lxp.build(lxp.ReadReply(READ_INPUT, datalog, header_serial, 80, tuple(values)))


def test_a_reply_naming_inverter_0000000000_teaches_the_serial_in_its_registers():
    # Which serial an inverter puts in its reply to a request for 0000000000 is not
    # known: if it echoes the request's, registers 115-119 still say the real one.
    rig = Rig((DATALOG_A, None))
    (inverter,) = rig.inverters
    protocol, transport = rig.connect()
    protocol.dataReceived(heartbeat(DATALOG_A))
    rig.clock.advance(SERIAL_QUESTION_DELAY)
    sent(transport)
    protocol.dataReceived(_block_3(DATALOG_A, "0000000000", SERIAL_A))
    assert inverter.serial == SERIAL_A


def test_the_stand_in_serial_is_never_learned():
    rig = Rig((DATALOG_A, None))
    (inverter,) = rig.inverters
    protocol, transport = rig.connect()
    protocol.dataReceived(heartbeat(DATALOG_A))
    waiting = inverter.read_hold(21)
    protocol.dataReceived(inputs(DATALOG_A, "0000000000"))  # no serial in registers 0-39
    protocol.dataReceived(_block_3(DATALOG_A, "0000000000", "0000000000"))
    assert inverter.serial is None
    assert [f for f in sent(transport) if not isinstance(f, lxp.Heartbeat)] == []
    # The next broadcast names the inverter: the command goes out then.
    protocol.dataReceived(inputs(DATALOG_A, SERIAL_A))
    assert inverter.serial == SERIAL_A
    (request,) = sent(transport)
    assert (request.inverter, request.register) == (SERIAL_A, 21)
    waiting.addErrback(lambda _: None)
