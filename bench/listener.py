"""Server mode's listener: connections per second, and what a flood costs the others.

Over real loopback TCP, in one process (client and server share the CPU):

1. Connections per second: each client connects, sends a heartbeat, waits for
   the answer and closes, ``--concurrency`` at a time, for ``--seconds``:
   against the ``DongleListener`` (identification, handover to the
   ``Inverter``, answer) and against a bare Twisted protocol that answers the
   heartbeat and nothing else (the baseline, same run).
2. A flood: the heartbeat round trip of one identified dongle (median and 99th
   percentile of ``--pings``) with nothing else going on, then while
   ``--flooders`` connections send garbage (and valid frames) as fast as they
   can and are closed and reopened, with how many flood connections the
   listener closed.

    .venv/bin/python bench/listener.py [--seconds 3] [--concurrency 20] [--flooders 4]

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import statistics
import time

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from octolux import lxp
from octolux.device.inverter import Inverter
from octolux.device.listener import DongleListener, Route


def datalog(index: int) -> str:
    return f"BA{index:08d}"


def heartbeat(index: int) -> bytes:
    return lxp.build(lxp.Heartbeat(datalog(index)))


class Pinger(protocol.Protocol):
    """Sends heartbeats and fires a Deferred on each answer."""

    def __init__(self, index: int):
        self.heartbeat = heartbeat(index)
        self.decoder = lxp.FrameDecoder(lxp.Direction.TO_DONGLE)  # it plays a dongle
        self.waiting: defer.Deferred | None = None
        self.closed = defer.Deferred()

    def ping(self) -> defer.Deferred:
        self.waiting = defer.Deferred()
        self.transport.write(self.heartbeat)
        return self.waiting

    def dataReceived(self, data):
        for item in self.decoder.feed(data):
            if isinstance(item, lxp.Heartbeat) and self.waiting is not None:
                waiting, self.waiting = self.waiting, None
                waiting.callback(None)

    def connectionLost(self, reason):
        self.closed.callback(None)


class Answerer(protocol.Protocol):
    """The baseline server: answers every heartbeat, knows nothing else."""

    def __init__(self):
        self.decoder = lxp.FrameDecoder(lxp.Direction.FROM_DONGLE)

    def dataReceived(self, data):
        for item in self.decoder.feed(data):
            if isinstance(item, lxp.Heartbeat):
                self.transport.write(lxp.build(lxp.Heartbeat(item.datalog)))


class Flooder(protocol.Protocol):
    """Writes as fast as the socket takes it until the listener closes the connection."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.closed = defer.Deferred()
        self.running = True

    def connectionMade(self):
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self._paused = False
        while not self._paused and self.running:
            self.transport.write(self.payload)

    def pauseProducing(self):
        self._paused = True

    def stopProducing(self):
        self.running = False

    def connectionLost(self, reason):
        self.running = False
        self.closed.callback(None)


async def connections_per_second(port: int, seconds: float, concurrency: int) -> float:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(index: int):
        # Each worker is its own dongle: a dongle's new connection replaces its old one.
        nonlocal done
        while time.monotonic() < deadline:
            client = await endpoint.connect(protocol.Factory.forProtocol(lambda: Pinger(index)))
            await client.ping()
            client.transport.loseConnection()
            await client.closed
            done += 1

    started = time.monotonic()
    await defer.gatherResults([defer.ensureDeferred(worker(n)) for n in range(concurrency)])
    return done / (time.monotonic() - started)


async def ping_times(client: Pinger, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await client.ping()
        times.append(time.perf_counter() - started)
        await task.deferLater(reactor, 0.002, lambda: None)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def main(options) -> None:
    count = max(options.concurrency, 2)
    inverters = [Inverter(None, datalog(n), f"IN{n:08d}", clock=reactor, name=f"bench{n}")
                 for n in range(count)]
    for inverter in inverters:
        inverter.startService()
    listener = DongleListener(
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), "127.0.0.1:0",
        [Route(inverter) for inverter in inverters], clock=reactor,
        max_connections=count + options.flooders + 10,
    )
    listener.startService()
    baseline = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(Answerer))

    print(f"connections per second ({options.concurrency} at a time, {options.seconds:g} s each)")
    bare = await connections_per_second(baseline.getHost().port, options.seconds,
                                        options.concurrency)
    ours = await connections_per_second(listener.port, options.seconds, options.concurrency)
    print(f"  bare heartbeat answerer: {bare:8.0f} /s", flush=True)
    print(f"  DongleListener:          {ours:8.0f} /s   ({ours / bare:.2f} x the baseline)")

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.port)
    dongle = await endpoint.connect(protocol.Factory.forProtocol(lambda: Pinger(0)))
    await dongle.ping()
    quiet = summary(await ping_times(dongle, options.pings))

    garbage = bytes(range(1, 0xA0)) * 64
    valid = heartbeat(1) * 200  # another known dongle gone mad (or someone spoofing it)
    closed_before = 0
    flooding = True
    flood_connections = 0

    async def flood(payload: bytes):
        nonlocal flood_connections
        while flooding:
            flooder = await endpoint.connect(protocol.Factory.forProtocol(lambda: Flooder(payload)))
            flood_connections += 1
            await flooder.closed

    floods = [defer.ensureDeferred(flood(garbage if n % 2 else valid))
              for n in range(options.flooders)]
    await task.deferLater(reactor, 0.2, lambda: None)
    loud = summary(await ping_times(dongle, options.pings))
    flooding = False
    await defer.DeferredList(floods)
    closed_before += flood_connections
    print(f"heartbeat round trip of one dongle ({options.pings} pings), milliseconds")
    print(f"  quiet:                     median {quiet[0]:6.3f}  p99 {quiet[1]:6.3f}")
    print(f"  {options.flooders} flooders:{'':17}median {loud[0]:6.3f}  p99 {loud[1]:6.3f}"
          f"   (median {loud[0] / quiet[0]:.1f} x quiet)")
    print(f"  flood connections opened and closed by the listener: {closed_before};"
          f" the dongle stayed connected: {inverters[0].connected}")
    dongle.transport.loseConnection()
    await listener.stopService()
    await baseline.stopListening()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--pings", type=int, default=300)
    options = parser.parse_args()
    task.react(lambda _reactor: defer.ensureDeferred(main(options)))
