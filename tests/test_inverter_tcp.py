"""Inverter over TCP: a real endpoint on a memory reactor, and one real-reactor round trip."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from vectors import frame_bytes

from octolux import lxp
from octolux.device.inverter import Inverter

DATALOG = "2222222222"
SERIAL = "5555555555"
WAIT = 10  # seconds any single step of the real-reactor test may take

_case = SynchronousTestCase()


def test_a_refused_connection_is_logged_and_retried_with_backoff():
    reactor = MemoryReactorClock()
    endpoint = TCP4ClientEndpoint(reactor, "192.0.2.5", 8000)
    inverter = Inverter(
        endpoint,
        DATALOG,
        SERIAL,
        clock=reactor,
        retry_policy=lambda attempt: 2.0 * attempt,
        address="192.0.2.5:8000",
    )
    with capturedLogs() as events:
        inverter.startService()
        assert len(reactor.tcpClients) == 1
        factory = reactor.tcpClients[0][2]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        reactor.advance(1.9)
        assert len(reactor.tcpClients) == 1
        reactor.advance(0.1)
        assert len(reactor.tcpClients) == 2
        _case.successResultOf(inverter.stopService())
    lines = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.info]
    assert (
        "inverter: cannot connect to 192.0.2.5:8000: Connection was refused by other side,"
        " retrying in 2.0 s (attempt 1)"
    ) in lines
    assert reactor.getDelayedCalls() == []


class TinyDongle(Protocol):
    """Just enough of a datalogger: answers reads and writes from a register dict."""

    def __init__(self, registers: dict[int, int], received: list, connections: DeferredQueue):
        self.registers = registers
        self.received = received
        self.connections = connections
        self.decoder = lxp.FrameDecoder(lxp.Direction.TO_DONGLE)

    def connectionMade(self):
        # A heartbeat and some line noise first, as a real dongle might send.
        self.transport.write(lxp.build(lxp.Heartbeat(DATALOG)) + b"\x00noise\xa1")
        self.connections.put(self)

    def dataReceived(self, data):
        for frame in self.decoder.feed(data):
            self.received.append(frame)
            if type(frame) is lxp.ReadRequest and frame.function == lxp.DeviceFunction.READ_HOLD:
                wanted = range(frame.register, frame.register + frame.count)
                values = tuple(self.registers.get(r, 0) for r in wanted)
                self.send(lxp.ReadReply(frame.function, DATALOG, SERIAL, frame.register, values))
            elif type(frame) is lxp.ReadRequest:
                # Inputs: the captured register-0 burst, as a broadcast would carry it.
                self.transport.write(frame_bytes("read_input_reply_reg0"))
            elif type(frame) is lxp.WriteSingleRequest:
                self.registers[frame.register] = frame.value
                self.send(lxp.WriteSingleReply(DATALOG, SERIAL, frame.register, frame.value))

    def send(self, frame):
        self.transport.write(lxp.build(frame))


class ConnectionWatcher:
    """An observer whose connection changes a test can await one by one."""

    def __init__(self):
        self.changes = DeferredQueue()
        self.inputs = DeferredQueue()

    def inputs_received(self, blocks):
        self.inputs.put(blocks)

    def registers_received(self, registers):
        pass

    def connection_changed(self, connected):
        self.changes.put(connected)


@pytest_twisted.ensureDeferred
async def test_round_trips_and_reconnection_against_a_real_tcp_dongle():
    from twisted.internet import reactor

    registers = {21: 0x0001, 65: 100}
    received: list = []
    connections = DeferredQueue()
    factory = Factory.forProtocol(lambda: TinyDongle(registers, received, connections))
    server = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    port = server.getHost().port

    watcher = ConnectionWatcher()
    inverter = Inverter(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        DATALOG,
        SERIAL,
        clock=reactor,
        heartbeat_echo=True,
        command_timeout=WAIT,
        retry_policy=lambda attempt: 0.05,
        name="real",
    )
    inverter.add_observer(watcher)
    inverter.startService()
    try:
        assert await watcher.changes.get().addTimeout(WAIT, reactor) is True
        dongle = await connections.get().addTimeout(WAIT, reactor)

        assert await inverter.read_hold(21).addTimeout(WAIT, reactor) == {21: 0x0001}
        assert await inverter.set_bit(21, 7, True).addTimeout(WAIT, reactor) == 0x0081
        assert registers[21] == 0x0081
        blocks = await inverter.read_input(0, 40).addTimeout(WAIT, reactor)
        assert set(blocks) == {1}
        assert await watcher.inputs.get().addTimeout(WAIT, reactor) == blocks
        assert inverter.latest_inputs.items() >= blocks[1].items()
        # The dongle's heartbeat came before the read_hold reply (TCP keeps
        # order), so its echo went out before the requests that followed.
        assert lxp.Heartbeat(DATALOG) in received[:2]

        # The dongle drops us; ClientService reconnects and requests work again.
        dongle.transport.loseConnection()
        assert await watcher.changes.get().addTimeout(WAIT, reactor) is False
        assert await watcher.changes.get().addTimeout(WAIT, reactor) is True
        await connections.get().addTimeout(WAIT, reactor)
        assert await inverter.write_single(65, 50).addTimeout(WAIT, reactor) == 50
        assert inverter.registers[65] == 50
    finally:
        await inverter.stopService().addTimeout(WAIT, reactor)
        await server.stopListening()
    assert not inverter.connected
