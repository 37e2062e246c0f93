"""paho's cost per message published one at a time and in batches, as the bridge hands them.

Starts a private mosquitto (``set_tcp_nodelay true``) on 127.0.0.1 and one
paho client in this process with its network thread (``loop_start``), as
``MqttService`` runs it. The main thread publishes ``--rate`` messages a second
(an input block's size, QoS 1 and then QoS 0) in batches of 1, 5, 25 and 100,
and waits for paho to finish them all; CPU is this process's, both threads.

    .venv/bin/python bench/paho_batches.py                # 250 a second, 8 s per line
    .venv/bin/python bench/paho_batches.py --rate 1000 --seconds 4

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from fleet import HOST, load_average, start_mosquitto
from paho.mqtt.enums import CallbackAPIVersion

# An inputs/1 message's size (~500 bytes of JSON).
PAYLOAD = b'{"status":32,"v_bat":49.4,"soc":53,"p_pv":550,"p_charge":114,"v_acr":247.3}' * 7
BATCHES = (1, 5, 25, 100)


def cpu_seconds() -> float:
    """User + system CPU of this process so far, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(port: int, batch: int, qos: int, rate: float, seconds: float) -> tuple[float, float]:
    """(CPU microseconds a message, of which in publish()) for one batch size and QoS."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         protocol=paho.MQTTv311)
    client.max_inflight_messages_set(0)  # no window: as many in flight as published
    client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(HOST, port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("paho could not connect to the benchmark's broker")
    count = int(rate * seconds)
    infos = []
    in_publish = 0.0
    began, cpu_before = time.monotonic(), cpu_seconds()
    for sent in range(0, count, batch):
        wait = began + sent / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        before = time.thread_time()
        for index in range(sent, min(sent + batch, count)):
            infos.append(client.publish(f"bench/d{index % 1000}/inputs/1", PAYLOAD, qos=qos))
        in_publish += time.thread_time() - before
    while not all(info.is_published() for info in infos[-batch:]):
        time.sleep(0.01)
    used = cpu_seconds() - cpu_before
    client.disconnect()
    client.loop_stop()
    return 1e6 * used / count, 1e6 * in_publish / count


def main(argv: list[str] | None = None) -> int:
    """Run every batch size at both QoS levels and print a line for each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250.0, help="messages a second")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="octolux-paho-"))
    broker = None
    try:
        broker, port = start_mosquitto(workdir, nodelay="true")
        print(f"{args.rate:g} messages a second, {len(PAYLOAD)} bytes each, "
              f"load {load_average()}")
        print("qos  batch   CPU us/message   of which publish()   % of a core")
        for qos in (1, 0):
            for batch in BATCHES:
                total, publish = measure(port, batch, qos, args.rate, args.seconds)
                print(f"{qos:3}  {batch:5}   {total:14.1f}   {publish:18.1f}   "
                      f"{total * args.rate / 1e4:11.2f}", flush=True)
        print(f"load at the end {load_average()}")
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
