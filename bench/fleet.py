"""Fleet: what one bridge process costs per dongle, serving N simulated dongles at once.

Starts, as real subprocesses on 127.0.0.1, a private mosquitto, ``twistd
lxp-simulator --count K --port 0`` (every dongle on a free port, read back from
its log; as many simulator processes as the open-file limit needs) and
``twistd octolux`` with a generated config.ini of N ``[lxp dI]`` sections. A
paho subscriber here counts ``<prefix>/+/inputs/+``; then it reads the bridge's
CPU seconds (/proc/PID/stat) over a measured window, its RSS, and the round trip
of a few ``cmd/discharge_pct`` commands, with mosquitto's default
``set_tcp_nodelay false`` and then, the broker restarted, with ``true``. The
same is measured first with a small fleet (``--baseline-count``), in the same
run, so the per-dongle figures can be compared: a ratio near 1 means the cost
is linear.

    .venv/bin/python bench/fleet.py                 # 100, then 10,000 dongles, 2-minute interval
    .venv/bin/python bench/fleet.py --count 1000 --interval 20 --seconds 40
    .venv/bin/python bench/fleet.py --count 2000 --interval 30 --keep

Each dongle sends 3 input frames every ``--interval`` seconds, so the bridge
should publish 3 * N / interval messages a second. Everything started is
stopped on the way out; the working directory (configs and logs) is removed,
unless something looked wrong or ``--keep`` was given, and then its path is
printed.

Then it judges each fleet size against the goals of issue 19 and exits 1 if
one is missed: every inverter's every input published in the window, no
message dropped by the bridge (its ``MQTT: ... dropped`` lines), start-up (the
broker holding every inverter's retained state) within ``--max-startup``
seconds of the bridge's start, and in the window at most ``--max-cpu`` % of a
core and ``--max-rss`` MB resident. It also prints the most messages the bridge
saw waiting for the broker at once.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
NODELAY_SETTINGS = ("false", "true")  # mosquitto's set_tcp_nodelay: its default first
TICKS = os.sysconf("SC_CLK_TCK")
FD_MARGIN = 100  # descriptors beyond the sockets: logs, the reactor's own, paho's
COMMAND_TIMEOUT = 15.0  # seconds per command round trip; the bridge's own limit is 10 s
STOP_TIMEOUT = 20.0  # seconds after SIGTERM before SIGKILL
POLL = 0.1  # seconds between looks at logs and counters
LATE_GRACE = 10.0  # seconds after the window in which a missing input counts as late, not lost

LISTENING = re.compile(r"dongle (\S+) \(inverter (\S+)\) listening on [\d.]+:(\d+)")
CONNECTED = re.compile(r"\] (\S+): connected to ")
BRIDGE_MQTT_CONNECTED = re.compile(r"Connected to MQTT broker")
# What the bridge says about its queue for the broker: as it drops, and on stopping.
DROPPED = re.compile(r"MQTT: dropped (\d+) message")
QUEUE_SUMMARY = re.compile(r"MQTT: (\d+) message\(s\) dropped in all; at most (\d+) waiting")
RETAINED_COUNT = "$SYS/broker/retained messages/count"
RETAINED_PER_INVERTER = 240 + 2  # hold/0-239, settings, connection
SETTLE = 5.0  # seconds over which the bridge must be quiet before the window opens ...
SETTLED = 0.2  # ... using less than this share of a core
TROUBLE = re.compile(
    r"#(warn|error|critical)\]|Traceback|Unhandled|: connection to .* lost|cannot connect"
    r"|no reply within"
)
# The broker restarts on purpose, between the two round-trip measurements.
EXPECTED = re.compile(r"Lost MQTT broker .*; reconnecting|Cannot reach MQTT broker")
SIMULATOR_TROUBLE = re.compile(r"#(warn|error|critical)\]|Traceback|Unhandled")
# mosquitto drops messages for a client whose queue is full, and says so.
BROKER_TROUBLE = re.compile(r"(?i)dropp|error|warning|exceeded")


# -- the processes ----------------------------------------------------------------


def free_port() -> int:
    """A TCP port on HOST that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def twistd() -> list[str]:
    """The twistd of this interpreter's environment (run this with .venv/bin/python)."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


@attrs.define
class Child:
    """A subprocess with its output in a log file, which ``new_lines`` reads as it grows."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    started: float  # time.monotonic() at spawn
    _offset: int = 0
    _partial: str = ""

    @classmethod
    def spawn(cls, name: str, argv: list[str], workdir: Path) -> Child:
        """Start ``argv`` in ``workdir``, stdout and stderr to ``<workdir>/<name>.log``."""
        log_path = workdir / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )
        return cls(name, proc, log_path, time.monotonic())

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the end of the log if the process has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
            )

    def new_lines(self) -> list[str]:
        """The complete lines written to the log since the last call."""
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            log.seek(self._offset)
            text = log.read()
            self._offset = log.tell()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return lines

    def tail(self, count: int = 20) -> str:
        """The last ``count`` lines of the log."""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-count:])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far, every thread included."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB: resident now and at its peak."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> float:
        """SIGTERM, wait, SIGKILL if it lingers; returns the seconds it took to exit."""
        begun = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} still running {STOP_TIMEOUT:.0f} s after SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - begun


def start_mosquitto(workdir: Path, port: int | None = None,
                    nodelay: str = NODELAY_SETTINGS[0]) -> tuple[Child, int]:
    """A private broker on ``port`` (default: a free one), waited for until it accepts."""
    executable = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if executable is None:
        raise SystemExit("mosquitto is not installed (run scripts/setup-env.sh)")
    port = free_port() if port is None else port
    conf = workdir / f"mosquitto-nodelay-{nodelay}.conf"
    # Generous queues: a burst of thousands of QoS 0 messages must reach the
    # subscriber here, not be dropped by the broker on its behalf.
    conf.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 1000000\nmax_queued_bytes 0\nset_tcp_nodelay {nodelay}\n"
        "sys_interval 2\n"
    )
    broker = Child.spawn(f"mosquitto-nodelay-{nodelay}", [executable, "-c", str(conf)], workdir)
    deadline = time.monotonic() + 10
    while True:
        broker.check_alive()
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return broker, port
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto not listening on {port}:\n{broker.tail()}") from None
            time.sleep(POLL)


def bridge_config(
    dongles: list[tuple[str, str, int]], broker_port: int, prefix: str, no_data_timeout: float
) -> str:
    """config.ini text: MQTT, the API on a free port, one ``[lxp dI]`` per dongle."""
    lines = [
        "[mqtt]", f"uri = mqtt://{HOST}:{broker_port}", f"prefix = {prefix}", "",
        "[server]", f"listen_host = {HOST}", "port = 0", "",
    ]
    for index, (datalog, serial, port) in enumerate(dongles):
        lines += [
            f"[lxp d{index}]", f"host = {HOST}", f"port = {port}", f"serial = {serial}",
            f"datalog = {datalog}", f"no_data_timeout = {no_data_timeout:g}", "",
        ]
    return "\n".join(lines)


# -- the MQTT side ----------------------------------------------------------------


class Subscriber:
    """A paho client counting input messages per inverter and collecting command results."""

    def __init__(self, port: int):
        self._lock = threading.Lock()
        self._results: dict[str, tuple[float, bytes]] = {}
        self._result_arrived = threading.Condition(self._lock)
        self.prefix = ""
        self.arrivals: list[tuple[float, str]] = []  # (monotonic time, inverter name)
        self.first_inputs: dict[str, float] = {}
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"fleet-bench-{os.getpid()}",
            protocol=paho.MQTTv311,
        )
        self.client.on_message = self._on_message
        self.retained = 0  # the broker's count of retained messages ($SYS, every 2 s)
        # paho leaves Nagle on: a command published right after the PUBACK of the
        # previous result would wait for the broker's delayed ACK, adding the
        # benchmark's own ~40 ms to the round trip it measures.
        self.client.on_socket_open = no_delay
        self.connections = 0  # how many times it has connected (the broker restarts)
        self._connected = threading.Condition(self._lock)
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect(HOST, port)
        self.client.loop_start()
        self.wait_connections(1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            prefix = self.prefix
        client.subscribe(RETAINED_COUNT)
        if prefix:  # a restarted broker knows nothing of the subscriptions
            client.subscribe([(f"{prefix}/+/inputs/+", 0), (f"{prefix}/+/result/+", 1)])
        with self._lock:
            self.connections += 1
            self._connected.notify_all()

    def wait_connections(self, count: int, timeout: float = 20.0) -> None:
        """Until the client has connected ``count`` times."""
        with self._lock:
            if not self._connected.wait_for(lambda: self.connections >= count, timeout):
                raise RuntimeError("the benchmark's MQTT client could not connect")

    def watch(self, prefix: str) -> None:
        """Forget what was counted; count ``<prefix>/+/inputs/+`` and results from now on."""
        with self._lock:
            if self.prefix:
                self.client.unsubscribe([f"{self.prefix}/+/inputs/+", f"{self.prefix}/+/result/+"])
            self.prefix = prefix
            self.arrivals = []
            self.first_inputs = {}
            self._results = {}
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe([(f"{prefix}/+/inputs/+", 0), (f"{prefix}/+/result/+", 1)])
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK from the broker")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == RETAINED_COUNT:
            self.retained = int(message.payload)
            return
        now = time.monotonic()
        parts = message.topic.split("/")
        if len(parts) != 4 or parts[0] != self.prefix:
            return
        name, kind = parts[1], parts[2]
        with self._lock:
            if kind == "inputs":
                self.arrivals.append((now, name))
                self.first_inputs.setdefault(name, now)
            elif kind == "result":
                self._results[f"{name}/{parts[3]}"] = (now, message.payload)
                self._result_arrived.notify_all()

    def command(self, inverter: str, name: str, payload: str) -> tuple[bytes | None, float]:
        """Publish ``cmd/<name>`` to one inverter; (result payload or None, round-trip seconds)."""
        key = f"{inverter}/{name}"
        with self._lock:
            self._results.pop(key, None)
        sent = time.monotonic()
        self.client.publish(f"{self.prefix}/{inverter}/cmd/{name}", payload, qos=1)
        with self._lock:
            self._result_arrived.wait_for(lambda: key in self._results, COMMAND_TIMEOUT)
            if key not in self._results:
                return None, time.monotonic() - sent
            arrived, result = self._results[key]
        return result, arrived - sent

    def connected_inverters(self) -> int:
        """How many inverters have published inputs so far."""
        with self._lock:
            return len(self.first_inputs)

    def arrivals_between(self, start: float, end: float) -> list[str]:
        """The inverter name of each input message that arrived in [start, end)."""
        with self._lock:
            return [name for when, name in self.arrivals if start <= when < end]

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()


def no_delay(client, userdata, sock) -> None:
    """paho's socket-open callback: Nagle off (a command right after a PUBACK must not wait)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- one measurement --------------------------------------------------------------


@attrs.define
class Phase:
    """The figures of one fleet size."""

    count: int
    bridge_start: float = 0.0  # seconds from spawn to the first "connected to"
    all_connected: float | None = None  # seconds from spawn to N "connected to" lines
    connected: int = 0
    all_inputs: float | None = None  # seconds from spawn to inputs from every inverter
    settle: float = 0.0  # seconds from then until the start-up work was over
    startup: float | None = None  # seconds from spawn until the broker held all retained state
    startup_cpu: float = 0.0  # the bridge's CPU seconds until then
    with_inputs: int = 0
    window: float = 0.0
    messages: int = 0
    expected: float = 0.0
    silent: int = 0  # inverters without a message in the window
    per_inverter: tuple[int, int] = (0, 0)  # min, max messages of one inverter in the window
    bridge_cpu: float = 0.0
    simulator_cpu: float = 0.0
    broker_cpu: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0
    commands_ok: int = 0
    commands: int = 0
    rtts: dict[str, list[float]] = attrs.Factory(dict)  # by the broker's set_tcp_nodelay
    bridge_stop: float = 0.0
    short: list[str] = attrs.Factory(list)  # inverters with fewer messages than bursts in window
    window_end: float = 0.0  # monotonic time the window closed
    late: int = 0  # of the short ones, those whose input came within LATE_GRACE after it
    dropped: int | None = None  # messages the bridge dropped (None: it never said)
    longest: int | None = None  # the most messages it saw waiting for the broker at once
    trouble: list[str] = attrs.Factory(list)

    @property
    def healthy(self) -> bool:
        """Nothing looked wrong: all connected, nothing silent, commands OK, a quiet log."""
        return (
            self.connected == self.count
            and self.with_inputs == self.count
            and self.silent == 0
            and self.commands_ok == self.commands
            and not self.trouble
        )


def run_phase(count: int, args, mosquitto: Broker, subscriber: Subscriber,
              workdir: Path) -> Phase:
    """Simulators and bridge for ``count`` dongles: measure, then stop them."""
    phase = Phase(count)
    prefix = f"fleet{count}"
    here = workdir / prefix
    here.mkdir()
    if mosquitto.used:  # a fresh broker: no retained messages of the phase before
        connections = subscriber.connections
        mosquitto.restart(NODELAY_SETTINGS[0])
        subscriber.wait_connections(connections + 1)
    mosquitto.used = True
    subscriber.watch(prefix)
    simulators: list[Child] = []
    bridge = None
    try:
        sizes = split(count, args.simulators)
        for index, size in enumerate(sizes):
            first = sum(sizes[:index]) + 1  # serials number on across the simulators
            simulators.append(Child.spawn(f"simulator{index}", twistd() + [
                "-n", "--pidfile=", "-l", "-", "lxp-simulator", "--count", str(size),
                "--port", "0", "--datalog", f"FD{first:08d}", "--serial", f"FS{first:08d}",
                "--interval", f"{args.interval:g}", "--burst-gap", f"{args.burst_gap:g}",
                "--heartbeat", f"{args.heartbeat:g}", "--seed", "1",
            ], here))
        dongles = []
        for simulator, size in zip(simulators, sizes, strict=True):
            dongles += wait_for_dongles(simulator, size, args.ready_timeout)
        config = here / "config.ini"
        # The silence timeout well above the broadcast interval, as a real site would set it.
        config.write_text(
            bridge_config(sorted(dongles), mosquitto.port, prefix, max(900.0, 10 * args.interval))
        )
        bridge = Child.spawn("bridge", twistd() + [
            "-n", "--pidfile=", "-l", "-", "octolux", "-c", str(config),
        ], here)
        wait_until_ready(phase, bridge, simulators, subscriber, args.ready_timeout)
        measure(phase, args, bridge, simulators, mosquitto.child, subscriber)
        # Round trips with mosquitto's default, then restarted with the other
        # setting: every inverter then publishes its registers again (paced),
        # which takes minutes with a big fleet, so only up to --restart-max.
        run_commands(phase, args, bridge, subscriber, NODELAY_SETTINGS[0])
        late_arrivals(phase, subscriber)  # the commands took longer than LATE_GRACE
        if count <= args.restart_max:
            bridge.new_lines()  # from here on, look for the reconnection
            connections = subscriber.connections
            mosquitto.restart(NODELAY_SETTINGS[1])
            wait_for_reconnection(bridge, subscriber, connections)
            settle(args, bridge, simulators)
            run_commands(phase, args, bridge, subscriber, NODELAY_SETTINGS[1])
    finally:
        if bridge is not None:
            phase.bridge_stop = bridge.stop()
            phase.trouble += trouble_lines(bridge, TROUBLE)
            phase.dropped, phase.longest = queue_figures(bridge)
        for simulator in simulators:
            simulator.stop()
            phase.trouble += trouble_lines(simulator, SIMULATOR_TROUBLE)
    return phase


def split(count: int, parts: int) -> list[int]:
    """``count`` dongles shared out over ``parts`` simulators, as evenly as can be."""
    return [count // parts + (1 if index < count % parts else 0) for index in range(parts)]


@attrs.define
class Broker:
    """The private mosquitto, restartable on its port with the other ``set_tcp_nodelay``."""

    workdir: Path
    child: Child = attrs.field(init=False)
    port: int = attrs.field(init=False)
    nodelay: str = NODELAY_SETTINGS[0]
    trouble: list[str] = attrs.Factory(list)
    used: bool = False  # has a phase run on it?

    def __attrs_post_init__(self):
        self.child, self.port = start_mosquitto(self.workdir, nodelay=self.nodelay)

    def restart(self, nodelay: str) -> None:
        """Stop the broker and start it again on the same port with ``set_tcp_nodelay``."""
        self.stop()
        self.nodelay = nodelay
        self.child, _ = start_mosquitto(self.workdir, self.port, nodelay)

    def stop(self) -> None:
        """Stop it, keeping what its log says went wrong."""
        self.child.stop()
        self.trouble += trouble_lines(self.child, BROKER_TROUBLE)


def wait_for_dongles(simulator: Child, count: int, timeout: float) -> list[tuple[str, str, int]]:
    """(datalog, inverter serial, port) of each dongle, from the log."""
    dongles = []
    deadline = time.monotonic() + timeout
    while len(dongles) < count:
        simulator.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {len(dongles)} of {count} dongles listening after {timeout:.0f} s:\n"
                + simulator.tail()
            )
        for line in simulator.new_lines():
            match = LISTENING.search(line)
            if match:
                dongles.append((match[1], match[2], int(match[3])))
        time.sleep(POLL)
    return dongles


def wait_until_ready(phase: Phase, bridge: Child, simulators: list[Child],
                     subscriber: Subscriber, timeout: float) -> None:
    """Until every inverter is connected and has published inputs, or ``timeout`` passes."""
    connected: set[str] = set()
    deadline = bridge.started + timeout
    while True:
        for child in (bridge, *simulators):
            child.check_alive()
        now = time.monotonic()
        for line in bridge.new_lines():
            match = CONNECTED.search(line)
            if match:
                if not connected:
                    phase.bridge_start = now - bridge.started
                connected.add(match[1])
        if len(connected) == phase.count and phase.all_connected is None:
            phase.all_connected = now - bridge.started
        with_inputs = subscriber.connected_inverters()
        if with_inputs == phase.count:
            phase.all_inputs = now - bridge.started
            break
        if now > deadline:
            print(f"  not ready after {timeout:g} s: {len(connected)} connected, "
                  f"{with_inputs} with inputs; measuring anyway")
            break
        time.sleep(POLL)
    for line in bridge.new_lines():  # lines written since the last look
        match = CONNECTED.search(line)
        if match:
            connected.add(match[1])
    phase.connected = len(connected)
    phase.with_inputs = subscriber.connected_inverters()


def measure(phase: Phase, args, bridge: Child, simulators: list[Child], broker: Child,
            subscriber: Subscriber) -> None:
    """CPU and messages over the window of ``--seconds``; memory at its end.

    The window opens once the start-up work is over: the bridge reads every
    inverter's holding registers on connecting (paced) and publishes them
    retained, so when the broker holds them all, and the bridge has then used
    less than SETTLED of a core for SETTLE seconds (or after ``--settle-timeout``).
    Every dongle bursts once an interval, so a window of whole intervals holds
    exactly 3 messages a dongle per interval, wherever it starts.
    """
    began = time.monotonic()
    deadline = began + args.settle_timeout
    while subscriber.retained < RETAINED_PER_INVERTER * phase.count:
        if time.monotonic() > deadline:
            print(f"  {subscriber.retained} retained messages after {args.settle_timeout:g} s,"
                  f" expected {RETAINED_PER_INVERTER * phase.count}; measuring anyway")
            break
        wait_alive(time.monotonic() + 1, bridge, *simulators)
    else:
        # The broker counts every sys_interval (2 s): up to that late.
        phase.startup = time.monotonic() - bridge.started
        phase.startup_cpu = bridge.cpu_seconds()
    settle(args, bridge, simulators)
    phase.settle = time.monotonic() - began
    before = (bridge.cpu_seconds(), [c.cpu_seconds() for c in simulators], broker.cpu_seconds())
    start = time.monotonic()
    wait_alive(start + args.seconds, bridge, *simulators)
    after = (bridge.cpu_seconds(), [c.cpu_seconds() for c in simulators], broker.cpu_seconds())
    stopped = time.monotonic()
    phase.window = stopped - start
    phase.bridge_cpu = after[0] - before[0]
    phase.simulator_cpu = sum(after[1]) - sum(before[1])
    phase.broker_cpu = after[2] - before[2]
    phase.rss_kib, phase.hwm_kib = bridge.memory_kib()
    names = subscriber.arrivals_between(start, stopped)
    phase.messages = len(names)
    phase.expected = 3 * phase.count * phase.window / args.interval
    per = {f"d{index}": 0 for index in range(phase.count)}
    for name in names:
        per[name] = per.get(name, 0) + 1
    phase.silent = sum(1 for n in per.values() if n == 0)
    phase.per_inverter = (min(per.values()), max(per.values()))
    bursts = int(phase.window // args.interval + 1e-9)
    phase.short = [name for name, n in per.items() if n < 3 * bursts]
    phase.window_end = stopped


def late_arrivals(phase: Phase, subscriber: Subscriber) -> None:
    """Of the inverters short in the window, those whose input came within LATE_GRACE after it.

    Every dongle bursts once an interval, so a window of whole intervals holds
    3 messages a dongle; one whose last came a moment after the window closed
    (the bridge and broker busy with the fleet's burst) was late, not lost.
    """
    late = set(subscriber.arrivals_between(phase.window_end, phase.window_end + LATE_GRACE))
    phase.late = sum(1 for name in phase.short if name in late)


def settle(args, bridge: Child, simulators: list[Child]) -> float:
    """Until the bridge has used less than SETTLED of a core for SETTLE s; the seconds it took."""
    began = time.monotonic()
    deadline = began + args.settle_timeout
    while True:
        used = bridge.cpu_seconds()
        wait_alive(time.monotonic() + SETTLE, bridge, *simulators)
        if (bridge.cpu_seconds() - used) / SETTLE < SETTLED:
            break
        if time.monotonic() > deadline:
            print(f"  the bridge still busy after {args.settle_timeout:g} s; measuring anyway")
            break
    return time.monotonic() - began


def wait_alive(until: float, *children: Child) -> None:
    """Sleep until the monotonic time ``until``, raising if one of ``children`` exits."""
    while True:
        for child in children:
            child.check_alive()
        left = until - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(1.0, left))


def wait_for_reconnection(bridge: Child, subscriber: Subscriber, connections: int) -> None:
    """After a broker restart: until the bridge and the subscriber here are back."""
    subscriber.wait_connections(connections + 1)
    deadline = time.monotonic() + 30
    while not any(BRIDGE_MQTT_CONNECTED.search(line) for line in bridge.new_lines()):
        bridge.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("the bridge did not reconnect to the restarted broker")
        time.sleep(POLL)
    time.sleep(1.0)  # the SUBSCRIBEs, sent just before that line, reach the broker


def run_commands(phase: Phase, args, bridge: Child, subscriber: Subscriber, setting: str) -> None:
    """``cmd/discharge_pct`` to a sample spread over the fleet, one at a time."""
    sample = min(args.commands, phase.count)
    rtts = phase.rtts.setdefault(setting, [])
    for k in range(sample):
        bridge.check_alive()
        index = k * phase.count // sample
        result, rtt = subscriber.command(f"d{index}", "discharge_pct", str(10 + k % 90))
        phase.commands += 1
        if result == b"OK":
            phase.commands_ok += 1
            rtts.append(rtt)
        else:
            shown = "no result" if result is None else result.decode(errors="replace")
            phase.trouble.append(f"cmd/discharge_pct to d{index}: {shown} after {rtt:.1f} s")


def queue_figures(bridge: Child) -> tuple[int | None, int | None]:
    """(messages dropped, most waiting at once) from the log of the stopped bridge."""
    dropped = longest = None
    for line in bridge.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        summary = QUEUE_SUMMARY.search(line)
        if summary:
            dropped, longest = int(summary[1]), int(summary[2])
        elif DROPPED.search(line) and dropped is None:
            dropped = -1  # said while running; the summary, if any, has the count
    return dropped, longest


def trouble_lines(child: Child, pattern: re.Pattern, limit: int = 8) -> list[str]:
    """The lines of ``child``'s whole log that match ``pattern``, at most ``limit`` of them."""
    found = []
    for line in child.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if pattern.search(line) and not EXPECTED.search(line):
            found.append(f"{child.name}: {line}")
    if len(found) > limit:
        found = found[:limit] + [f"{child.name}: ... and {len(found) - limit} more such lines"]
    return found


# -- output -----------------------------------------------------------------------


def seconds(value: float | None) -> str:
    """A duration, or a dash when it never happened."""
    return "-" if value is None else f"{value:.1f} s"


def report(phases: list[Phase], args) -> None:
    """The table of figures, one column per fleet size, then the per-dongle ratios."""
    rows = [
        ("dongles", lambda p: str(p.count)),
        ("bridge start to first connection", lambda p: seconds(p.bridge_start)),
        ("bridge start to all connected", lambda p: seconds(p.all_connected)),
        ("bridge start to inputs from all", lambda p: seconds(p.all_inputs)),
        ("connected / with inputs", lambda p: f"{p.connected} / {p.with_inputs}"),
        ("then until start-up work was over", lambda p: seconds(p.settle)),
        ("bridge start to all state retained", lambda p: seconds(p.startup)),
        ("  bridge CPU until then", lambda p: f"{p.startup_cpu:.1f} s"),
        ("window", lambda p: seconds(p.window)),
        ("input messages in window", lambda p: f"{p.messages} (expected ~{p.expected:.0f})"),
        ("  per second, delivered", lambda p: f"{p.messages / p.window:.1f}"),
        ("  per second, expected", lambda p: f"{p.expected / p.window:.1f}"),
        ("  per inverter, min-max", lambda p: "{}-{}".format(*p.per_inverter)),
        ("  inverters silent in window", lambda p: str(p.silent)),
        ("  short in window / late after it", lambda p: f"{len(p.short)} / {p.late}"),
        ("bridge CPU in window", lambda p: f"{p.bridge_cpu:.2f} s "
                                           f"({100 * p.bridge_cpu / p.window:.1f} % of a core)"),
        ("simulator / mosquitto CPU", lambda p: f"{p.simulator_cpu:.2f} s / {p.broker_cpu:.2f} s"),
        ("bridge RSS (peak)", lambda p: f"{p.rss_kib / 1024:.1f} MiB "
                                        f"({p.hwm_kib / 1024:.1f} MiB)"),
        ("bridge CPU per dongle", lambda p: f"{cpu_per_dongle(p):.3f} ms/min"),
        ("bridge CPU per input message", lambda p: f"{cpu_per_message(p):.3f} ms"),
        ("bridge RSS per dongle", lambda p: f"{p.rss_kib / p.count:.0f} KiB"),
        ("messages dropped by the bridge", lambda p: count_text(p.dropped)),
        ("most messages waiting at once", lambda p: count_text(p.longest)),
        ("commands OK", lambda p: f"{p.commands_ok} / {p.commands}"),
        *((f"command round trip, nodelay {setting}", lambda p, s=setting: rtt_text(p.rtts.get(s)))
          for setting in NODELAY_SETTINGS),
        ("  (median / p90 / p99 (max))", lambda p: ""),
        ("bridge stop (SIGTERM to exit)", lambda p: f"{1000 * p.bridge_stop:.0f} ms"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    print()
    print(f"interval {args.interval:g} s, burst gap {args.burst_gap:g} s, heartbeat "
          f"{args.heartbeat:g} s, {os.cpu_count()} CPUs")
    for label, cell in rows:
        print(label.ljust(width) + "".join(cell(p).ljust(34) for p in phases).rstrip())
    if len(phases) == 2:
        small, large = phases
        print()
        print(f"per-dongle cost at {large.count} / at {small.count} (1.0 = linear):")
        rough = ""
        if small.bridge_cpu < 50 / TICKS:
            rough = (f"  (rough: the baseline used only {round(small.bridge_cpu * TICKS)} "
                     f"clock ticks of 1/{TICKS} s)")
        print(f"  CPU per dongle      {ratio(cpu_per_dongle(large), cpu_per_dongle(small))}{rough}")
        print(f"  CPU per message     {ratio(cpu_per_message(large), cpu_per_message(small))}")
        extra_cpu = (large.bridge_cpu / large.window - small.bridge_cpu / small.window) * 60000 / (
            large.count - small.count)
        print(f"  CPU added per extra dongle: {extra_cpu:.3f} ms/min")
        rss = ratio(large.rss_kib / large.count, small.rss_kib / small.count)
        print(f"  RSS per dongle      {rss}  (mostly the interpreter's fixed size shared out)")
        extra = (large.rss_kib - small.rss_kib) / (large.count - small.count)
        print(f"  RSS added per extra dongle: {extra:.0f} KiB "
              f"({large.rss_kib - small.rss_kib} KiB for {large.count - small.count} more)")
    for phase in phases:
        if phase.trouble:
            print()
            print(f"logs at {phase.count} dongles, lines worth a look:")
            for line in phase.trouble:
                print("  " + line)


def count_text(value: int | None) -> str:
    """A count from the bridge's log: a dash when it never said."""
    return "-" if value is None else f"{value:,}"


def goals(phase: Phase, args) -> list[tuple[bool, str]]:
    """(met, what) for each goal of issue 19, at one fleet size."""
    bursts = int(phase.window // args.interval + 1e-9)
    cpu = 100 * phase.bridge_cpu / phase.window if phase.window else float("inf")
    rss_mb = phase.rss_kib * 1024 / 1e6
    lost = len(phase.short) - phase.late
    return [
        (phase.silent == 0 and lost == 0,
         f"every input published: {phase.messages} messages in the window, each inverter "
         f"{phase.per_inverter[0]}-{phase.per_inverter[1]} (at least {3 * bursts}); "
         f"{len(phase.short)} short, of which {phase.late} came within {LATE_GRACE:g} s after "
         f"it (late), {lost} never"),
        (phase.dropped == 0, f"no message dropped: {count_text(phase.dropped)}"),
        (phase.startup is not None and phase.startup <= args.max_startup,
         f"start-up (all state retained) within {args.max_startup:g} s: "
         f"{seconds(phase.startup)}"),
        (cpu < args.max_cpu, f"steady state under {args.max_cpu:g} % of a core: {cpu:.2f} %"),
        (rss_mb < args.max_rss, f"steady state under {args.max_rss:g} MB: {rss_mb:.0f} MB"),
    ]


def judge(phases: list[Phase], args) -> bool:
    """Print each goal as met or missed; True when every one was met at every size."""
    met_all = True
    print()
    print(f"goals (load average at the end: {load_average()}):")
    for phase in phases:
        for met, what in goals(phase, args):
            met_all = met_all and met
            print(f"  {'ok    ' if met else 'MISSED'}  {phase.count} dongles: {what}")
    return met_all


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: the machine is shared."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_per_dongle(phase: Phase) -> float:
    """Bridge CPU milliseconds per dongle per minute."""
    return 1000 * phase.bridge_cpu / phase.count * 60 / phase.window


def cpu_per_message(phase: Phase) -> float:
    """Bridge CPU milliseconds per input message delivered (heartbeats ride along)."""
    return 1000 * phase.bridge_cpu / phase.messages if phase.messages else float("nan")


def ratio(large: float, small: float) -> str:
    """``large / small`` to two places, or a dash when ``small`` is zero."""
    return f"{large / small:.2f}" if small else "- (baseline too small to measure)"


def percentiles(times: list[float]) -> tuple[float, float, float, float]:
    """(median, p90, p99, maximum) of ``times`` (seconds), in milliseconds."""
    if len(times) < 2:
        return (1000 * times[0],) * 4
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return (1000 * statistics.median(times), 1000 * cuts[89], 1000 * cuts[98],
            1000 * max(times))


def rtt_text(rtts: list[float] | None) -> str:
    """Median, p90 and p99 of the round trips in milliseconds, and the maximum."""
    if not rtts:
        return "-"
    return "{:.1f} / {:.1f} / {:.1f} ms ({:.1f} ms)".format(*percentiles(rtts))


# -- the run ----------------------------------------------------------------------


def plan(count: int) -> tuple[int, int]:
    """(dongles, simulator processes) that the open-file limit allows for ``count`` dongles.

    The bridge holds a socket per dongle; a simulator two (listening and
    accepted), so several simulator processes share a big fleet. The soft limit
    is raised to the hard one (the children inherit it); only root can raise
    the hard limit (``ulimit -Hn``).
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if count > limit - FD_MARGIN:
        print(f"open-file limit {limit} fits only {limit - FD_MARGIN} dongles in the bridge "
              f"(one socket each, plus {FD_MARGIN}): --count {count} reduced; raise the hard "
              f"limit (ulimit -Hn) to run more")
        count = limit - FD_MARGIN
    per_simulator = (limit - FD_MARGIN) // 2
    return count, -(-count // per_simulator)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the baseline and the fleet, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="dongles in the fleet")
    parser.add_argument("--baseline-count", type=int, default=100,
                        help="dongles in the baseline measured first (0: none)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measured window (default: one interval)")
    parser.add_argument("--interval", type=float, default=120.0,
                        help="seconds between bursts (real dongles: 120)")
    parser.add_argument("--burst-gap", type=float, default=1.0,
                        help="seconds between the 3 frames of a burst (real dongles: about 1)")
    parser.add_argument("--heartbeat", type=float, default=60.0)
    parser.add_argument("--commands", type=int, default=20, help="command round trips")
    parser.add_argument("--restart-max", type=int, default=1000,
                        help="largest fleet whose round trip is also measured with the broker "
                        "restarted with set_tcp_nodelay true")
    parser.add_argument("--settle-timeout", type=float, default=900.0,
                        help="seconds to wait for the start-up work to end before measuring")
    parser.add_argument("--ready-timeout", type=float, default=300.0,
                        help="seconds for the fleet to connect before measuring anyway")
    parser.add_argument("--max-startup", type=float, default=600.0,
                        help="goal: seconds from the bridge's start until all state is retained")
    parser.add_argument("--max-cpu", type=float, default=2.5,
                        help="goal: the bridge's CPU in the window, %% of a core")
    parser.add_argument("--max-rss", type=float, default=400.0,
                        help="goal: the bridge's resident memory at the window's end, MB")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    args = parser.parse_args(argv)
    # Topics carry the inverter's name only with more than one inverter.
    if args.count < 2 or args.baseline_count == 1:
        parser.error("fleets need at least 2 dongles (--baseline-count 0 for no baseline)")
    if args.seconds is None:
        args.seconds = args.interval
    count, args.simulators = plan(args.count)
    sizes = ([args.baseline_count] if 0 < args.baseline_count < count else []) + [count]

    print(f"load average at the start: {load_average()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="octolux-fleet-"))
    keep = args.keep
    phases: list[Phase] = []
    broker = subscriber = None
    try:
        broker = Broker(workdir)
        subscriber = Subscriber(broker.port)
        for size in sizes:
            print(f"{size} dongles: starting (window {args.seconds:g} s) ...", flush=True)
            phases.append(run_phase(size, args, broker, subscriber, workdir))
        broker.stop()
        report(phases, args)
        for line in broker.trouble:
            print("  " + line)
        met = judge(phases, args)
        keep = keep or bool(broker.trouble) or not all(phase.healthy for phase in phases)
    except RuntimeError as error:
        keep = True
        print(f"benchmark failed: {error}")
        return 1
    except BaseException:
        keep = True
        raise
    finally:
        if subscriber is not None:
            subscriber.close()
        if broker is not None:
            broker.child.stop()
        if keep:
            print(f"\nlogs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir)
    if not met:
        print("a goal was missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
