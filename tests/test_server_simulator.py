"""The simulator dialling out (`lxp-simulator --connect`) and the fake vendor server."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage

from octolux import lxp
from simulator import tap
from simulator.dialer import DialingDongle, DialingDongleFactory, start_dialing_simulator
from simulator.dongle import DongleConfig
from simulator.vendor import FakeVendorServer

TIMEOUT = 10  # seconds for any one thing to happen over real TCP
DATALOG = "SIMDL00001"


def frames_written(transport: StringTransport) -> list:
    items = lxp.FrameDecoder(lxp.Direction.FROM_DONGLE).feed(transport.value())
    transport.clear()
    return items


def connected_dongle(**settings):
    clock = task.Clock()
    config = DongleConfig(heartbeat=10, interval=5, first_burst_delay=1, burst_gap=0,
                          seed=1, **settings)
    factory = DialingDongleFactory(clock, config, unanswered_heartbeats=3)
    client = factory.buildProtocol(None)
    transport = StringTransport()
    client.makeConnection(transport)
    return clock, factory, client, transport


def test_a_dialling_dongle_introduces_itself_with_a_heartbeat():
    _, _, _, transport = connected_dongle()
    assert frames_written(transport) == [lxp.Heartbeat(DATALOG)]


def test_broadcasts_stop_while_heartbeats_go_unanswered_and_resume_with_an_answer():
    clock, factory, client, transport = connected_dongle()
    frames_written(transport)
    clock.advance(1)
    assert any(isinstance(f, lxp.ReadReply) for f in frames_written(transport))
    # Three heartbeats (30 s) and a half pass unanswered: no more input data,
    # but the heartbeats go on.
    for _ in range(40):
        clock.advance(1)
    late = frames_written(transport)
    assert any(isinstance(f, lxp.Heartbeat) for f in late)
    clock.advance(5)
    assert not any(isinstance(f, lxp.ReadReply) for f in frames_written(transport))
    client.dataReceived(lxp.build(lxp.Heartbeat(DATALOG)))
    assert factory.heartbeat_answers == 1
    clock.advance(5)
    assert any(isinstance(f, lxp.ReadReply) for f in frames_written(transport))


def test_answered_heartbeats_keep_the_broadcasts_going():
    clock, _, client, transport = connected_dongle()
    for _ in range(100):
        clock.advance(1)
        for frame in frames_written(transport):
            if isinstance(frame, lxp.Heartbeat):
                client.dataReceived(lxp.build(lxp.Heartbeat(DATALOG)))
    clock.advance(5)
    assert any(isinstance(f, lxp.ReadReply) for f in frames_written(transport))


def parse(*arguments) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(arguments))
    return options


@pytest.mark.parametrize("address", ["localhost", "host:0", "host:70000", ":4346", "host:x"])
def test_connect_needs_host_and_port(address):
    with pytest.raises(usage.UsageError, match="--connect"):
        parse("--connect", address)


def test_connect_with_count_dials_count_dongles_to_one_address():
    memory = MemoryReactorClock()
    options = parse("--connect", "[::1]:4346", "--count", "3", "--unanswered-heartbeats", "5")
    simulators = tap.makeService(options, memory)
    dongles = list(simulators)
    assert all(isinstance(dongle, DialingDongle) for dongle in dongles)
    assert [d.config.datalog for d in dongles] == ["SIMDL00001", "SIMDL00002", "SIMDL00003"]
    assert {d.factory.unanswered_heartbeats for d in dongles} == {5}
    assert {d.address for d in dongles} == {"::1:4346"}
    simulators.startService()
    assert len(memory.tcpClients) == 3 and memory.tcpServers == []
    simulators.stopService()


@pytest_twisted.ensureDeferred
async def test_the_dongle_dials_the_vendor_server_and_reconnects_after_a_drop():
    vendor = await FakeVendorServer().start(reactor)
    dongle = start_dialing_simulator(
        reactor, "127.0.0.1", vendor.port, heartbeat=0.2, interval=0.3, first_burst_delay=0.05,
        burst_gap=0, seed=3, retry_policy=lambda attempt: 0.1,
    )
    try:
        heartbeat = await vendor.when_frame(
            lambda f: isinstance(f, lxp.Heartbeat)).addTimeout(TIMEOUT, reactor)
        assert heartbeat.datalog == DATALOG
        await vendor.when_frame(lambda f: isinstance(f, lxp.ReadReply)).addTimeout(
            TIMEOUT, reactor)
        first = await vendor.when_connected()
        # The vendor's app reads a register through the server: the dongle answers.
        first.send(lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, DATALOG, "SIMINV0001", 21, 1))
        reply = await vendor.when_frame(
            lambda f: isinstance(f, lxp.ReadReply) and f.function == lxp.DeviceFunction.READ_HOLD
        ).addTimeout(TIMEOUT, reactor)
        assert reply.registers[21] == dongle.plant.holding[21]
        assert vendor.heartbeats_answered >= 1 and dongle.factory.heartbeat_answers >= 1

        first.transport.loseConnection()
        await first.lost
        second = await _next_connection(vendor, first)
        assert second is not first and second.datalog in (None, DATALOG)
    finally:
        await dongle.stop()
        await vendor.stop()


async def _next_connection(vendor, old):
    deadline = reactor.seconds() + TIMEOUT
    while reactor.seconds() < deadline:
        fresh = [c for c in vendor.connections if c is not old]
        if fresh:
            return fresh[0]
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("the dongle did not reconnect")


@pytest.mark.parametrize(("inverter", "answered"), [("0000000000", True), ("OTHERINV01", False)])
def test_a_request_to_inverter_0000000000_is_answered_with_the_real_serial(inverter, answered):
    # As LuxPower Advanced relies on: without a serial it addresses 0000000000.
    clock, factory, client, transport = connected_dongle(inverter="IV12345678")
    frames_written(transport)
    client.dataReceived(lxp.build(lxp.ReadRequest(
        lxp.DeviceFunction.READ_INPUT, DATALOG, inverter, 80, 40)))
    replies = [f for f in frames_written(transport) if isinstance(f, lxp.ReadReply)]
    if not answered:
        assert replies == []
        return
    (reply,) = replies
    assert (reply.register, reply.inverter) == (80, "IV12345678")
    serial = lxp.inputs.decode_inputs(80, reply.values)["inverter_serial"]
    assert serial == "IV12345678"
