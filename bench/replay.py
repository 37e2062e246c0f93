"""Real dongles replayed: what of their captured frames the bridge parses and publishes.

Sends every frame of tests/data/dongles.json that a dongle sent, exactly as
captured, from fake dongles (real TCP servers on 127.0.0.1, one per source and
datalog serial: tests/replay_support.py) to the whole bridge in this process
(build_service: real Inverter, real paho, no serial configured) and a private
mosquitto, waits until every value the bridge should publish has arrived (or
``--timeout`` passes), then prints per source:

- frames: the vectors sent (a read of two glued frames counts once),
- parsed: the frames the bridge's decoder delivered,
- broken: the bad frames it reported (broken as published: stale CRCs,
  truncations; one broken vector may be reported as more than one piece),
- MQTT: register values that reached ``hold/<n>`` or ``inputs/<n>`` with the
  captured value / register values the frames carry (an input register of no
  ``inputs/<n>`` block has no topic),
- raw: input registers ``/api/<name>/registers?kind=input`` serves as captured
  / input registers sent.

    .venv/bin/python bench/replay.py [--timeout 30] [--keep]

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

from e2e_support import MqttProbe, get, poll_until  # noqa: E402
from fleet import HOST, start_mosquitto  # noqa: E402
from replay_support import FakeDongle, captures  # noqa: E402
from twisted.internet import task  # noqa: E402

from octolux.config.ini import Config, InverterConfig, MqttConfig, ServerConfig  # noqa: E402
from octolux.service.tap import build_service  # noqa: E402

PREFIX = "replay"
QUIET = 1.0  # seconds without a new frame counted before the figures are read


async def replay(reactor, broker_port: int, timeout: float) -> None:
    """Run the replay against the broker on ``broker_port``; print the table."""
    dongles = [FakeDongle(reactor, capture) for capture in captures()]
    ports = [await dongle.listen() for dongle in dongles]
    names = [f"dongle{index}" for index in range(len(dongles))]
    config = Config(
        inverters=tuple(InverterConfig(name=name, host=HOST, port=port, serial=None, datalog=None)
                        for name, port in zip(names, ports, strict=True)),
        server=ServerConfig(port=0),
        mqtt=MqttConfig(host=HOST, port=broker_port, prefix=PREFIX),
    )
    service = build_service(config, reactor)
    inverters = {s.name: s for s in service if s.name in names}
    api = [s for s in service if hasattr(s, "site")][0]
    probe = MqttProbe(HOST, broker_port, [f"{PREFIX}/#"])
    await probe.ready(reactor)

    def seen(name: str):
        payloads: dict[str, set[str]] = collections.defaultdict(set)
        for message in probe.messages:
            payloads[message.topic].add(message.text)
        return lambda rest: payloads.get(f"{PREFIX}/{name}/{rest}", set())

    def missing() -> int:
        return sum(len(d.capture.missing(seen(n))) for n, d in zip(names, dongles, strict=True))

    def counts() -> tuple:
        """What the bridge's decoders have counted, and what the dongles have sent."""
        return tuple(
            (dongle.writes_done, p.decoder.frames_decoded, sum(p.decoder.rejected.values()))
            if (p := inverters[name].protocol) is not None else None
            for name, dongle in zip(names, dongles, strict=True)
        )

    async def settled() -> None:
        """Every capture sent, and the bridge's counts still for QUIET seconds."""
        last, since = None, reactor.seconds()
        while not all(dongle.replayed for dongle in dongles) or reactor.seconds() < since + QUIET:
            await task.deferLater(reactor, 0.05, lambda: None)
            if counts() != last:
                last, since = counts(), reactor.seconds()

    begun = time.monotonic()
    service.startService()
    try:
        try:
            await poll_until(reactor, lambda: missing() == 0, timeout, "every value",
                             lambda: f"{missing()} still missing")
            waited = f"every value arrived within {time.monotonic() - begun:.2f} s"
        except AssertionError as error:
            waited = str(error)
        await settled()
        rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for name, dongle in zip(names, dongles, strict=True):
            capture = dongle.capture
            row = rows[capture.source]
            protocol = inverters[name].protocol
            row["dongles"] += 1
            row["frames"] += len(capture.names)
            if protocol is not None:
                row["parsed"] += protocol.decoder.frames_decoded
                row["broken"] += sum(protocol.decoder.rejected.values())
            row["reached"] += capture.values_reached(seen(name))
            row["sent"] += capture.values_sent()
            url = f"http://{HOST}:{api.port}/api/{name}/registers?kind=input"
            served = json.loads((await get(reactor, url))[1])
            expected = capture.input_registers()
            row["raw"] += sum(served.get(str(r)) == v for r, v in expected.items())
            row["raw_sent"] += len(expected)
        print_table(rows)
        print(waited)
    finally:
        await service.stopService()
        for dongle in dongles:
            await dongle.stop()
        await probe.close(reactor)


def print_table(rows: dict[str, collections.Counter]) -> None:
    """One line per source, and the totals."""
    header = f"{'source':10} {'dongles':>7} {'frames':>6} {'parsed':>6} {'broken':>6}" \
             f" {'MQTT / sent':>13} {'raw / inputs':>13}"
    print(header)
    total: collections.Counter = collections.Counter()
    for source, row in sorted(rows.items()):
        total.update(row)
        print(_line(source, row))
    print("-" * len(header))
    print(_line("total", total))


def _line(source: str, row: collections.Counter) -> str:
    return (f"{source:10} {row['dongles']:>7} {row['frames']:>6} {row['parsed']:>6}"
            f" {row['broken']:>6} {row['reached']:>6} / {row['sent']:<4}"
            f" {row['raw']:>6} / {row['raw_sent']:<4}")


def main() -> None:
    """Start mosquitto, replay, stop mosquitto."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for every value (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    arguments = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="octolux-replay-"))
    broker, port = start_mosquitto(workdir)
    try:
        task.react(lambda reactor: task.ensureDeferred(replay(reactor, port, arguments.timeout)))
    finally:
        broker.stop()
        if arguments.keep:
            print(f"kept {workdir}")


if __name__ == "__main__":
    main()
