"""Fleet: what one bridge process costs per dongle, serving N simulated dongles at once.

Starts, as real subprocesses on 127.0.0.1, a private mosquitto, ``twistd
lxp-simulator --count N --port 0`` (every dongle on a free port, read back from
its log) and ``twistd octolux`` with a generated config.ini of N ``[lxp dI]``
sections. A paho subscriber here counts ``<prefix>/+/inputs/+``; then it reads
the bridge's CPU seconds (/proc/PID/stat) over a measured window, its RSS, and
the round trip of a few ``cmd/discharge_pct`` commands. The same is measured
first with a small fleet (``--baseline-count``), in the same run, so the
per-dongle figures can be compared: a ratio near 1 means the cost is linear.

    .venv/bin/python bench/fleet.py                        # 10, then 1000 dongles
    .venv/bin/python bench/fleet.py --count 50 --seconds 20
    .venv/bin/python bench/fleet.py --count 2000 --interval 30 --keep

Each dongle sends 3 input frames every ``--interval`` seconds, so the bridge
should publish 3 * N / interval messages a second. Everything started is
stopped on the way out; the working directory (configs and logs) is removed,
unless something looked wrong or ``--keep`` was given, and then its path is
printed. Prints figures only; nothing here passes or fails on time.
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
TICKS = os.sysconf("SC_CLK_TCK")
FD_MARGIN = 100  # descriptors beyond the sockets: logs, the reactor's own, paho's
COMMAND_TIMEOUT = 15.0  # seconds per command round trip; the bridge's own limit is 10 s
STOP_TIMEOUT = 20.0  # seconds after SIGTERM before SIGKILL
POLL = 0.1  # seconds between looks at logs and counters

LISTENING = re.compile(r"dongle (\S+) \(inverter (\S+)\) listening on [\d.]+:(\d+)")
CONNECTED = re.compile(r"\] (\S+): connected to ")
TROUBLE = re.compile(
    r"#(warn|error|critical)\]|Traceback|Unhandled|: connection to .* lost|cannot connect"
)
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


def start_mosquitto(workdir: Path) -> tuple[Child, int]:
    """A private broker on a free port, waited for until it accepts connections."""
    executable = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if executable is None:
        raise SystemExit("mosquitto is not installed (run scripts/setup-env.sh)")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    # Generous queues: a burst of thousands of QoS 0 messages must reach the
    # subscriber here, not be dropped by the broker on its behalf.
    conf.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 1000000\nmax_queued_bytes 0\n"
    )
    broker = Child.spawn("mosquitto", [executable, "-c", str(conf)], workdir)
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
        # paho leaves Nagle on: a command published right after the PUBACK of the
        # previous result would wait for the broker's delayed ACK, adding the
        # benchmark's own ~40 ms to the round trip it measures.
        self.client.on_socket_open = _no_delay
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not connected.wait(10):
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


def _no_delay(client, userdata, sock) -> None:
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
    rtts: list[float] = attrs.Factory(list)
    bridge_stop: float = 0.0
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


def run_phase(count: int, args, broker: Child, broker_port: int, subscriber: Subscriber,
              workdir: Path) -> Phase:
    """Simulator and bridge for ``count`` dongles: measure, then stop both."""
    phase = Phase(count)
    prefix = f"fleet{count}"
    here = workdir / prefix
    here.mkdir()
    subscriber.watch(prefix)
    simulator = bridge = None
    try:
        simulator = Child.spawn("simulator", twistd() + [
            "-n", "--pidfile=", "-l", "-", "lxp-simulator", "--count", str(count), "--port", "0",
            "--interval", f"{args.interval:g}", "--burst-gap", f"{args.burst_gap:g}",
            "--heartbeat", f"{args.heartbeat:g}", "--seed", "1",
        ], here)
        dongles = wait_for_dongles(simulator, count, args.ready_timeout)
        config = here / "config.ini"
        # The silence timeout well above the broadcast interval, as a real site would set it.
        config.write_text(
            bridge_config(dongles, broker_port, prefix, max(900.0, 10 * args.interval))
        )
        bridge = Child.spawn("bridge", twistd() + [
            "-n", "--pidfile=", "-l", "-", "octolux", "-c", str(config),
        ], here)
        wait_until_ready(phase, bridge, simulator, subscriber, args.ready_timeout)
        measure(phase, args, bridge, simulator, broker, subscriber)
        run_commands(phase, args, bridge, subscriber)
    finally:
        if bridge is not None:
            phase.bridge_stop = bridge.stop()
            phase.trouble += trouble_lines(bridge, TROUBLE)
        if simulator is not None:
            simulator.stop()
            phase.trouble += trouble_lines(simulator, SIMULATOR_TROUBLE)
    return phase


def wait_for_dongles(simulator: Child, count: int, timeout: float) -> list[tuple[str, str, int]]:
    """(datalog, inverter serial, port) of each dongle, in --count order, from the log."""
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
    # The serials number on in --count order; sort so that d0 is SIMDL00001.
    return sorted(dongles)


def wait_until_ready(phase: Phase, bridge: Child, simulator: Child, subscriber: Subscriber,
                     timeout: float) -> None:
    """Until every inverter is connected and has published inputs, or ``timeout`` passes."""
    connected: set[str] = set()
    deadline = bridge.started + timeout
    while True:
        bridge.check_alive()
        simulator.check_alive()
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


def measure(phase: Phase, args, bridge: Child, simulator: Child, broker: Child,
            subscriber: Subscriber) -> None:
    """CPU and messages over the window of ``--seconds``; memory at its end.

    The window opens half an interval after the last first burst: every dongle's
    bursts are then mid-way between its edges, so none is cut in two and a
    window of whole intervals holds exactly 3 messages per dongle per interval.
    """
    children = (bridge, simulator, broker)
    wait_alive(time.monotonic() + args.interval / 2, bridge, simulator)
    before = [child.cpu_seconds() for child in children]
    start = time.monotonic()
    wait_alive(start + args.seconds, bridge, simulator)
    after = [child.cpu_seconds() for child in children]
    stopped = time.monotonic()
    phase.window = stopped - start
    phase.bridge_cpu, phase.simulator_cpu, phase.broker_cpu = (
        b - a for a, b in zip(before, after, strict=True)
    )
    phase.rss_kib, phase.hwm_kib = bridge.memory_kib()
    names = subscriber.arrivals_between(start, stopped)
    phase.messages = len(names)
    phase.expected = 3 * phase.count * phase.window / args.interval
    per = {f"d{index}": 0 for index in range(phase.count)}
    for name in names:
        per[name] = per.get(name, 0) + 1
    phase.silent = sum(1 for n in per.values() if n == 0)
    phase.per_inverter = (min(per.values()), max(per.values()))


def wait_alive(until: float, *children: Child) -> None:
    """Sleep until the monotonic time ``until``, raising if one of ``children`` exits."""
    while True:
        for child in children:
            child.check_alive()
        left = until - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(1.0, left))


def run_commands(phase: Phase, args, bridge: Child, subscriber: Subscriber) -> None:
    """``cmd/discharge_pct`` to a sample spread over the fleet, one at a time."""
    sample = min(args.commands, phase.count)
    for k in range(sample):
        bridge.check_alive()
        index = k * phase.count // sample
        result, rtt = subscriber.command(f"d{index}", "discharge_pct", str(10 + k % 90))
        phase.commands += 1
        if result == b"OK":
            phase.commands_ok += 1
            phase.rtts.append(rtt)
        else:
            shown = "no result" if result is None else result.decode(errors="replace")
            phase.trouble.append(f"cmd/discharge_pct to d{index}: {shown} after {rtt:.1f} s")


def trouble_lines(child: Child, pattern: re.Pattern, limit: int = 8) -> list[str]:
    """The lines of ``child``'s whole log that match ``pattern``, at most ``limit`` of them."""
    found = []
    for line in child.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if pattern.search(line):
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
        ("window", lambda p: seconds(p.window)),
        ("input messages in window", lambda p: f"{p.messages} (expected ~{p.expected:.0f})"),
        ("  per second, delivered", lambda p: f"{p.messages / p.window:.1f}"),
        ("  per second, expected", lambda p: f"{p.expected / p.window:.1f}"),
        ("  per inverter, min-max", lambda p: "{}-{}".format(*p.per_inverter)),
        ("  inverters silent in window", lambda p: str(p.silent)),
        ("bridge CPU in window", lambda p: f"{p.bridge_cpu:.2f} s "
                                           f"({100 * p.bridge_cpu / p.window:.1f} % of a core)"),
        ("simulator / mosquitto CPU", lambda p: f"{p.simulator_cpu:.2f} s / {p.broker_cpu:.2f} s"),
        ("bridge RSS (peak)", lambda p: f"{p.rss_kib / 1024:.1f} MiB "
                                        f"({p.hwm_kib / 1024:.1f} MiB)"),
        ("bridge CPU per dongle", lambda p: f"{cpu_per_dongle(p):.3f} ms/min"),
        ("bridge CPU per input message", lambda p: f"{cpu_per_message(p):.3f} ms"),
        ("bridge RSS per dongle", lambda p: f"{p.rss_kib / p.count:.0f} KiB"),
        ("commands OK", lambda p: f"{p.commands_ok} / {p.commands}"),
        ("command round trip, median (max)", lambda p: rtt_text(p.rtts)),
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


def cpu_per_dongle(phase: Phase) -> float:
    """Bridge CPU milliseconds per dongle per minute."""
    return 1000 * phase.bridge_cpu / phase.count * 60 / phase.window


def cpu_per_message(phase: Phase) -> float:
    """Bridge CPU milliseconds per input message delivered (heartbeats ride along)."""
    return 1000 * phase.bridge_cpu / phase.messages if phase.messages else float("nan")


def ratio(large: float, small: float) -> str:
    """``large / small`` to two places, or a dash when ``small`` is zero."""
    return f"{large / small:.2f}" if small else "- (baseline too small to measure)"


def rtt_text(rtts: list[float]) -> str:
    """Median and maximum round trip in milliseconds."""
    if not rtts:
        return "-"
    return f"{1000 * statistics.median(rtts):.1f} ms ({1000 * max(rtts):.1f} ms)"


# -- the run ----------------------------------------------------------------------


def usable_count(count: int) -> int:
    """``count``, or fewer if the descriptor limit cannot hold the simulator's 2 per dongle."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    # The simulator holds a listening and an accepted socket per dongle.
    fitting = (limit - FD_MARGIN) // 2
    if count > fitting:
        print(f"open-file limit {limit} fits only {fitting} dongles (2 sockets each in the "
              f"simulator, plus {FD_MARGIN}): --count {count} reduced to {fitting}; raise "
              f"the hard limit (ulimit -Hn) to run more")
        return fitting
    return count


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the baseline and the fleet, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="dongles in the fleet")
    parser.add_argument("--baseline-count", type=int, default=10,
                        help="dongles in the baseline measured first (0: none)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between bursts")
    parser.add_argument("--burst-gap", type=float, default=0.2)
    parser.add_argument("--heartbeat", type=float, default=60.0)
    parser.add_argument("--commands", type=int, default=20, help="command round trips")
    parser.add_argument("--ready-timeout", type=float, default=120.0,
                        help="seconds for the fleet to connect before measuring anyway")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    args = parser.parse_args(argv)
    # Topics carry the inverter's name only with more than one inverter.
    if args.count < 2 or args.baseline_count == 1:
        parser.error("fleets need at least 2 dongles (--baseline-count 0 for no baseline)")
    count = usable_count(args.count)
    sizes = ([args.baseline_count] if 0 < args.baseline_count < count else []) + [count]

    workdir = Path(tempfile.mkdtemp(prefix="octolux-fleet-"))
    keep = args.keep
    phases: list[Phase] = []
    broker = subscriber = None
    try:
        broker, broker_port = start_mosquitto(workdir)
        subscriber = Subscriber(broker_port)
        for size in sizes:
            print(f"{size} dongles: starting (window {args.seconds:g} s) ...", flush=True)
            phases.append(run_phase(size, args, broker, broker_port, subscriber, workdir))
        broker_trouble = trouble_lines(broker, BROKER_TROUBLE)
        report(phases, args)
        for line in broker_trouble:
            print("  " + line)
        keep = keep or bool(broker_trouble) or not all(phase.healthy for phase in phases)
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
            broker.stop()
        if keep:
            print(f"\nlogs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
