"""Server mode end to end: simulated dongles dial the bridge, over real TCP, with a real mosquitto.

The bridge is the whole ``build_service`` in this process; the dongles are
``simulator.dialer`` dongles; the vendor's server is ``simulator.vendor``'s fake.
"""

from __future__ import annotations

import itertools
import json

import attrs
import pytest_twisted
from e2e_support import EventStream, MqttProbe, get, poll_until
from support import free_port
from twisted.internet import protocol, reactor
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.client import Agent

from octolux import lxp
from octolux.config.ini import Config, InverterConfig, ListenerConfig, MqttConfig, ServerConfig
from octolux.device.inverter import Inverter
from octolux.device.listener import FLOOD_BYTES, DongleListener
from octolux.service.tap import build_service
from octolux.web.api import ApiService
from simulator.dialer import start_dialing_simulator
from simulator.vendor import FakeVendorServer

TIMEOUT = 10.0
_prefixes = itertools.count()
FAST = {"heartbeat": 0.5, "interval": 1.0, "first_burst_delay": 0.1, "burst_gap": 0.05}


def retry_quickly(attempt: int) -> float:
    return 0.2


class Bridge:
    """``build_service`` listening on a free port, and a probe on the broker."""

    def __init__(self, mosquitto, sections: list[dict]):
        # Port 0, read back once listening: a port found free beforehand can be taken
        # by another process's outgoing connection before the bridge binds it.
        self.port = None
        self.prefix = f"server-{next(_prefixes)}"
        inverters = tuple(
            InverterConfig(**{"host": None, "serial": None, "datalog": None,
                              "listen": ("127.0.0.1", 0), "command_timeout": 5.0,
                              **section})
            for section in sections
        )
        self.config = Config(
            inverters=inverters,
            server=ServerConfig(port=0),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=self.prefix),
        )
        self.service = build_service(self.config, reactor)
        self.inverters = {s.name: s for s in self.service if hasattr(s, "read_hold")}
        self.listener = next(s for s in self.service if isinstance(s, DongleListener))
        self.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{self.prefix}/#"])
        self.dongles = []
        self.events: list[dict] = []

    async def start(self):
        globalLogPublisher.addObserver(self.events.append)
        await self.probe.ready(reactor)
        self.service.startService()
        self.port = self.listener.port

    async def stop(self):
        globalLogPublisher.removeObserver(self.events.append)
        for dongle in self.dongles:
            await dongle.stop().addTimeout(5, reactor)
        await self.service.stopService().addTimeout(10, reactor)
        await self.probe.close(reactor)

    def dial(self, **settings):
        dongle = start_dialing_simulator(reactor, "127.0.0.1", self.port,
                                         retry_policy=retry_quickly, **{**FAST, **settings})
        self.dongles.append(dongle)
        return dongle

    def topic(self, rest: str, name: str | None = None) -> str:
        return f"{self.prefix}/{name}/{rest}" if name else f"{self.prefix}/{rest}"

    async def until(self, condition, what: str, timeout: float = TIMEOUT):
        return await self.probe.until(reactor, condition, timeout, what)

    async def command(self, name: str, payload: bytes, inverter: str | None = None) -> str:
        result_topic = self.topic(f"result/{name}", inverter)
        before = len(self.probe.on(result_topic))
        self.probe.publish(self.topic(f"cmd/{name}", inverter), payload)
        return (await self.probe.next_on(reactor, result_topic, after=before)).text

    def listener_connection(self):
        (connection,) = self.listener.connections
        return connection

    def logged(self, text: str) -> list[str]:
        return [line for line in map(formatEvent, self.events) if text in line]


async def bridge(mosquitto, sections):
    rig = Bridge(mosquitto, sections)
    await rig.start()
    return rig


@pytest_twisted.ensureDeferred
async def test_one_dongle_dials_in_inputs_arrive_and_a_command_round_trips(mosquitto):
    rig = await bridge(mosquitto, [{"name": "inverter", "datalog": "SIMDL00001",
                                    "serial": "SIMINV0001"}])
    try:
        dongle = rig.dial(seed=1)
        message = await rig.probe.next_on(reactor, rig.topic("inputs/1"), timeout=TIMEOUT)
        assert "soc" in json.loads(message.payload)
        assert await rig.command("discharge_pct", b"50") == "OK"
        assert dongle.plant.holding[65] == 50
        # The bridge answers the heartbeats: the dongle keeps broadcasting.
        assert dongle.factory.heartbeat_answers >= 1
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_several_dongles_on_one_listener_each_reach_their_own_section(mosquitto):
    sections = [{"name": f"inv{n}", "datalog": f"SIMDL0000{n}", "serial": f"SIMINV000{n}"}
                for n in (1, 2, 3)]
    rig = await bridge(mosquitto, sections)
    try:
        dongles = [rig.dial(datalog=f"SIMDL0000{n}", inverter=f"SIMINV000{n}", seed=n)
                   for n in (1, 2, 3)]
        for n in (1, 2, 3):
            await rig.probe.next_on(reactor, rig.topic("inputs/1", f"inv{n}"), timeout=TIMEOUT)
        assert await rig.command("charge_pct", b"33", "inv2") == "OK"
        assert dongles[1].plant.holding[64] == 33
        assert [d.plant.holding[64] == 33 for d in dongles] == [False, True, False]
        assert len(rig.listener.connections) == 3
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_config_without_serials_learns_and_logs_them(mosquitto):
    rig = await bridge(mosquitto, [{"name": "inverter"}])
    try:
        dongle = rig.dial(datalog="BA55555555", inverter="IV55555555", seed=2)
        await rig.probe.next_on(reactor, rig.topic("inputs/1"), timeout=TIMEOUT)
        assert await rig.command("charge_pct", b"44") == "OK"
        assert dongle.plant.holding[64] == 44
        assert len(rig.logged("put `datalog = BA55555555` in")) == 1
        assert len(rig.logged("put `serial = IV55555555` in")) == 1
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_an_unknown_datalog_is_refused(mosquitto):
    rig = await bridge(mosquitto, [{"name": "inverter", "datalog": "SIMDL00001"}])
    try:
        stranger = rig.dial(datalog="XX00000001", seed=3)
        await poll_until(reactor, lambda: rig.logged("refusing a datalogger with datalog"
                                                     " serial 'XX00000001'"),
                         TIMEOUT, "the refusal")
        # It keeps trying (as a real dongle would) and is refused each time, logged once.
        await poll_until(reactor, lambda: len(rig.logged("dongle XX00000001: client")) >= 4,
                         TIMEOUT, "two refusals (two connections and two disconnections)")
        assert len(rig.logged("refusing a datalogger")) == 1
        assert stranger.factory.heartbeat_answers == 0
        assert not rig.inverters["inverter"].connected
        assert rig.probe.on(rig.topic("inputs/1")) == []
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_garbage_and_floods_on_the_listener_cost_only_their_connection(mosquitto):
    rig = await bridge(mosquitto, [{"name": "inverter", "datalog": "SIMDL00001",
                                    "serial": "SIMINV0001"}])
    try:
        rig.dial(seed=4)
        await rig.probe.next_on(reactor, rig.topic("inputs/1"), timeout=TIMEOUT)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", rig.port)
        garbage = await endpoint.connect(protocol.Factory.forProtocol(_Closed))
        garbage.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
        await garbage.closed.addTimeout(TIMEOUT, reactor)
        flood = await endpoint.connect(protocol.Factory.forProtocol(_Closed))
        heartbeat = lxp.build(lxp.Heartbeat("SIMDL00009"))
        flood.transport.write(heartbeat * (FLOOD_BYTES // len(heartbeat) + 10))
        await flood.closed.addTimeout(TIMEOUT, reactor)
        # The real dongle never noticed.
        assert rig.inverters["inverter"].connected
        before = len(rig.probe.on(rig.topic("inputs/1")))
        await rig.probe.next_on(reactor, rig.topic("inputs/1"), after=before, timeout=TIMEOUT)
        assert await rig.command("charge_pct", b"55") == "OK"
        assert rig.logged("no LXP frame in its first")
    finally:
        await rig.stop()


class _Closed(protocol.Protocol):
    def __init__(self):
        from twisted.internet import defer

        self.closed = defer.Deferred()

    def connectionLost(self, reason):
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_the_relay_passes_frames_both_ways_and_the_cloud_answers_heartbeats(mosquitto):
    vendor = await FakeVendorServer().start(reactor)
    rig = await bridge(mosquitto, [{"name": "inverter", "datalog": "SIMDL00001",
                                    "serial": "SIMINV0001",
                                    "cloud": ("127.0.0.1", vendor.port)}])
    try:
        dongle = rig.dial(seed=5)
        await vendor.when_frame(lambda f: isinstance(f, lxp.ReadReply)).addTimeout(
            TIMEOUT, reactor)
        cloud = await vendor.when_connected()
        answered_by_bridge = rig.listener_connection().heartbeats_answered
        await poll_until(reactor, lambda: vendor.heartbeats_answered >= 2, TIMEOUT,
                         "the vendor answering heartbeats")
        # Once the cloud is there it answers; the bridge does not answer as well.
        assert rig.listener_connection().heartbeats_answered == answered_by_bridge
        # The vendor's app reads a register through its server: the request reaches the
        # dongle untouched and the reply comes back to the cloud.
        cloud.send(lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, "SIMDL00001", "SIMINV0001",
                                   64, 1))
        reply = await vendor.when_frame(
            lambda f: isinstance(f, lxp.ReadReply) and f.register == 64).addTimeout(
            TIMEOUT, reactor)
        assert reply.values[0] == dongle.plant.holding[64]
        # Meanwhile the bridge's own commands work, between the cloud's frames.
        assert await rig.command("charge_pct", b"66") == "OK"
        assert dongle.plant.holding[64] == 66
        # Every byte the cloud received is whole frames from the dongle.
        assert lxp.FrameDecoder(lxp.Direction.FROM_DONGLE).feed(bytes(cloud.received))
        assert all(not isinstance(i, lxp.BadFrame)
                   for i in lxp.FrameDecoder(lxp.Direction.FROM_DONGLE).feed(bytes(cloud.received)))
    finally:
        await rig.stop()
        await vendor.stop()


@pytest_twisted.ensureDeferred
async def test_a_vendor_server_that_is_down_changes_nothing_locally(mosquitto):
    down = free_port()  # nobody listens here
    rig = await bridge(mosquitto, [{"name": "inverter", "datalog": "SIMDL00001",
                                    "serial": "SIMINV0001", "cloud": ("127.0.0.1", down)}])
    try:
        dongle = rig.dial(seed=6)
        await rig.probe.next_on(reactor, rig.topic("inputs/1"), timeout=TIMEOUT)
        assert await rig.command("discharge_pct", b"70") == "OK"
        assert dongle.plant.holding[65] == 70
        # The bridge answers the heartbeats while the cloud cannot: data keeps coming.
        await poll_until(reactor, lambda: dongle.factory.heartbeat_answers >= 3, TIMEOUT,
                         "heartbeats answered")
        before = len(rig.probe.on(rig.topic("inputs/1")))
        await rig.probe.next_on(reactor, rig.topic("inputs/1"), after=before, timeout=TIMEOUT)
        assert rig.logged("the vendor's server 127.0.0.1")
        # The vendor's server comes back: the relay redials it and the cloud takes over.
        vendor = await FakeVendorServer().start(reactor, port=down)
        try:
            await vendor.when_frame(lambda f: isinstance(f, lxp.ReadReply)).addTimeout(
                TIMEOUT, reactor)
            await poll_until(reactor, lambda: vendor.heartbeats_answered >= 1, TIMEOUT,
                             "the vendor answering heartbeats")
            assert rig.logged("relaying to the vendor's server 127.0.0.1")
        finally:
            await vendor.stop()
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_accept_unknown_takes_a_dongle_no_section_names(mosquitto):
    rig = Bridge(mosquitto, [{"name": "inverter", "datalog": "SIMDL00001"}])
    rig.config = attrs.evolve(rig.config, listener=ListenerConfig(accept_unknown=True))
    rig.service = build_service(rig.config, reactor)
    rig.listener = next(s for s in rig.service if isinstance(s, DongleListener))
    await rig.start()
    api = f"http://127.0.0.1:{next(s for s in rig.service if isinstance(s, ApiService)).port}"
    events = EventStream()
    (await Agent(reactor).request(b"GET", f"{api}/api/events".encode()).addTimeout(
        TIMEOUT, reactor)).deliverBody(events)
    try:
        dongle = rig.dial(datalog="BA77777777", inverter="IV77777777", seed=7)
        message = await rig.probe.next_on(reactor, rig.topic("inputs/1", "BA77777777"),
                                          timeout=TIMEOUT)
        assert "soc" in json.loads(message.payload)
        assert await rig.command("charge_pct", b"21", "BA77777777") == "OK"
        assert dongle.plant.holding[64] == 21
        assert rig.logged("accepted as 'BA77777777'")
        # A first-class inverter in the HTTP API and on the page too.
        _, body = await get(reactor, f"{api}/api/BA77777777/inputs")
        assert "soc" in json.loads(body)
        _, body = await get(reactor, f"{api}/api/BA77777777/registers")
        assert json.loads(body)["64"] == 21
        _, body = await get(reactor, f"{api}/api/state")
        (shown,) = [i for i in json.loads(body)["inverters"] if i["name"] == "BA77777777"]
        assert shown["api"] == "/api/BA77777777" and shown["connected"] is True
        assert shown["settings"]["charge_pct"] == 21
        # The page's event stream, opened before the dongle dialled in, tells of it.
        await poll_until(reactor, lambda: [e for kind, e in events.events()
                                           if kind == "inverter" and e["name"] == "BA77777777"
                                           and e["inputs"]],
                         TIMEOUT, "an event for the accepted inverter")
        # The configured inverter is still /api/inputs (no dongle dialled for it).
        _, body = await get(reactor, f"{api}/api/inputs")
        assert json.loads(body) == {}
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_bridge_that_dials_learns_the_serials_too():
    from simulator.dongle import start_simulator

    dongle = await start_simulator(reactor, datalog="BA88888888", inverter="IV88888888",
                                   **FAST, seed=8).addTimeout(5, reactor)
    inverter = Inverter(HostnameEndpoint(reactor, "127.0.0.1", dongle.port), None, None,
                        clock=reactor, retry_policy=retry_quickly)
    inverter.startService()
    try:
        assert await inverter.read_hold(21).addTimeout(TIMEOUT, reactor) == {
            21: dongle.plant.holding[21]}
        assert (inverter.datalog, inverter.serial) == ("BA88888888", "IV88888888")
    finally:
        await inverter.stopService()
        await dongle.stop()


@pytest_twisted.ensureDeferred
async def test_the_serial_is_asked_for_rather_than_awaited_from_a_broadcast(
        mosquitto, monkeypatch):
    monkeypatch.setattr("octolux.device.serials.SERIAL_QUESTION_DELAY", 0.2)
    rig = await bridge(mosquitto, [{"name": "inverter", "datalog": "BA66666666"}])
    try:
        # A dongle whose first broadcast is an hour away.
        dongle = rig.dial(datalog="BA66666666", inverter="IV66666666", seed=9,
                          interval=3600.0, first_burst_delay=3600.0)
        # The holding registers are read once the serial is known (and the bridge
        # is on the broker by then, subscribed to its commands).
        await rig.probe.next_on(reactor, rig.topic("hold/64"), timeout=TIMEOUT)
        assert await rig.command("charge_pct", b"12") == "OK"
        assert dongle.plant.holding[64] == 12
        assert rig.inverters["inverter"].serial == "IV66666666"
        assert rig.logged("asking for input registers 80-119")
        assert len(rig.logged("put `serial = IV66666666` in")) == 1
    finally:
        await rig.stop()
