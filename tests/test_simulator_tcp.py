"""The simulator over real TCP: in-process (start_simulator) and as `twistd -n lxp-simulator`."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable

import pytest
import pytest_twisted
from support import free_port, run_twistd, stop_process
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError

from octolux import lxp
from octolux.lxp import holding
from simulator.dongle import Faults, start_simulator

DATALOG = "SIMDL00001"
INVERTER = "SIMINV0001"
TIMEOUT = 10  # seconds for any one thing to arrive
START = datetime.datetime(2024, 6, 21, 12, 0)  # the twistd simulator's --start


class FrameCollector(protocol.Protocol):
    """A bare TCP client: decodes everything it receives and lets a test wait for a frame."""

    def __init__(self):
        self.decoder = lxp.FrameDecoder(lxp.Direction.FROM_DONGLE)
        self.items: list = []
        self._waiters: list[tuple[Callable, defer.Deferred]] = []
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        for item in self.decoder.feed(data):
            self.items.append(item)
            waiting, self._waiters = self._waiters, []
            for predicate, waiter in waiting:
                if predicate(item):
                    waiter.callback(item)
                else:
                    self._waiters.append((predicate, waiter))

    def connectionLost(self, reason):
        self.lost.callback(None)

    def send(self, frame) -> None:
        self.transport.write(lxp.build(frame))

    def wait_for(self, predicate: Callable) -> defer.Deferred:
        """The first frame matching ``predicate``, already received or still to come."""
        for item in self.items:
            if predicate(item):
                return defer.succeed(item)
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append((predicate, waiter))
        return waiter.addTimeout(TIMEOUT, reactor)

    def bad_frames(self) -> list:
        return [item for item in self.items if isinstance(item, lxp.BadFrame)]


def is_input_block(register: int) -> Callable:
    return lambda frame: (
        isinstance(frame, lxp.ReadReply)
        and frame.function == lxp.DeviceFunction.READ_INPUT
        and frame.register == register
    )


async def connect(port: int, deadline: float = 20.0) -> FrameCollector:
    """Connect to 127.0.0.1:``port``, retrying while the server is still starting."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2)
    waited = 0.0
    while True:
        try:
            return await connectProtocol(endpoint, FrameCollector()).addTimeout(5, reactor)
        except ConnectError:
            if waited >= deadline:
                raise
            await task.deferLater(reactor, 0.2, lambda: None)
            waited += 0.2


def simulator_timers() -> list:
    """Timers of the simulator still pending in the reactor (none once it is stopped)."""
    return [call for call in reactor.getDelayedCalls() if "Dongle" in repr(call)]


async def disconnect(client: FrameCollector) -> None:
    client.transport.loseConnection()
    await client.lost.addTimeout(TIMEOUT, reactor)


async def check_the_dongle_conversation(client: FrameCollector) -> None:
    """A heartbeat, a full burst with good CRCs, a write of 65 echoed and read back."""
    heartbeat = await client.wait_for(lambda frame: isinstance(frame, lxp.Heartbeat))
    assert heartbeat.datalog == DATALOG
    await client.wait_for(is_input_block(80))
    for register in (0, 40, 80):
        frame = await client.wait_for(is_input_block(register))
        assert (frame.datalog, frame.inverter, len(frame.values)) == (DATALOG, INVERTER, 40)
    assert client.bad_frames() == []  # every CRC was right

    client.send(lxp.WriteSingleRequest(DATALOG, INVERTER, 65, 42))
    echo = await client.wait_for(lambda frame: isinstance(frame, lxp.WriteSingleReply))
    assert (echo.register, echo.value) == (65, 42)
    client.send(lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, DATALOG, INVERTER, 65, 1))
    reply = await client.wait_for(
        lambda frame: isinstance(frame, lxp.ReadReply)
        and frame.function == lxp.DeviceFunction.READ_HOLD
    )
    assert (reply.register, reply.values) == (65, (42,))


# -- in-process: the helper the bridge's tests use -----------------------------------


@pytest_twisted.ensureDeferred
async def test_start_simulator_serves_a_real_tcp_client():
    dongle = await start_simulator(
        reactor, heartbeat=0.2, first_burst_delay=0.1, burst_gap=0.05, seed=1
    ).addTimeout(TIMEOUT, reactor)
    try:
        assert dongle.port > 0
        client = await connect(dongle.port)
        await check_the_dongle_conversation(client)
        assert dongle.plant.holding[65] == 42
        assert list(dongle.requests) == [
            lxp.WriteSingleRequest(DATALOG, INVERTER, 65, 42),
            lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, DATALOG, INVERTER, 65, 1),
        ]
        await disconnect(client)
    finally:
        await dongle.stop().addTimeout(TIMEOUT, reactor)
    assert dongle.port is None
    assert simulator_timers() == []


@pytest_twisted.ensureDeferred
async def test_in_process_helpers_for_bridge_tests():
    dongle = await start_simulator(reactor, datalog="TESTDL0001", inverter="TESTINV001",
                                   seed=2).addTimeout(TIMEOUT, reactor)
    try:
        connected = dongle.when_connected()
        client = await connect(dongle.port)
        await connected.addTimeout(TIMEOUT, reactor)
        dongle.broadcast_now()
        await client.wait_for(is_input_block(0))
        wrote = dongle.when_request(lambda frame: isinstance(frame, lxp.WriteSingleRequest))
        client.send(lxp.WriteSingleRequest("TESTDL0001", "TESTINV001", 64, 50))
        assert (await wrote.addTimeout(TIMEOUT, reactor)).value == 50
        assert dongle.plant.holding[64] == 50
        dongle.faults = Faults(mute=True)
        client.send(lxp.WriteSingleRequest("TESTDL0001", "TESTINV001", 64, 60))
        await dongle.when_request().addTimeout(TIMEOUT, reactor)
        assert dongle.plant.holding[64] == 50
        await dongle.drop_clients().addTimeout(TIMEOUT, reactor)
        await client.lost.addTimeout(TIMEOUT, reactor)
    finally:
        await dongle.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_split_segments_and_garbage_over_real_tcp_cost_only_the_garbage():
    dongle = await start_simulator(
        reactor, first_burst_delay=0, burst_gap=0, seed=3,
        faults=Faults(split=5, garbage=0.5),
    ).addTimeout(TIMEOUT, reactor)
    try:
        client = await connect(dongle.port)
        for register in (0, 40, 80):
            await client.wait_for(is_input_block(register))
        assert {item.reason for item in client.bad_frames()} <= {"garbage"}
        await disconnect(client)
    finally:
        await dongle.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_stop_closes_open_connections():
    dongle = await start_simulator(reactor).addTimeout(TIMEOUT, reactor)
    client = await connect(dongle.port)
    await dongle.when_connected().addTimeout(TIMEOUT, reactor)
    await dongle.stop().addTimeout(TIMEOUT, reactor)
    await client.lost.addTimeout(TIMEOUT, reactor)
    assert simulator_timers() == []


# -- the real thing: twistd -n lxp-simulator --------------------------------------------


@pytest.fixture
def twistd_simulator(tmp_path):
    """`twistd -n lxp-simulator` on a free port, fast timers; yields (port, state file, log)."""
    port = free_port()
    state = tmp_path / "state.json"
    log = tmp_path / "simulator.log"
    process = run_twistd(
        ["-n", "--pidfile=", "-l", "-", "lxp-simulator",
         "--port", str(port), "--heartbeat", "0.5", "--first-burst-delay", "0.3",
         "--burst-gap", "0.1", "--interval", "60", "--seed", "1", "--state", str(state),
         "--start", "2024-06-21T12:00", "--clock-offset", "-300"],
        cwd=tmp_path, log_path=log,
    )
    try:
        yield port, state, log, process
    finally:
        stop_process(process)


@pytest_twisted.ensureDeferred
async def test_twistd_lxp_simulator_over_real_tcp(twistd_simulator):
    port, state, log, process = twistd_simulator
    try:
        client = await connect(port)
    except ConnectError:
        pytest.fail(f"simulator never listened (exit {process.poll()}):\n{log.read_text()}")
    await check_the_dongle_conversation(client)
    client.send(lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, DATALOG, INVERTER, 12, 3))
    reply = await client.wait_for(
        lambda frame: isinstance(frame, lxp.ReadReply) and frame.register == 12
    )
    # --clock-offset -300: five minutes behind the simulated time, which started at noon.
    inverter_clock = holding.decode_clock(*reply.values)
    assert START - datetime.timedelta(minutes=5) <= inverter_clock < START
    await disconnect(client)
    assert json.loads(state.read_text())["holding"]["65"] == 42
    text = log.read_text()
    assert f"listening on 127.0.0.1:{port}" in text
    assert "holding register 65 (discharge_power_percent) changed 100 -> 42" in text
    assert "Traceback" not in text
