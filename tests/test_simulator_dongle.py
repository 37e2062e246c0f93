"""The simulated dongle at protocol level: in-memory transports and a fake clock."""

from __future__ import annotations

import datetime
import json
import re

import attrs
import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from octolux import lxp
from octolux.lxp import holding
from octolux.lxp.inputs import decode_input_blocks
from octolux.net.badframes import BAD_FRAME_LINES
from simulator import dongle as dongle_module
from simulator.dongle import REQUEST_LOG_LENGTH, DongleConfig, DongleFactory
from simulator.faults import Faults
from simulator.logs import summarise
from simulator.plant import Plant
from simulator.responder import FOREIGN_KINDS, BroadcastFormat

DATALOG = "SIMDL00001"
INVERTER = "SIMINV0001"
NOON = datetime.datetime(2024, 6, 21, 12, 0)
READ_HOLD = lxp.DeviceFunction.READ_HOLD
READ_INPUT = lxp.DeviceFunction.READ_INPUT


class RecordingTransport(StringTransport):
    """A StringTransport that also keeps each write apart, to see how output was segmented."""

    def __init__(self, port: int):
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.1", port))
        self.writes: list[bytes] = []

    def write(self, data):
        self.writes.append(data)
        super().write(data)


@attrs.define
class Client:
    """One in-memory client connection to a dongle."""

    protocol: object
    transport: RecordingTransport
    decoder: lxp.FrameDecoder = attrs.field(
        factory=lambda: lxp.FrameDecoder(lxp.Direction.FROM_DONGLE))

    def send(self, frame) -> None:
        self.protocol.dataReceived(lxp.build(frame))

    def received(self) -> list:
        """Frames (and BadFrames) received since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return self.decoder.feed(data)

    def frames(self) -> list:
        """Good frames received since the last call; fails on any bad one."""
        items = self.received()
        assert not [item for item in items if isinstance(item, lxp.BadFrame)], items
        return items

    def disconnect(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


def make_dongle(**settings) -> tuple[DongleFactory, task.Clock]:
    clock = task.Clock()
    settings.setdefault("seed", 1)
    settings.setdefault("start", NOON)
    # Quiet unless a test asks: no burst or heartbeat in the middle of its requests.
    settings.setdefault("first_burst_delay", 1000)
    settings.setdefault("heartbeat", 1000)
    return DongleFactory(clock, DongleConfig(**settings)), clock


_ports = iter(range(40000, 50000))


def connect(dongle: DongleFactory) -> Client:
    port = next(_ports)
    protocol = dongle.buildProtocol(IPv4Address("TCP", "192.0.2.1", port))
    transport = RecordingTransport(port)
    protocol.makeConnection(transport)
    return Client(protocol, transport)


def request(dongle, frame, client=None):
    """Send ``frame`` from a new (or the given) client; return the frames that came back."""
    client = client or connect(dongle)
    client.received()
    client.send(frame)
    return client.frames()


def read(function, register, count, datalog=DATALOG, inverter=INVERTER):
    return lxp.ReadRequest(function, datalog, inverter, register, count)


def write(register, value, datalog=DATALOG, inverter=INVERTER):
    return lxp.WriteSingleRequest(datalog, inverter, register, value)


# -- heartbeats and broadcasts ------------------------------------------------------


def test_heartbeats_on_every_connection():
    dongle, clock = make_dongle(heartbeat=60, first_burst_delay=1000, interval=1000)
    first, second = connect(dongle), connect(dongle)
    clock.advance(59)
    assert first.frames() == [] and second.frames() == []
    clock.advance(1)
    for client in (first, second):
        assert client.frames() == [lxp.Heartbeat(DATALOG)]
    clock.advance(60)
    assert first.frames() == [lxp.Heartbeat(DATALOG)]


def test_first_burst_soon_after_connecting_then_every_interval():
    dongle, clock = make_dongle(first_burst_delay=2, interval=120, burst_gap=1, heartbeat=1000)
    client = connect(dongle)
    clock.advance(1.9)
    assert client.frames() == []
    clock.advance(0.1)
    assert [(f.register, len(f.values)) for f in client.frames()] == [(0, 40)]
    clock.advance(1)
    assert [f.register for f in client.frames()] == [40]
    clock.advance(1)
    assert [f.register for f in client.frames()] == [80]
    clock.advance(117.9)
    assert client.frames() == []
    clock.advance(0.1)
    assert [f.register for f in client.frames()] == [0]
    clock.advance(2)
    assert [f.register for f in client.frames()] == [40, 80]


def test_a_burst_decodes_to_plausible_inputs():
    dongle, clock = make_dongle(first_burst_delay=0, burst_gap=0.5)
    client = connect(dongle)
    clock.pump([0, 0.5, 0.5])
    burst = client.frames()
    assert len(burst) == 3
    named = {}
    for frame in burst:
        assert frame.function == READ_INPUT and frame.protocol == 2
        assert (frame.datalog, frame.inverter) == (DATALOG, INVERTER)
        assert len(lxp.build(frame)) == 117
        for block in decode_input_blocks(frame.register, frame.values).values():
            named.update(block)
    assert 0 <= named["soc"] <= 100
    assert 40 <= named["v_bat"] <= 58
    assert named["f_ac"] == pytest.approx(50, abs=0.1)
    assert named["p_pv"] > 0  # noon
    assert named["inverter_serial"] == INVERTER


def test_all127_format_broadcasts_one_protocol_5_frame():
    dongle, clock = make_dongle(format="all127", first_burst_delay=0, heartbeat=10)
    client = connect(dongle)
    clock.advance(0)
    (frame,) = client.frames()
    assert (frame.register, len(frame.values), frame.protocol) == (0, 127, 5)
    assert len(lxp.build(frame)) == 291
    assert sorted(decode_input_blocks(0, frame.values)) == [1, 2, 3]
    clock.advance(10)
    assert client.frames() == [lxp.Heartbeat(DATALOG, protocol=5)]
    assert dongle.config.format is BroadcastFormat.ALL127


def test_a_new_client_restarts_the_schedule_for_everyone():
    dongle, clock = make_dongle(first_burst_delay=1, interval=100, burst_gap=0)
    first = connect(dongle)
    clock.advance(50)
    assert len(first.frames()) == 3
    second = connect(dongle)
    clock.advance(1)
    assert len(first.frames()) == 3 and len(second.frames()) == 3


def test_broadcasts_stop_when_the_last_client_leaves():
    dongle, clock = make_dongle(first_burst_delay=1, interval=10)
    client = connect(dongle)
    client.disconnect()
    assert dongle.clients == []
    assert clock.getDelayedCalls() == []


def test_the_plant_runs_on_the_clock_times_speed():
    dongle, clock = make_dongle(speed=60)
    clock.advance(10)
    dongle.sync_plant()
    assert dongle.plant.now == NOON + datetime.timedelta(minutes=10)


# -- requests -------------------------------------------------------------------------


@pytest.mark.parametrize(("register", "count"), [(0, 40), (40, 40), (80, 40), (120, 40),
                                                 (0, 127), (45, 10), (159, 1)])
def test_reads_input_registers(register, count):
    dongle, _ = make_dongle()
    (reply,) = request(dongle, read(READ_INPUT, register, count))
    expected = dongle.plant.input_registers()[register : register + count]
    assert reply == lxp.ReadReply(READ_INPUT, DATALOG, INVERTER, register, expected)


@pytest.mark.parametrize(
    ("function", "register", "count", "code"),
    [
        (READ_INPUT, 160, 40, lxp.ExceptionCode.ILLEGAL_ADDRESS),
        (READ_INPUT, 20, 40, lxp.ExceptionCode.ILLEGAL_ADDRESS),  # crosses a block
        (READ_INPUT, 0, 41, lxp.ExceptionCode.ILLEGAL_VALUE),
        (READ_INPUT, 0, 0, lxp.ExceptionCode.ILLEGAL_VALUE),
        (READ_HOLD, 0, 41, lxp.ExceptionCode.ILLEGAL_VALUE),
        (READ_HOLD, 0, 0, lxp.ExceptionCode.ILLEGAL_VALUE),
        (READ_HOLD, 220, 40, lxp.ExceptionCode.ILLEGAL_ADDRESS),
        (READ_HOLD, 240, 1, lxp.ExceptionCode.ILLEGAL_ADDRESS),
    ],
)
def test_impossible_reads_get_exception_replies(function, register, count, code):
    dongle, _ = make_dongle()
    (reply,) = request(dongle, read(function, register, count))
    assert reply == lxp.ExceptionReply(function, DATALOG, INVERTER, register, code)


@pytest.mark.parametrize(("register", "count"), [(0, 40), (200, 40), (12, 3), (21, 1), (0, 127)])
def test_reads_holding_registers(register, count):
    dongle, _ = make_dongle()
    (reply,) = request(dongle, read(READ_HOLD, register, count))
    assert reply == lxp.ReadReply(READ_HOLD, DATALOG, INVERTER, register,
                                  dongle.plant.read_holding(register, count))


def test_the_clock_registers_read_back_the_simulated_time():
    dongle, clock = make_dongle(speed=2)
    clock.advance(30)
    (reply,) = request(dongle, read(READ_HOLD, 12, 3))
    assert holding.decode_clock(*reply.values) == NOON + datetime.timedelta(minutes=1)


def test_a_write_is_echoed_to_every_client_and_read_back():
    dongle, _ = make_dongle()
    writer, other = connect(dongle), connect(dongle)
    reply = request(dongle, write(65, 42), writer)
    assert reply == [lxp.WriteSingleReply(DATALOG, INVERTER, 65, 42)]
    assert other.frames() == reply
    assert dongle.plant.holding[65] == 42
    (read_back,) = request(dongle, read(READ_HOLD, 65, 1), writer)
    assert read_back.values == (42,)


@pytest.mark.parametrize(
    ("register", "value", "code"),
    [(65, 101, lxp.ExceptionCode.ILLEGAL_VALUE), (3, 1, lxp.ExceptionCode.ILLEGAL_ADDRESS),
     (300, 1, lxp.ExceptionCode.ILLEGAL_ADDRESS), (68, 25, lxp.ExceptionCode.ILLEGAL_VALUE)],
)
def test_a_refused_write_gets_an_exception_reply_and_changes_nothing(register, value, code):
    dongle, _ = make_dongle()
    before = dongle.plant.read_holding(0, 40) + dongle.plant.read_holding(40, 40)
    (reply,) = request(dongle, write(register, value))
    assert reply == lxp.ExceptionReply(lxp.DeviceFunction.WRITE_SINGLE, DATALOG, INVERTER,
                                       register, code)
    assert dongle.plant.read_holding(0, 40) + dongle.plant.read_holding(40, 40) == before


def test_ac_charge_written_over_the_wire_shows_in_the_next_broadcast():
    dongle, clock = make_dongle(first_burst_delay=1, burst_gap=0,
                                start=datetime.datetime(2024, 6, 21, 2, 0))
    client = connect(dongle)
    value = holding.with_bit(dongle.plant.holding[21], holding.BITS[21]["ac_charge"], True)
    request(dongle, write(21, value), client)
    clock.advance(1)
    named = decode_input_blocks(0, client.frames()[0].values)[1]
    assert named["status"] == 32 and named["p_charge"] > 0 and named["p_rec"] > 0


def test_a_multi_write_sets_the_clock():
    dongle, clock = make_dongle()
    moment = datetime.datetime(2025, 3, 4, 5, 6, 7)
    frame = lxp.WriteMultiRequest(DATALOG, INVERTER, 12, holding.encode_clock(moment))
    assert request(dongle, frame) == [lxp.WriteMultiReply(DATALOG, INVERTER, 12, 3)]
    clock.advance(5)
    (reply,) = request(dongle, read(READ_HOLD, 12, 3))
    assert holding.decode_clock(*reply.values) == moment + datetime.timedelta(seconds=5)


def test_a_multi_write_with_one_bad_value_changes_nothing():
    dongle, _ = make_dongle()
    frame = lxp.WriteMultiRequest(DATALOG, INVERTER, 64, (50, 50, 101))
    (reply,) = request(dongle, frame)
    assert reply.code == lxp.ExceptionCode.ILLEGAL_VALUE
    assert dongle.plant.holding.read(64, 3) == (100, 100, 100)


def test_param_0_is_the_broadcast_interval():
    dongle, clock = make_dongle(interval=120, first_burst_delay=0, burst_gap=0)
    client = connect(dongle)
    (reply,) = request(dongle, lxp.ReadParamRequest(DATALOG, 0), client)
    assert reply.number == 120
    assert len(client.frames()) == 0
    clock.advance(0)
    assert len(client.frames()) == 3
    (reply,) = request(dongle, lxp.WriteParamRequest(DATALOG, 0, (30).to_bytes(2, "little")),
                       client)
    assert reply == lxp.WriteParamReply(DATALOG, 0, 0)
    (reply,) = request(dongle, lxp.ReadParamRequest(DATALOG, 0), client)
    assert reply.number == 30
    clock.advance(29.9)
    assert client.frames() == []
    clock.advance(0.1)
    assert len(client.frames()) == 3


def test_bad_param_writes_fail_and_change_nothing():
    dongle, _ = make_dongle(interval=120)
    (reply,) = request(dongle, lxp.WriteParamRequest(DATALOG, 0, b"\x00\x00"))
    assert reply.status != 0
    (reply,) = request(dongle, lxp.WriteParamRequest(DATALOG, 7, b"\x01\x00"))
    assert reply.status != 0
    assert dongle.interval == 120


@pytest.mark.parametrize(
    "frame",
    [
        read(READ_HOLD, 0, 40, datalog="OTHERDL001"),
        read(READ_HOLD, 0, 40, inverter="OTHERINV01"),
        write(65, 10, inverter="OTHERINV01"),
        lxp.ReadParamRequest("OTHERDL001", 0),
    ],
)
def test_requests_for_other_serials_are_ignored_but_logged(frame):
    dongle, _ = make_dongle()
    assert request(dongle, frame) == []
    assert list(dongle.requests) == [frame]
    assert dongle.plant.holding[65] == 100


def test_the_request_log_and_when_request():
    dongle, _ = make_dongle()
    client = connect(dongle)
    writes = dongle.when_request(lambda frame: isinstance(frame, lxp.WriteSingleRequest))
    request(dongle, read(READ_HOLD, 0, 40), client)
    assert not writes.called
    request(dongle, write(64, 50), client)
    assert writes.result == write(64, 50)
    assert list(dongle.requests) == [read(READ_HOLD, 0, 40), write(64, 50)]
    assert dongle.requests[-1] == write(64, 50)


@pytest.mark.parametrize("field", ["datalog", "inverter"])
def test_a_config_needs_ten_character_serials(field):
    with pytest.raises(ValueError, match=f"{field} must be 10 characters of 8-bit text: 'SHORT'"):
        DongleConfig(**{field: "SHORT"})


def test_the_request_log_keeps_only_the_latest_requests(monkeypatch):
    assert make_dongle()[0].requests.maxlen == REQUEST_LOG_LENGTH == 10_000
    monkeypatch.setattr(dongle_module, "REQUEST_LOG_LENGTH", 3)
    dongle, _ = make_dongle()
    client = connect(dongle)
    for value in range(5):
        request(dongle, write(64, value), client)
    assert list(dongle.requests) == [write(64, 2), write(64, 3), write(64, 4)]
    assert dongle.requests[0] == write(64, 2)


def test_garbage_and_replies_from_a_client_do_not_cost_the_connection():
    dongle, _ = make_dongle()
    client = connect(dongle)
    client.protocol.dataReceived(b"\x00\xff junk \xa1")
    # A reply's bytes sent to the dongle are a request if they fit one (a
    # write-single echo is a write); a read reply of two values fits none.
    client.send(lxp.ReadReply(READ_HOLD, DATALOG, INVERTER, 65, (1, 2)))
    client.send(lxp.Heartbeat(DATALOG))
    assert request(dongle, read(READ_HOLD, 65, 1), client)[0].values == (100,)
    assert not client.transport.disconnecting


# -- state ----------------------------------------------------------------------------


def test_the_holding_registers_survive_a_restart(tmp_path):
    path = tmp_path / "state.json"
    dongle, _ = make_dongle(state_path=path)
    request(dongle, write(65, 42))
    saved = json.loads(path.read_text())
    assert saved["holding"]["65"] == 42 and saved["datalog"] == DATALOG
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left over
    restarted, _ = make_dongle(state_path=path)
    assert restarted.plant.holding[65] == 42


def test_a_state_file_with_impossible_values_is_refused(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"holding": {"65": 500}}))
    with pytest.raises(ValueError, match="register 65"):
        make_dongle(state_path=path)


# -- logging --------------------------------------------------------------------------


def test_connections_requests_and_changes_are_logged_at_info():
    dongle, _ = make_dongle()
    with capturedLogs() as events:
        client = connect(dongle)
        request(dongle, write(65, 42), client)
        client.disconnect()
    lines = [formatEvent(event) for event in events if event["log_level"].name == "info"]
    text = "\n".join(lines)
    assert "client 192.0.2.1" in text and "connected" in text
    # tests/test_e2e_process.py reads writes back from this line.
    assert re.search(r"request from 192\.0\.2\.1:\d+: WriteSingleRequest register=65 value=42$",
                     text, re.MULTILINE)
    assert "holding register 65 (discharge_power_percent) changed 100 -> 42" in text
    assert "disconnected" in text


@pytest.mark.parametrize(
    ("frame", "line"),
    [
        (write(65, 42), "WriteSingleRequest register=65 value=42"),
        (read(READ_INPUT, 0, 40), "ReadRequest device_function=READ_INPUT register=0 count=40"),
        (lxp.ReadReply(READ_INPUT, DATALOG, INVERTER, 0, (0,) * 40),
         "ReadReply device_function=READ_INPUT register=0 values=<40 values>"),
        (lxp.ReadReply(READ_HOLD, DATALOG, INVERTER, 65, (100,), protocol=1),
         "ReadReply device_function=READ_HOLD register=65 values=[100]"),
        (lxp.ExceptionReply(READ_HOLD, DATALOG, INVERTER, 240, 2),
         "ExceptionReply device_function=READ_HOLD register=240 exception=ILLEGAL_ADDRESS"),
        (lxp.WriteMultiRequest(DATALOG, INVERTER, 12, (1, 2, 3)),
         "WriteMultiRequest register=12 values=[1, 2, 3]"),
        (lxp.WriteParamRequest(DATALOG, 7, b"\x00\x01"), "WriteParamRequest register=7 value=0001"),
        (lxp.Heartbeat(DATALOG), "Heartbeat trailer=00"),
        (lxp.UnknownFrame(200, DATALOG, b"\x01"), "UnknownFrame tcp_function=200 payload=01"),
    ],
)
def test_a_frame_is_logged_as_its_kind_and_fields_without_serials(frame, line):
    assert summarise(frame) == line


# -- fault injection --------------------------------------------------------------------


def test_garbage_costs_only_itself():
    dongle, clock = make_dongle(faults=Faults(garbage=1.0), first_burst_delay=0, burst_gap=0)
    client = connect(dongle)
    clock.advance(0)
    items = client.received()
    frames = [item for item in items if not isinstance(item, lxp.BadFrame)]
    bad = [item for item in items if isinstance(item, lxp.BadFrame)]
    assert [frame.register for frame in frames] == [0, 40, 80]
    assert bad and {item.reason for item in bad} == {"garbage"}


def test_corrupt_crc_spoils_data_frames_only():
    dongle, clock = make_dongle(faults=Faults(corrupt_crc=1.0), first_burst_delay=0, burst_gap=0,
                                heartbeat=5)
    client = connect(dongle)
    clock.advance(5)
    items = client.received()
    assert [item.reason for item in items if isinstance(item, lxp.BadFrame)] == ["bad CRC"] * 3
    assert [item for item in items if not isinstance(item, lxp.BadFrame)] == [
        lxp.Heartbeat(DATALOG)
    ]


def test_bad_frames_from_a_client_are_logged_within_a_bound():
    dongle, clock = make_dongle()
    client = connect(dongle)
    corrupt = bytearray(lxp.build(read(READ_HOLD, 0, 40)))
    corrupt[-1] ^= 0xFF
    with capturedLogs() as events:
        for _ in range(1000):
            client.protocol.dataReceived(bytes(corrupt))
        client.disconnect()
    lines = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.info]
    # The first few, one saying that summaries follow, one summary at close
    # (and the line saying that the client left).
    assert len(lines) == BAD_FRAME_LINES + 3, lines
    assert f"bad CRC {1000 - BAD_FRAME_LINES}" in lines[-2] + lines[-1]


def test_split_sends_small_segments_in_order():
    dongle, clock = make_dongle(faults=Faults(split=7), first_burst_delay=0, burst_gap=0)
    client = connect(dongle)
    clock.pump([0] * 200)  # one segment per reactor turn
    assert len(client.transport.writes) > 3 * 117 // 7
    assert all(1 <= len(segment) <= 7 for segment in client.transport.writes)
    assert [frame.register for frame in client.frames()] == [0, 40, 80]


def test_reply_delay():
    dongle, clock = make_dongle(faults=Faults(reply_delay=2.5))
    client = connect(dongle)
    assert request(dongle, read(READ_HOLD, 65, 1), client) == []
    clock.advance(2.5)
    assert [frame.values for frame in client.frames()] == [(100,)]


def test_mute_answers_nothing_but_keeps_broadcasting():
    dongle, clock = make_dongle(faults=Faults(mute=True), first_burst_delay=0, burst_gap=0)
    client = connect(dongle)
    assert request(dongle, write(65, 1), client) == []
    assert dongle.plant.holding[65] == 100
    clock.advance(0)
    assert len(client.frames()) == 3
    assert list(dongle.requests) == [write(65, 1)]


def test_silent_after_keeps_the_connection_open_but_sends_nothing():
    dongle, clock = make_dongle(faults=Faults(silent_after=30), heartbeat=10, interval=20,
                                first_burst_delay=0, burst_gap=0)
    client = connect(dongle)
    clock.pump([0] + [1] * 25)
    assert len(client.frames()) == 2 + 3 + 3  # two heartbeats, two bursts
    clock.pump([10] * 10)
    assert request(dongle, read(READ_HOLD, 0, 1), client) == []
    assert client.frames() == [] and not client.transport.disconnecting


def test_faults_can_be_switched_on_while_running():
    dongle, _ = make_dongle()
    client = connect(dongle)
    dongle.faults = Faults(mute=True)
    assert request(dongle, read(READ_HOLD, 0, 1), client) == []
    dongle.faults = Faults()
    assert len(request(dongle, read(READ_HOLD, 0, 1), client)) == 1


def test_exception_rate_answers_busy_and_changes_nothing():
    dongle, _ = make_dongle(faults=Faults(exception_rate=1.0))
    (reply,) = request(dongle, write(65, 1))
    assert reply == lxp.ExceptionReply(lxp.DeviceFunction.WRITE_SINGLE, DATALOG, INVERTER, 65,
                                       lxp.ExceptionCode.BUSY)
    assert dongle.plant.holding[65] == 100


def test_exception_rate_is_a_rate():
    dongle, _ = make_dongle(faults=Faults(exception_rate=0.5))
    client = connect(dongle)
    replies = [request(dongle, read(READ_HOLD, 0, 1), client)[0] for _ in range(200)]
    refused = sum(isinstance(reply, lxp.ExceptionReply) for reply in replies)
    assert 60 < refused < 140


def test_max_clients_closes_the_extra_connection():
    dongle, clock = make_dongle(faults=Faults(max_clients=1), heartbeat=5)
    first, second = connect(dongle), connect(dongle)
    assert second.transport.disconnecting and not first.transport.disconnecting
    second.disconnect()
    assert dongle.clients == [first.protocol]
    clock.advance(5)
    assert first.frames() == [lxp.Heartbeat(DATALOG)]
    assert second.frames() == []


def test_drop_every_closes_each_connection():
    dongle, clock = make_dongle(faults=Faults(drop_every=30))
    client = connect(dongle)
    clock.advance(29)
    assert not client.transport.disconnecting
    clock.advance(1)
    assert client.transport.disconnecting


def test_foreign_traffic_is_well_formed_and_tells_the_truth():
    dongle, clock = make_dongle(faults=Faults(foreign_traffic=5), first_burst_delay=1000)
    client = connect(dongle)
    dongle.plant.write_holding(64, [77])
    received = []
    for _ in FOREIGN_KINDS:
        clock.advance(5)
        received.extend(client.frames())
    kinds = {type(frame).__name__ for frame in received}
    assert kinds >= {"ReadReply", "WriteSingleReply", "WriteParamReply", "WriteParamRequest",
                     "ExceptionReply"}
    assert lxp.WriteSingleReply(DATALOG, INVERTER, 64, 77) in received
    unknown_blocks = [f for f in received if isinstance(f, lxp.ReadReply) and f.register == 160]
    assert unknown_blocks
    hold = next(f for f in received if isinstance(f, lxp.ReadReply) and f.function == READ_HOLD)
    assert hold.values[21] == dongle.plant.holding[21]
    client.disconnect()
    assert clock.getDelayedCalls() == []


def test_the_same_seed_gives_the_same_broadcasts():
    def burst(seed):
        dongle, clock = make_dongle(seed=seed, first_burst_delay=0, burst_gap=0, speed=100)
        client = connect(dongle)
        clock.advance(0)
        clock.advance(120)
        return client.frames()

    assert burst(5) == burst(5)
    assert burst(5) != burst(6)


def test_a_given_plant_is_used():
    plant = Plant(start=NOON, seed=3, soc=12.0)
    dongle = DongleFactory(task.Clock(), DongleConfig(), plant)
    assert dongle.plant is plant
