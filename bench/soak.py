"""Fault soak: the bridge as users run it, against a faulty simulator and a restarting broker.

Starts, as real processes on 127.0.0.1, a private mosquitto (persistence on,
so a SIGTERM restart keeps the soak's own session), ``twistd lxp-simulator``
with fault injection and ``twistd octolux`` on a generated config.ini. During
the run it restarts the broker and the simulator (each simulator run gets
another fault profile: garbage, bad CRCs, split writes, reply delays, BUSY
replies, dropped connections, mute, silent), freezes the simulator now and then
(SIGSTOP: a dongle that stops reading its socket), and publishes commands,
valid and invalid, from its own paho client, one outstanding per command name
so that each ``result/<name>`` belongs to exactly one command.

    .venv/bin/python bench/soak.py                     # 15 minutes
    .venv/bin/python bench/soak.py --seconds 120 --seed 1
    .venv/bin/python bench/soak.py --seconds 3600 --commands-per-second 4 --keep

What reached the inverter comes from the simulator's log (``request from ...``
lines); what the bridge put on the wire, and when relative to each command's
result, from the bridge's debug log (``sending <hex>``, decoded with
``octolux.lxp``), which is one ordered stream: a write the bridge sent after it
published the command's FAIL is a broken invariant, whereas a write sent
before the FAIL that a frozen dongle executed only after it is the outcome
nobody can know (issue 8, defect 7), counted apart.

Invariants (exit status 1 if one is broken): exactly one result per command
the broker acknowledged (PUBACK), no write after FAIL, no write nobody asked
for, no bad payload answered OK, no echo-mismatch FAIL for a write the inverter
executed, no traceback in the bridge log, the bridge alive at the end.
Commands whose result was due while the broker was restarting are reported
apart when the broker, not the bridge, lost them (the bridge's MQTT session is
clean, so a command published before it has re-subscribed goes nowhere).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import getpass
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

# support.free_port picks below the ephemeral range: the broker and the simulator
# restart on their ports, which an outgoing connection must not take meanwhile.
from fleet import HOST, Child, twistd  # noqa: E402
from support import free_port  # noqa: E402

from octolux import lxp  # noqa: E402
from octolux.device.commands import COMMANDS, PayloadError, describe_payload  # noqa: E402

POLL = 0.02  # seconds between looks at the logs, the MQTT events and the schedule
DATALOG = "SIMDL00001"
SERIAL = "SIMINV0001"
RESULT_GRACE = 10.0  # seconds beyond command_timeout before a result counts as missing
QUARANTINE = 30.0  # seconds a missing command's name stays unused (a late result is its)
COOLDOWN = 0.3  # seconds between a result and the next command of that name
DUPLICATE_WAIT = 3.0  # seconds the drain goes on once no result is due
READY_TIMEOUT = 60.0  # seconds for the bridge to come (back) up
SUBSCRIBED_AFTER = 1.0  # seconds after the bridge logs "Connected to MQTT broker"
HURRIED = 0.1  # a request sent with less than this share of command_timeout left
BROKER_DOWN = (0.5, 3.0)  # seconds the broker stays down, at random in this range

# -- what each command asks of the inverter -----------------------------------------


@attrs.frozen
class Expected:
    """The request a command makes of the inverter (recorded by running it on a recorder)."""

    kind: str  # "set_bit", "write", "read_hold", "read_input"
    register: int
    value: int | None = None  # write
    bit: int | None = None  # set_bit
    on: bool | None = None  # set_bit
    count: int = 1  # reads


class _Recorder:
    """Stands in for ``Inverter``: a command run against it says which request it makes.

    So the soak knows each command's register, bit or value from
    ``octolux.device.commands`` itself, without a copy of the command table.
    """

    def set_bit(self, register, bit, on):
        return Expected("set_bit", register, bit=bit, on=bool(on))

    def write_single(self, register, value):
        return Expected("write", register, value=value)

    def read_hold(self, register, count=1):
        return Expected("read_hold", register, count=count)

    def read_input(self, register, count=40):
        return Expected("read_input", register, count=count)


def expected_request(name: str, payload: bytes) -> Expected | None:
    """What ``cmd/<name> payload`` asks of the inverter; None if the bridge must refuse it.

    ``name`` may carry the command's argument: ``set_hold/66``.
    """
    head, _, argument = name.partition("/")
    command = COMMANDS.get(head)
    if command is None or (command.argument is None) != (argument == ""):
        return None
    try:
        value = command.parse(payload, argument) if argument else command.parse(payload)
    except PayloadError:
        return None
    return command.run(_Recorder(), value)


def fits(frame, expected: Expected | None) -> bool:
    """Could the bridge have sent ``frame`` for a command expecting ``expected``?"""
    if expected is None:
        return False
    if isinstance(frame, lxp.WriteSingleRequest):
        if frame.register != expected.register:
            return False
        if expected.kind == "write":
            return frame.value == expected.value
        if expected.kind == "set_bit":
            return bool(frame.value >> expected.bit & 1) == expected.on
        return False
    if isinstance(frame, lxp.ReadRequest):
        if frame.register != expected.register:
            return False
        if frame.function == lxp.DeviceFunction.READ_HOLD:
            return expected.kind == "set_bit" or (
                expected.kind == "read_hold" and frame.count == expected.count)
        return expected.kind == "read_input" and frame.count == expected.count
    return False


# -- the commands the soak sends ----------------------------------------------------

BOOLS = ("ac_charge", "forced_discharge", "charge_priority")
PERCENTS = ("charge_pct", "discharge_pct", "charge_amount_pct")
TRUE_WORDS = ("on", "1", "true", "yes", "y", "t", "ON", "True", "YES")
FALSE_WORDS = ("off", "0", "false", "no", "n", "OFF", "nope", "disable")
# No empty payloads: a zero-length message is how a retained one is deleted, and
# the bridge ignores it (no result to wait for).
BAD_PERCENTS = (b"abc", b"101", b"-5", b"5.5", b"+5", b"1_0", b"   ", b"\xff\xfe",
                b"9" * 100, "\uff15".encode(), b"50\n51", b"\x00")
BAD_BOOLS = (b"  ", b"\xff\xfe", b"x" * 100, b"on\x07")
BAD_READ_HOLD = (b"70000", b"x", b" ", b"-1", b"21.0")
REFUSED_READ_HOLD = (b"240", b"300", b"1000")  # valid payloads; the inverter says ILLEGAL_ADDRESS
BAD_READ_INPUT = (b"0", b"5", b"one", b"\t")
UNKNOWN_COMMANDS = ("bogus", "set_everything", "set_hold/abc")
# set_hold on a register no other command here writes (AC charge power, 0-100 %),
# and on one it must refuse (read-only).
SET_HOLD = "set_hold/66"
SET_HOLD_REFUSED = "set_hold/0"
BAD_SET_HOLD = (b"70000", b"-1", b"x", b"6 6")
# How often each name is picked (among those with no command outstanding).
NAME_WEIGHTS = {
    **{name: 1.0 for name in BOOLS + PERCENTS + ("read_hold", "read_input", SET_HOLD)},
    **{name: 0.2 for name in UNKNOWN_COMMANDS + (SET_HOLD_REFUSED,)},
}
INVALID_SHARE = 0.2  # of the commands to known names


class CommandMaker:
    """Picks the next command: valid or not, payloads never repeating back to back per name.

    Percentages run through a shuffled 0-100 per name, so a value comes back
    only after 100 others: a write seen on the wire names its command.
    """

    def __init__(self, chance: random.Random):
        self.chance = chance
        self._percents: dict[str, list[int]] = {}
        self._last: dict[str, bytes] = {}

    def make(self, name: str) -> bytes:
        """A payload for ``cmd/<name>`` unlike the previous one of that name."""
        while True:
            payload = self._payload(name)
            if payload != self._last.get(name):
                self._last[name] = payload
                return payload

    def _payload(self, name: str) -> bytes:
        chance = self.chance
        invalid = chance.random() < INVALID_SHARE
        if name in UNKNOWN_COMMANDS or name == SET_HOLD_REFUSED:
            return chance.choice((b"on", b"50", b"x"))
        if name == SET_HOLD and invalid:
            return chance.choice(BAD_SET_HOLD)
        if name in BOOLS:
            if invalid:
                return chance.choice(BAD_BOOLS)
            return chance.choice(TRUE_WORDS + FALSE_WORDS).encode()
        if name in PERCENTS or name == SET_HOLD:
            if invalid and name != SET_HOLD:
                return chance.choice(BAD_PERCENTS)
            values = self._percents.get(name)
            if not values:
                values = self._percents[name] = chance.sample(range(101), 101)
            return str(values.pop()).encode()
        if name == "read_hold":
            if invalid:
                return chance.choice(BAD_READ_HOLD + REFUSED_READ_HOLD)
            return str(chance.choice((21, 64, 65, 67, chance.randrange(0, 120)))).encode()
        if invalid:
            return chance.choice(BAD_READ_INPUT)
        return str(chance.randint(1, 4)).encode()


# -- the simulator's fault profiles --------------------------------------------------


def fault_profiles(timeout: float) -> list[tuple[str, dict[str, object]]]:
    """(name, lxp-simulator options) of each simulator run, cycled through in order.

    Reply delays and silences are set against the command timeout, so that
    replies come late (after the FAIL, during the next command) or never.
    """
    return [
        ("clean", {}),
        ("noisy", {"garbage": 0.1, "corrupt-crc": 0.1, "split": 16, "exception-rate": 0.1,
                   "foreign-traffic": 3}),
        ("slow", {"reply-delay": round(0.6 * timeout, 2), "drop-every": round(1.5 * timeout, 2),
                  "garbage": 0.05}),
        ("late", {"reply-delay": round(1.3 * timeout, 2), "split": 4}),
        ("mute", {"mute": True, "foreign-traffic": 2}),
        ("silent", {"silent-after": round(1.5 * timeout, 2), "corrupt-crc": 0.2}),
    ]


def profile_arguments(options: dict[str, object]) -> list[str]:
    """lxp-simulator command-line options for a fault profile."""
    arguments = []
    for option, value in options.items():
        arguments += [f"--{option}"] if value is True else [f"--{option}", f"{value}"]
    return arguments


# -- records ------------------------------------------------------------------------


@attrs.define(eq=False)
class Sent:
    """One command published by the soak, and everything seen of it."""

    number: int
    name: str
    payload: bytes
    expected: Expected | None  # None: a payload (or name) the bridge must refuse
    published: float
    deadline: float
    profile: str = ""  # the simulator's fault profile when it was published
    mid: int = 0
    acked: float | None = None
    results: list[tuple[float, str]] = attrs.Factory(list)  # (arrival, OK/FAIL) on MQTT
    missing: bool = False  # its deadline passed without a result
    spans_broker_restart: bool = False  # the broker restarted while it was outstanding
    bridge_running: tuple[int, float] | None = None  # (line, seen) of "running"
    bridge_result: tuple[int, float, str, str] | None = None  # (line, seen, OK/FAIL, why)
    bridge_extra_results: int = 0
    frames: list[WireFrame] = attrs.Factory(list)

    @property
    def shown(self) -> str:
        """The payload as the bridge logs it."""
        return describe_payload(self.payload)


@attrs.define(eq=False)
class WireFrame:
    """A request frame the bridge logged sending."""

    line: int
    seen: float
    frame: object
    command: Sent | None
    after_result: bool  # sent after its command's result line
    received: float | None = None  # when the simulator logged receiving it


@attrs.define(eq=False)
class Received:
    """A request the simulator logged receiving."""

    seen: float
    kind: str  # "write" or "read"
    register: int
    value: int | None  # write value or read count


# -- the logs ------------------------------------------------------------------------

COMMAND_LINE = re.compile(
    r"\] (?P<topic>\S+/cmd/\S+) (?P<shown>.*?)"
    r"(?:(?P<running>: running)| -> (?P<result>OK|FAIL)(?: \((?P<why>.*)\))?)$"
)
SENDING = re.compile(r"\] \S+: sending (?P<hex>[0-9a-f]+)$")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Unhandled Error")
ERROR_LEVEL = re.compile(r"#(error|critical)\]")
BRIDGE_COUNTED = {
    "datalogger connected": re.compile(r"\] \S+: connected to "),
    "datalogger lost": re.compile(r"\] \S+: connection to .* lost"),
    "datalogger cannot connect": re.compile(r"\] \S+: cannot connect"),
    "broker connected": re.compile(r"Connected to MQTT broker"),
    "broker lost": re.compile(r"Lost MQTT broker"),
    "broker unreachable": re.compile(r"Cannot reach MQTT broker"),
    "bad-frame lines": re.compile(r": skipped \d+ bytes"),
}
REQUEST = re.compile(
    r"request from \S+: (?:WriteSingleRequest register=(?P<wreg>\d+) value=(?P<value>\d+)"
    r"|ReadRequest device_function=\S+ register=(?P<rreg>\d+) count=(?P<count>\d+))"
)
SIM_TO_CLIENT = re.compile(r"\] to \S+: .*: (?P<hex>[0-9a-f ]+)$")
SIM_FAULTS = {
    "corrupt CRC": re.compile(r"corrupting the CRC"),
    "BUSY reply": re.compile(r"answering BUSY \(fault injection\)"),
    "mute (request unanswered)": re.compile(r"not replying \(fault injection: mute\)"),
    "silent (bytes ignored)": re.compile(r"\] silent: ignoring \d+ bytes"),
    "connection dropped": re.compile(r"dropping the connection .*fault injection"),
    "foreign frame": re.compile(r"sending foreign traffic \(fault injection\)"),
}


class BridgeLog:
    """Reads the bridge's log as it grows: commands, frames sent, connections, trouble."""

    def __init__(self, soak: Soak):
        self.soak = soak
        self.lines = 0
        self.bytes = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.open: list[Sent] = []  # "running" seen, no result line yet (oldest first)
        self.frames: list[WireFrame] = []
        self.unmatched_lines: list[str] = []  # command lines for no command the soak sent
        self.tracebacks: list[str] = []
        self.errors: list[str] = []
        self.broker_connected_at: float | None = None

    def feed(self, line: str, now: float) -> None:
        """One log line, read at ``now``."""
        self.lines += 1
        self.bytes += len(line) + 1
        index = self.lines
        if TRACEBACK.search(line):
            self.tracebacks.append(line)
        if ERROR_LEVEL.search(line):
            self.errors.append(line)
        for what, pattern in BRIDGE_COUNTED.items():
            if pattern.search(line):
                self.counts[what] += 1
                if what == "broker connected":
                    self.broker_connected_at = now
        match = SENDING.search(line)
        if match:
            self._sent(bytes.fromhex(match["hex"]), index, now)
            return
        match = COMMAND_LINE.search(line)
        head = self.soak.topic("cmd", "")
        if match and match["topic"].startswith(head):
            name = match["topic"][len(head):]
            if match["running"]:
                self._running(name, match["shown"], index, now)
            else:
                self._result(name, match["shown"], index, now, match["result"],
                             match["why"] or "")

    def _find(self, name: str, shown: str, unanswered) -> Sent | None:
        for command in self.soak.by_name[name]:
            if unanswered(command) and command.shown == shown:
                return command
        return None

    def _running(self, name: str, shown: str, index: int, now: float) -> None:
        command = self._find(name, shown, lambda c: c.bridge_running is None
                             and c.bridge_result is None)
        if command is None:
            self.unmatched_lines.append(f"line {index}: {name} {shown}: running")
            return
        command.bridge_running = (index, now)
        self.open.append(command)

    def _result(self, name: str, shown: str, index: int, now: float, result: str,
                why: str) -> None:
        command = self._find(name, shown, lambda c: c.bridge_result is None)
        if command is None:
            # A second result line: for the latest command it could belong to.
            earlier = [c for c in self.soak.by_name[name] if c.shown == shown]
            if earlier:
                earlier[-1].bridge_extra_results += 1
            self.unmatched_lines.append(f"line {index}: {name} {shown} -> {result} {why}")
            return
        command.bridge_result = (index, now, result, why)
        with contextlib.suppress(ValueError):
            self.open.remove(command)

    def _sent(self, data: bytes, index: int, now: float) -> None:
        try:
            frame = lxp.parse(data, lxp.Direction.TO_DONGLE)  # what the bridge sent
        except lxp.FrameError:
            frame = data
        for command in self.open:  # the bridge runs them in order: the oldest that fits
            if fits(frame, command.expected):
                self.frames.append(WireFrame(index, now, frame, command, False))
                command.frames.append(self.frames[-1])
                return
        answered = [c for c in self.soak.commands
                    if c.bridge_result is not None and fits(frame, c.expected)]
        command = max(answered, key=lambda c: c.bridge_result[0], default=None)
        self.frames.append(WireFrame(index, now, frame, command, command is not None))
        if command is not None:
            command.frames.append(self.frames[-1])


class SimulatorLog:
    """Reads the simulator's log as it grows: requests received, faults injected."""

    def __init__(self):
        self.received: list[Received] = []
        self.faults: collections.Counter[str] = collections.Counter()
        self.tracebacks: list[str] = []
        self.profile: dict[str, object] = {}

    def feed(self, line: str, now: float) -> None:
        """One log line, read at ``now``."""
        if TRACEBACK.search(line):
            self.tracebacks.append(line)
        match = REQUEST.search(line)
        if match:
            if match["wreg"] is not None:
                self.received.append(Received(now, "write", int(match["wreg"]),
                                              int(match["value"])))
            else:
                self.received.append(Received(now, "read", int(match["rreg"]),
                                              int(match["count"])))
            if self.profile.get("reply-delay") and not self.profile.get("mute"):
                self.faults["reply delayed"] += 1
            return
        match = SIM_TO_CLIENT.search(line)
        if match:
            if not match["hex"].startswith("a1 1a"):
                self.faults["garbage before a frame"] += 1
            if self.profile.get("split"):
                self.faults["frame split"] += 1
            return
        for what, pattern in SIM_FAULTS.items():
            if pattern.search(line):
                self.faults[what] += 1
                return


# -- the soak's MQTT client ------------------------------------------------------------


class SoakClient:
    """paho in its own thread; every callback becomes an event the main loop drains.

    A persistent session (clean_session off) on a broker with persistence: a
    result published while the soak's client reconnects waits for it.
    """

    def __init__(self, port: int, prefix: str):
        self._lock = threading.Lock()
        self._events: list[tuple] = []
        self.prefix = prefix
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"octolux-soak-{os.getpid()}",
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._event("subscribed")
        self.client.on_disconnect = lambda *_: self._event("disconnected")
        self.client.on_publish = lambda client, userdata, mid, *_: self._event("acked", mid)
        self.client.on_message = self._on_message
        self.client.connect_async(HOST, port)
        self.client.loop_start()

    def _event(self, *event) -> None:
        with self._lock:
            self._events.append((time.monotonic(), *event))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(f"{self.prefix}/result/#", 1), (f"{self.prefix}/status", 1)])
        self._event("connected")

    def _on_message(self, client, userdata, message) -> None:
        self._event("message", message.topic, bytes(message.payload), bool(message.retain),
                    bool(message.dup))

    def events(self) -> list[tuple]:
        """Everything that happened since the last call, in order."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish with QoS 1; the message id, acknowledged later by an ``acked`` event."""
        return self.client.publish(topic, payload, qos=1).mid

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()


# -- the processes -----------------------------------------------------------------------


def start_broker(workdir: Path, port: int, run: int) -> Child:
    """mosquitto on ``port`` with persistence in ``workdir``; waits until it accepts."""
    executable = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if executable is None:
        raise SystemExit("mosquitto is not installed (run scripts/setup-env.sh)")
    conf = workdir / "mosquitto.conf"
    # Run as root, mosquitto would switch to its own user, who cannot save to workdir.
    conf.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence true\n"
        f"persistence_location {workdir}/\nmax_queued_messages 100000\n"
        f"user {getpass.getuser()}\n"
    )
    broker = Child.spawn(f"mosquitto-{run}", [executable, "-c", str(conf)], workdir)
    deadline = time.monotonic() + 10
    while True:
        broker.check_alive()
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return broker
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto not listening on {port}:\n{broker.tail()}") from None
            time.sleep(POLL)


def bridge_config(sim_port: int, broker_port: int, prefix: str, timeout: float) -> str:
    """config.ini for the bridge: the simulator, the broker, short timeouts."""
    return (
        f"[lxp]\nhost = {HOST}\nport = {sim_port}\nserial = {SERIAL}\ndatalog = {DATALOG}\n"
        f"command_timeout = {timeout:g}\nno_data_timeout = {2.5 * timeout:g}\n\n"
        f"[server]\nlisten_host = {HOST}\nport = 0\n\n"
        f"[mqtt]\nuri = mqtt://{HOST}:{broker_port}\nprefix = {prefix}\n"
    )


# -- the soak --------------------------------------------------------------------------


class Soak:
    """The run: processes, schedule, commands; then the figures."""

    def __init__(self, args, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.chance = random.Random(args.seed)
        self.timeout = args.command_timeout
        self.prefix = f"soak{os.getpid()}"
        self.maker = CommandMaker(self.chance)
        self.profiles = fault_profiles(self.timeout)
        self.commands: list[Sent] = []
        self.by_name: dict[str, list[Sent]] = collections.defaultdict(list)
        self.by_mid: dict[int, Sent] = {}
        self.outstanding: dict[str, Sent] = {}
        self.free_at: dict[str, float] = {}
        self.bridge_log = BridgeLog(self)
        self.simulator_log = SimulatorLog()
        self.broker = self.simulator = self.bridge = self.client = None
        self.broker_port = free_port()
        self.simulator_port = free_port()
        self.client_ready = False  # connected and subscribed
        self.bridge_ready = False  # its "online" seen since the broker last started
        self.broker_started = 0.0
        self.broker_down_until: float | None = None
        self.frozen_until: float | None = None
        self.runs = 0  # simulator runs started
        self.broker_runs = 0
        self.soak_faults: collections.Counter[str] = collections.Counter()
        self.profile_seconds: collections.Counter[str] = collections.Counter()
        self.profile_name = ""
        self.profile_started = 0.0
        self.unexpected_results: list[str] = []
        self.rss_start_kib = self.rss_end_kib = self.hwm_kib = 0
        self.bridge_alive_at_end = False
        self.bridge_stop_seconds = 0.0
        self.bridge_exit = None
        self.started = time.monotonic()
        # What the soak's client saw, for a look afterwards; closed by stop().
        self.mqtt_log = open(workdir / "mqtt.log", "w")  # noqa: SIM115

    def topic(self, kind: str, name: str) -> str:
        """``<prefix>/<kind>/<name>``."""
        return f"{self.prefix}/{kind}/{name}"

    # -- processes -------------------------------------------------------------------

    def start_simulator(self) -> None:
        """Start the simulator with the next fault profile, on the same port as before."""
        name, options = self.profiles[self.runs % len(self.profiles)]
        self.runs += 1
        now = time.monotonic()
        if self.profile_name:
            self.profile_seconds[self.profile_name] += now - self.profile_started
        self.profile_name, self.profile_started = name, now
        self.simulator_log.profile = options
        # One log per run: a Child reads its log from the start.
        self.simulator = Child.spawn(f"simulator-{self.runs}", twistd() + [
            "-n", "--pidfile=", "-l", "-", "lxp-simulator", "--port", str(self.simulator_port),
            "--datalog", DATALOG, "--serial", SERIAL, "--interval", "2", "--burst-gap", "0.1",
            "--first-burst-delay", "0.2", "--heartbeat", "5", "--seed",
            str(self.args.seed + self.runs), "--state", str(self.workdir / "state.json"),
            "--verbose", *profile_arguments(options),
        ], self.workdir)

    def stop_simulator(self) -> None:
        """Stop the simulator (thawed first) and read its log to the end."""
        self.thaw()
        self.simulator.stop()
        self.read_logs()

    def freeze(self, now: float) -> None:
        """SIGSTOP the simulator: a dongle that stops reading its socket."""
        os.kill(self.simulator.pid, signal.SIGSTOP)
        self.frozen_until = now + self.args.freeze_factor * self.timeout
        self.soak_faults["simulator frozen (SIGSTOP)"] += 1

    def thaw(self) -> None:
        """SIGCONT the simulator if it is frozen."""
        if self.frozen_until is not None:
            self.frozen_until = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.simulator.pid, signal.SIGCONT)

    def start_broker(self) -> None:
        """Start mosquitto on its port; the bridge is not ready until it is back on it."""
        self.broker_runs += 1
        self.broker = start_broker(self.workdir, self.broker_port, self.broker_runs)
        self.broker_started = time.monotonic()
        self.bridge_ready = False

    def stop_broker(self, now: float) -> None:
        """Stop mosquitto for a while; commands waiting now span the restart."""
        self.broker.stop()
        self.client_ready = self.bridge_ready = False
        for command in self.outstanding.values():
            command.spans_broker_restart = True
        self.soak_faults["broker restarts"] += 1
        self.broker_down_until = now + self.chance.uniform(*BROKER_DOWN)
        print(f"{now - self.started:.3f} broker stopped", file=self.mqtt_log)

    # -- the loop -------------------------------------------------------------------------

    def read_logs(self) -> None:
        """Read what the bridge and the simulator logged since the last look."""
        now = time.monotonic()
        for line in self.bridge.new_lines():
            self.bridge_log.feed(line, now)
        # Should the fresh "online" be missed (the broker lost the soak's session), the
        # bridge's own "Connected" line, a second old, says it has subscribed too.
        connected = self.bridge_log.broker_connected_at
        if (self.broker_down_until is None and connected is not None
                and self.broker_started <= connected < now - SUBSCRIBED_AFTER):
            self.set_bridge_ready(now)
        for line in self.simulator.new_lines():
            self.simulator_log.feed(line, now)

    def handle_events(self) -> None:
        """Apply what the soak's MQTT client saw since the last look."""
        for at, kind, *rest in self.client.events():
            print(f"{at - self.started:.3f} {kind} {rest}", file=self.mqtt_log)
            if kind == "connected":
                self.client_ready = False
            elif kind == "subscribed":
                self.client_ready = True
            elif kind == "disconnected":
                self.client_ready = False
            elif kind == "acked":
                command = self.by_mid.get(rest[0])
                if command is not None and command.acked is None:
                    command.acked = at
            elif kind == "message":
                self.message(at, *rest)

    def message(self, at: float, topic: str, payload: bytes, retained: bool,
                duplicate: bool) -> None:
        """A status or result message: the bridge is ready, or a command has its result."""
        if topic == f"{self.prefix}/status":
            # A fresh "online" (not a replayed retained one) since the broker started:
            # the bridge has re-subscribed, commands reach it again.
            if payload == b"online" and not retained and at >= self.broker_started:
                self.set_bridge_ready(at)
            return
        name = topic.removeprefix(self.topic("result", ""))
        result = payload.decode("utf-8", "replace")
        if duplicate:
            result += " (DUP)"  # a QoS 1 retransmission, marked as such by its sender
        command = self.outstanding.get(name)
        if command is not None:
            command.results.append((at, result))
            if not command.missing:
                del self.outstanding[name]
                self.free_at[name] = at + COOLDOWN
            return
        sent = self.by_name.get(name)
        if sent:
            sent[-1].results.append((at, result))  # a duplicate (or a very late one)
        else:
            self.unexpected_results.append(f"{topic} {result}")

    def set_bridge_ready(self, at: float) -> None:
        """The bridge is back on the broker: results still due get their time from now."""
        if not self.bridge_ready:
            for command in self.outstanding.values():
                command.deadline = max(command.deadline, at + self.timeout + RESULT_GRACE)
        self.bridge_ready = True

    def expire(self, now: float) -> None:
        """Mark commands past their deadline missing; free their name after QUARANTINE."""
        for name, command in list(self.outstanding.items()):
            if not command.missing and now > command.deadline:
                command.missing = True
                self.free_at[name] = now + QUARANTINE
            elif command.missing and now > self.free_at[name]:
                del self.outstanding[name]

    def send_command(self, now: float) -> None:
        """Publish the next command, on a name with none outstanding."""
        free = [name for name in NAME_WEIGHTS
                if name not in self.outstanding and self.free_at.get(name, 0) <= now]
        if not free:
            return
        name = self.chance.choices(free, [NAME_WEIGHTS[name] for name in free])[0]
        payload = self.maker.make(name)
        command = Sent(len(self.commands) + 1, name, payload, expected_request(name, payload),
                       now, now + self.timeout + RESULT_GRACE,
                       self.profile_name + (" (frozen)" if self.frozen_until else ""))
        self.commands.append(command)
        self.by_name[name].append(command)
        self.outstanding[name] = command
        command.mid = self.client.publish(self.topic("cmd", name), payload)
        self.by_mid[command.mid] = command

    def check_alive(self) -> None:
        """Raise if a process that should be running has exited."""
        self.bridge.check_alive()
        if self.frozen_until is None:
            self.simulator.check_alive()
        if self.broker_down_until is None:
            self.broker.check_alive()

    def wait_ready(self, what: str) -> None:
        """Until the soak's client and the bridge are both on the broker."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not (self.client_ready and self.bridge_ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: the bridge not back on MQTT within "
                                   f"{READY_TIMEOUT:g} s:\n{self.bridge.tail()}")
            self.check_alive()
            self.read_logs()
            self.handle_events()
            time.sleep(POLL)

    def run(self) -> None:
        """Start everything, run the schedule for --seconds, then drain the results due."""
        args = self.args
        self.start_broker()
        self.client = SoakClient(self.broker_port, self.prefix)
        self.start_simulator()
        config = self.workdir / "config.ini"
        config.write_text(bridge_config(self.simulator_port, self.broker_port, self.prefix,
                                        self.timeout))
        self.bridge = Child.spawn("bridge", twistd() + [
            "-n", "--pidfile=", "-l", "-", "octolux", "-c", str(config), "--log-level", "debug",
        ], self.workdir)
        self.wait_ready("start")
        self.rss_start_kib, _ = self.bridge.memory_kib()
        print(f"soak: {args.seconds:g} s, seed {args.seed}, {args.commands_per_second:g} "
              f"commands/s, command_timeout {self.timeout:g} s; working in {self.workdir}",
              flush=True)

        chance = self.chance
        start = self.started = time.monotonic()
        end = start + args.seconds
        next_command = start
        next_simulator = start + chance.uniform(0.7, 1.3) * args.simulator_every
        next_broker = start + chance.uniform(0.7, 1.3) * args.broker_every
        next_freeze = start + chance.uniform(0.7, 1.3) * args.freeze_every
        progress = start + 60
        while True:
            now = time.monotonic()
            self.check_alive()
            self.read_logs()
            self.handle_events()
            self.expire(now)
            if now >= end:
                break
            if self.frozen_until is not None and now >= self.frozen_until:
                self.thaw()
            if self.broker_down_until is not None:
                if now >= self.broker_down_until:
                    self.broker_down_until = None
                    self.start_broker()
            elif now >= next_broker:
                self.stop_broker(now)
                next_broker = now + chance.uniform(0.7, 1.3) * args.broker_every
            if now >= next_simulator and self.frozen_until is None:
                self.stop_simulator()
                self.soak_faults["simulator restarts"] += 1
                self.start_simulator()
                next_simulator = now + chance.uniform(0.7, 1.3) * args.simulator_every
            elif now >= next_freeze and self.frozen_until is None:
                self.freeze(now)
                # The simulator restarts only once thawed, and runs a little after.
                next_simulator = max(next_simulator, self.frozen_until + 2)
                next_freeze = now + chance.uniform(0.7, 1.3) * args.freeze_every
            if now >= next_command:
                next_command += 1 / args.commands_per_second
                if self.client_ready and self.bridge_ready:
                    self.send_command(now)
            if now >= progress:
                progress += 60
                print(f"  {now - start:4.0f} s: {len(self.commands)} commands, simulator "
                      f"'{self.profile_name}', bridge RSS {self.bridge.memory_kib()[0] / 1024:.1f}"
                      f" MiB", flush=True)
            time.sleep(POLL)

        # Drain: no more commands, no more faults; wait for the results still due.
        self.thaw()
        if self.broker_down_until is not None:
            self.broker_down_until = None
            self.start_broker()
        self.wait_ready("drain")
        quiet_until = None  # a little longer once nothing is due: a duplicate comes now
        while quiet_until is None or time.monotonic() < quiet_until:
            if quiet_until is None and all(c.missing for c in self.outstanding.values()):
                quiet_until = time.monotonic() + DUPLICATE_WAIT
            self.check_alive()
            self.read_logs()
            self.handle_events()
            self.expire(time.monotonic())
            time.sleep(POLL)
        self.profile_seconds[self.profile_name] += time.monotonic() - self.profile_started
        self.bridge_alive_at_end = self.bridge.proc.poll() is None
        self.rss_end_kib, self.hwm_kib = self.bridge.memory_kib()

    def stop(self) -> None:
        """Stop everything started, whatever state it is in; read the logs to their end."""
        if self.bridge is not None:
            self.bridge_stop_seconds = self.bridge.stop()
            self.bridge_exit = self.bridge.proc.returncode
        if self.simulator is not None:
            self.thaw()
            self.simulator.stop()
        if self.client is not None:
            self.client.close()
        if self.broker is not None:
            self.broker.stop()
        self.mqtt_log.close()
        if self.bridge is not None and self.simulator is not None:
            self.read_logs()


# -- the figures --------------------------------------------------------------------------


def match_received(soak: Soak) -> list[Received]:
    """Pair each write the simulator received with the write frame the bridge sent.

    The simulator receives, in order, a subsequence of what the bridge sent
    (frames on a connection that dropped are lost). Returns the received
    writes that match no sent frame.
    """
    sent = [f for f in soak.bridge_log.frames if isinstance(f.frame, lxp.WriteSingleRequest)]
    unmatched = []
    position = 0
    for received in soak.simulator_log.received:
        if received.kind != "write":
            continue
        for index in range(position, len(sent)):
            frame = sent[index].frame
            if (frame.register, frame.value) == (received.register, received.value):
                sent[index].received = received.seen
                position = index + 1
                break
        else:
            unmatched.append(received)
    return unmatched


def figures(soak: Soak) -> dict:
    """Every figure of the run, and the invariants, as plain data."""
    unmatched_writes = match_received(soak)
    acked = [c for c in soak.commands if c.acked is not None]
    outcome: collections.Counter[str] = collections.Counter()
    fail_reasons: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    explained: collections.Counter[str] = collections.Counter()
    notes: list[str] = []
    for command in acked:
        results = [result.removesuffix(" (DUP)") for _, result in command.results]
        label = f"#{command.number} {command.name} {command.shown!r}"
        if len(results) == 1:
            outcome[results[0]] += 1
        elif not results:
            if command.spans_broker_restart and command.bridge_running is None \
                    and command.bridge_result is None:
                explained["lost by the broker restart (never reached the bridge)"] += 1
                notes.append(f"never reached the bridge (broker restart): {label}")
            elif command.spans_broker_restart and command.bridge_result is not None:
                explained["result lost across a broker restart"] += 1
                notes.append(f"result lost across a broker restart: {label}, published "
                             f"{command.published - soak.started:.2f} s, bridge result "
                             f"{command.bridge_result[1] - soak.started:.2f} s")
            else:
                outcome["missing"] += 1
                problems.append(f"no result for {label} (bridge log: running line "
                                f"{command.bridge_running}, result {command.bridge_result})")
        else:
            if command.spans_broker_restart and command.bridge_extra_results == 0:
                explained["duplicate redelivered across a broker restart"] += 1
                notes.append(f"redelivered across a broker restart: {label}: "
                             f"{[result for _, result in command.results]}, the bridge "
                             f"logged one")
            else:
                outcome["duplicates"] += 1
                problems.append(f"{len(results)} results {results} for {label}")
        if command.bridge_result is not None and command.bridge_result[2] == "FAIL":
            why = command.bridge_result[3]
            fail_reasons[re.sub(r"\d+(\.\d+)?", "N", why) if command.expected else
                         "refused payload"] += 1
        if command.bridge_extra_results:
            outcome["duplicates"] += 0  # counted above through MQTT; logged here
            problems.append(f"{command.bridge_extra_results + 1} result lines in the bridge log "
                            f"for {label}")
    by_profile: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    for command in acked:
        if command.expected is not None and len(command.results) == 1:
            by_profile[command.profile][command.results[0][1].removesuffix(" (DUP)")] += 1
    bad_ok = [c for c in acked if c.expected is None
              and any(result.startswith("OK") for _, result in c.results)]
    for command in bad_ok:
        problems.append(f"bad payload answered OK: #{command.number} {command.name} "
                        f"{command.shown!r}")

    writes = [f for f in soak.bridge_log.frames if isinstance(f.frame, lxp.WriteSingleRequest)]
    after_fail = [f for f in writes if f.after_result and f.command.bridge_result[2] == "FAIL"]
    after_ok = [f for f in writes if f.after_result and f.command.bridge_result[2] == "OK"]
    unasked = [f for f in writes if f.command is None]
    late = [f for f in writes if not f.after_result and f.command is not None
            and f.received is not None and f.command.bridge_result is not None
            and f.command.bridge_result[2] == "FAIL" and f.received > f.command.bridge_result[1]]
    executed_fails = [c for c in acked if c.bridge_result and c.bridge_result[2] == "FAIL"
                      and any(f.received is not None for f in c.frames
                              if isinstance(f.frame, lxp.WriteSingleRequest))]
    # Issue 8 defect 5: a request put on the wire with almost none of its time left.
    hurried = [f for f in soak.bridge_log.frames if f.command is not None and not f.after_result
               and f.command.bridge_running is not None
               and f.command.bridge_running[1] + soak.timeout - f.seen < HURRIED * soak.timeout]
    wrong_fails = [c for c in executed_fails if c.bridge_result[3].startswith("echo mismatch")]
    for frame in after_fail:
        problems.append(f"write {frame.frame.register}={frame.frame.value} sent after FAIL "
                        f"(bridge log line {frame.line}) for #{frame.command.number} "
                        f"{frame.command.name} {frame.command.shown!r}")
    for frame in after_ok + unasked:
        problems.append(f"write {frame.frame.register}={frame.frame.value} nobody asked for "
                        f"(bridge log line {frame.line})")
    for command in wrong_fails:
        problems.append(f"wrong FAIL ({command.bridge_result[3]}) for #{command.number} "
                        f"{command.name} {command.shown!r}: its write reached the inverter")
    problems += [f"bridge traceback: {line}" for line in soak.bridge_log.tracebacks[:5]]
    problems += [f"bridge log, unmatched: {line}" for line in soak.bridge_log.unmatched_lines[:5]]

    invariants = {
        "exactly one result per acknowledged command":
            outcome["missing"] == 0 and outcome["duplicates"] == 0
            and not any(c.bridge_extra_results for c in acked),
        "no write after FAIL": not after_fail,
        "no write nobody asked for": not after_ok and not unasked,
        "no bad payload answered OK": not bad_ok,
        "no echo-mismatch FAIL for an executed write": not wrong_fails,
        "no traceback in the bridge log": not soak.bridge_log.tracebacks,
        "bridge alive at the end": soak.bridge_alive_at_end,
    }
    log = soak.bridge_log
    return {
        "seconds": soak.args.seconds,
        "seed": soak.args.seed,
        "command_timeout": soak.timeout,
        "faults": dict(sorted((soak.simulator_log.faults + soak.soak_faults).items())),
        "profiles": {name: round(seconds, 1) for name, seconds in soak.profile_seconds.items()},
        "reconnections": {key: log.counts[key] for key in BRIDGE_COUNTED
                          if key != "bad-frame lines"},
        "commands": {
            "published": len(soak.commands),
            "acknowledged": len(acked),
            "not acknowledged": len(soak.commands) - len(acked),
            "invalid (must FAIL)": sum(1 for c in acked if c.expected is None),
            "OK": outcome["OK"],
            "FAIL": outcome["FAIL"],
            "missing": outcome["missing"],
            "duplicates": outcome["duplicates"],
            **explained,
        },
        "fail reasons": dict(fail_reasons.most_common()),
        "valid commands by profile": {
            profile: f"{counts['OK']} OK, {counts['FAIL']} FAIL"
            for profile, counts in sorted(by_profile.items())},
        "writes": {
            "sent by the bridge": len(writes),
            "received by the inverter": sum(1 for f in writes if f.received is not None),
            "received, never sent": len(unmatched_writes),
            "sent after FAIL": len(after_fail),
            "sent after OK or unasked": len(after_ok) + len(unasked),
            "sent before FAIL, executed after it (defect 7)": len(late),
            "FAIL although the inverter executed the write": len(executed_fails),
            "echo-mismatch FAIL for an executed write (defect 1)": len(wrong_fails),
        },
        "requests": {
            "sent by the bridge": len(soak.bridge_log.frames),
            f"sent with under {HURRIED:.0%} of their time left (defect 5)": len(hurried),
        },
        "bridge log": {
            "lines": log.lines,
            "MiB": round(log.bytes / 2**20, 2),
            "bad-frame lines": log.counts["bad-frame lines"],
            "tracebacks": len(log.tracebacks),
            "error lines": len(log.errors),
            "command lines for no command sent": len(log.unmatched_lines),
        },
        "simulator tracebacks": len(soak.simulator_log.tracebacks),
        "bridge RSS MiB": {
            "start": round(soak.rss_start_kib / 1024, 1),
            "end": round(soak.rss_end_kib / 1024, 1),
            "peak": round(soak.hwm_kib / 1024, 1),
            "end / start": round(soak.rss_end_kib / soak.rss_start_kib, 2)
            if soak.rss_start_kib else None,
        },
        "bridge stop": {"seconds": round(soak.bridge_stop_seconds, 2),
                        "exit status": soak.bridge_exit},
        "results on no command": soak.unexpected_results[:10],
        "invariants": invariants,
        "problems": problems[:50],
        "notes": notes[:50],
    }


def report(summary: dict) -> None:
    """The figures, one section a line group."""
    print()
    print(f"fault soak: {summary['seconds']:g} s, seed {summary['seed']}, command_timeout "
          f"{summary['command_timeout']:g} s")
    for section in ("faults", "profiles", "reconnections", "commands", "fail reasons",
                    "valid commands by profile", "writes",
                    "requests", "bridge log", "bridge RSS MiB", "bridge stop"):
        items = summary[section]
        print(f"{section}:")
        for key, value in items.items():
            print(f"  {key:<52} {value}")
    print(f"simulator tracebacks: {summary['simulator tracebacks']}")
    if summary["results on no command"]:
        print(f"results for no command sent: {summary['results on no command']}")
    print("invariants:")
    for name, held in summary["invariants"].items():
        print(f"  {'ok    ' if held else 'BROKEN'} {name}")
    if summary["notes"]:
        print("notes:")
        for line in summary["notes"]:
            print(f"  {line}")
    if summary["problems"]:
        print("problems:")
        for line in summary["problems"]:
            print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 if every invariant held, 1 if one broke, 2 if it could not run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=900.0, help="length of the run")
    parser.add_argument("--seed", type=int, default=1, help="commands, payloads, fault schedule")
    parser.add_argument("--commands-per-second", type=float, default=2.0)
    parser.add_argument("--command-timeout", type=float, default=5.0,
                        help="the bridge's command_timeout; faults are set against it")
    parser.add_argument("--simulator-every", type=float, default=20.0,
                        help="mean seconds between simulator restarts (next fault profile)")
    parser.add_argument("--broker-every", type=float, default=37.0,
                        help="mean seconds between broker restarts")
    parser.add_argument("--freeze-every", type=float, default=29.0,
                        help="mean seconds between simulator freezes (SIGSTOP)")
    parser.add_argument("--freeze-factor", type=float, default=1.7,
                        help="a freeze lasts this many command timeouts")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    args = parser.parse_args(argv)

    # SIGTERM (a test's timeout, say) must still stop everything started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="octolux-soak-"))
    soak = Soak(args, workdir)
    keep = args.keep
    try:
        soak.run()
    except RuntimeError as error:
        print(f"soak could not run: {error}")
        keep = True
        return 2
    except BaseException:
        keep = True
        raise
    finally:
        soak.stop()
        if keep:
            print(f"logs kept in {workdir}")
    summary = figures(soak)
    report(summary)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))
    held = all(summary["invariants"].values())
    if held and not keep:
        shutil.rmtree(workdir)
    elif not keep:
        print(f"logs kept in {workdir}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
