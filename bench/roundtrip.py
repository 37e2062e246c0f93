"""Round trip: how long a command takes through the bridge, against the broker alone.

Starts, as real subprocesses on 127.0.0.1, a private mosquitto with
``set_tcp_nodelay true``, one ``twistd lxp-simulator`` dongle and ``twistd
octolux`` serving it. A paho client here (Nagle off) publishes
``cmd/discharge_pct`` (QoS 1, a new value each time, so that every command
writes a register and its ``hold/65`` and ``settings`` go out too) and waits
for ``result/discharge_pct``, one command at a time. The baseline is the same
client against an echo: a paho client in its own process that answers each
``cmd/<name>`` with ``result/<name> OK`` at once, so the broker's two hops are
in both and the difference is what the bridge and the simulator add.

    .venv/bin/python bench/roundtrip.py                    # 1000 round trips each
    .venv/bin/python bench/roundtrip.py --commands 200 --keep

Prints median, p90, p99 and the maximum of both, and the difference. Prints
figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from fleet import (
    HOST,
    POLL,
    Child,
    no_delay,
    percentiles,
    start_mosquitto,
    twistd,
    wait_for_dongles,
)
from paho.mqtt.enums import CallbackAPIVersion

COMMAND = "discharge_pct"
TIMEOUT = 15.0  # seconds for one round trip; the bridge's own limit is 10 s
READY_TIMEOUT = 60.0  # seconds for the bridge to have read the inverter's settings


def mqtt_client(name: str) -> paho.Client:
    """A paho client with Nagle off (a command right after a PUBACK must not wait)."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"{name}-{os.getpid()}", protocol=paho.MQTTv311)
    client.on_socket_open = no_delay
    return client


class Commander:
    """Publishes commands and waits for each one's result; waits for retained settings too."""

    def __init__(self, port: int):
        self._lock = threading.Condition()
        self._results: list[tuple[float, bytes]] = []
        self._settings: dict[str, bytes] = {}
        self.client = mqtt_client("roundtrip")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(HOST, port)
        self.client.loop_start()
        self.client.subscribe([("+/result/#", 1), ("+/settings", 0)])
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK from the broker")
        self.slowest: list[tuple[float, float, str]] = []  # (seconds, time.time() sent, prefix)

    def _on_message(self, client, userdata, message) -> None:
        now = time.perf_counter()
        prefix, _, kind = message.topic.partition("/")
        with self._lock:
            if kind == "settings":
                self._settings[prefix] = message.payload
            else:
                self._results.append((now, message.payload))
            self._lock.notify_all()

    def wait_for_settings(self, prefix: str, timeout: float, *alive: Child) -> None:
        """Until ``<prefix>/settings`` has the command's setting (the bridge has read it)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while COMMAND.encode() not in self._settings.get(prefix, b""):
                for child in alive:
                    child.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no {prefix}/settings with {COMMAND} in {timeout:g} s")
                self._lock.wait(POLL)
        # Only the results from here on, as a client waiting for them would have.
        self.client.unsubscribe("+/settings")

    def round_trips(self, prefix: str, count: int, gap: float) -> list[float]:
        """``count`` commands to ``<prefix>/cmd/...``, one at a time; each one's seconds."""
        times = []
        for k in range(count):
            with self._lock:
                self._results.clear()
            sent, wall = time.perf_counter(), time.time()
            self.client.publish(f"{prefix}/cmd/{COMMAND}", str(10 + k % 90), qos=1)
            with self._lock:
                if not self._lock.wait_for(lambda: self._results, TIMEOUT):
                    raise RuntimeError(f"no result {k} within {TIMEOUT:g} s")
                arrived, result = self._results[0]
            if result != b"OK":
                raise RuntimeError(f"command {k}: {result!r}")
            times.append(arrived - sent)
            self.slowest = sorted([*self.slowest, (arrived - sent, wall, prefix)])[-5:]
            if gap:
                time.sleep(gap)
        return times

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()


def echo(port: int, prefix: str) -> None:
    """The baseline's far end: ``result/<name> OK`` for each ``cmd/<name>``, at once."""
    client = mqtt_client("roundtrip-echo")

    def answer(client, userdata, message) -> None:
        name = message.topic.split("/cmd/", 1)[1]
        client.publish(f"{prefix}/result/{name}", "OK", qos=1)

    client.on_message = answer
    client.on_connect = lambda client, *_: client.subscribe(f"{prefix}/cmd/#", 1)
    client.connect(HOST, port)
    client.loop_forever()


def row(label: str, figures: tuple[float, ...]) -> str:
    """One line of the table."""
    return label.ljust(34) + "".join(f"{value:9.2f}" for value in figures)


def main(argv: list[str] | None = None) -> int:
    """Start broker, simulator, bridge and echo; measure both; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000, help="round trips of each kind")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds between a result and the next command")
    parser.add_argument("--interval", type=float, default=120.0,
                        help="the simulator's seconds between input broadcasts")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    parser.add_argument("--echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo is not None:
        echo(args.echo, "echo")
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="octolux-roundtrip-"))
    children: list[Child] = []
    commander = None
    keep = args.keep
    try:
        broker, port = start_mosquitto(workdir, nodelay="true")
        children.append(broker)
        simulator = Child.spawn("simulator", twistd() + [
            "-n", "--pidfile=", "-l", "-", "lxp-simulator", "--port", "0", "--seed", "1",
            "--interval", f"{args.interval:g}",
        ], workdir)
        children.append(simulator)
        ((datalog, serial, dongle_port),) = wait_for_dongles(simulator, 1, 30)
        config = workdir / "config.ini"
        config.write_text(
            f"[mqtt]\nuri = mqtt://{HOST}:{port}\nprefix = bridge\n\n"
            f"[server]\nlisten_host = {HOST}\nport = 0\n\n"
            f"[lxp]\nhost = {HOST}\nport = {dongle_port}\nserial = {serial}\n"
            f"datalog = {datalog}\n"
        )
        bridge = Child.spawn("bridge", twistd() + [
            "-n", "--pidfile=", "-l", "-", "octolux", "-c", str(config)], workdir)
        children.append(bridge)
        echoing = Child.spawn("echo", [sys.executable, __file__, "--echo", str(port)], workdir)
        children.append(echoing)
        commander = Commander(port)
        commander.wait_for_settings("bridge", READY_TIMEOUT, bridge, simulator)
        time.sleep(2.0)  # the start-up reads' last publishes, then quiet
        commander.round_trips("echo", 20, args.gap)  # both paths warmed up
        commander.round_trips("bridge", 20, args.gap)
        baseline = commander.round_trips("echo", args.commands, args.gap)
        measured = commander.round_trips("bridge", args.commands, args.gap)
        for child in children:
            child.check_alive()
    except RuntimeError as error:
        keep = True
        print(f"benchmark failed: {error}")
        return 1
    finally:
        if commander is not None:
            commander.close()
        for child in reversed(children):
            child.stop()
        if keep:
            print(f"logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir)
    base, through = percentiles(baseline), percentiles(measured)
    print(f"{args.commands} round trips each, cmd/{COMMAND} QoS 1, mosquitto set_tcp_nodelay"
          f" true, gap {args.gap:g} s, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(row("ms", ()) + "".join(f"{label:>9}" for label in ("median", "p90", "p99", "max")))
    print(row("broker and an echo (baseline)", base))
    print(row("bridge and simulator", through))
    print(row("added by bridge and simulator",
              tuple(t - b for t, b in zip(through, base, strict=True))))
    print("slowest: " + ", ".join(
        f"{prefix} {1000 * seconds:.1f} ms at {wall:.6f}"
        for seconds, wall, prefix in reversed(commander.slowest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
