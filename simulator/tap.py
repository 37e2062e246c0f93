"""``twistd lxp-simulator``: the command line. Options and makeService, wiring only."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from twisted.application import service
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.python import usage

from octolux.lxp import check_serial
from simulator.dialer import DialingDongle
from simulator.dongle import (
    DEFAULT_DATALOG_SERIAL,
    BroadcastFormat,
    Dongle,
    DongleConfig,
    Faults,
    set_verbose,
)
from simulator.modbus_server import ModbusListen, ModbusServer
from simulator.models import DEFAULT_MODEL, SIMULATED_MODELS, DongleKind
from simulator.registers import DEFAULT_INVERTER_SERIAL, HoldingRegisters, RegisterError
from simulator.state import StateFileError, read_state


def serial_for(base: str, index: int) -> str:
    """The serial of dongle ``index`` (0-based) of ``--count``: the base with its number + index.

    ``serial_for("SIMDL00001", 2) == "SIMDL00003"``; the trailing digits keep their width.
    """
    if index == 0:
        return base
    match = re.fullmatch(r"(.*?)(\d+)", base)
    if match is None:
        raise ValueError(f"{base!r} must end in digits to number {index + 1} dongles")
    prefix, digits = match.groups()
    number = int(digits) + index
    if len(str(number)) > len(digits):
        raise ValueError(f"{base!r} has too few digits to number {index + 1} dongles")
    return f"{prefix}{number:0{len(digits)}d}"


def state_path_for(path: str, index: int, count: int) -> str:
    """The state file of dongle ``index``: ``path`` for one dongle, else ``NAME-<index>.EXT``."""
    if count == 1:
        return path
    original = Path(path)
    return str(original.with_name(f"{original.stem}-{index}{original.suffix}"))


def _number(kind, low=None, high=None, low_open=False):
    """A coercer for usage.Options that checks the range; its ValueError message is shown."""

    def coerce(text):
        value = kind(text)
        if low is not None and (value <= low if low_open else value < low):
            raise ValueError(f"must be {'more than' if low_open else 'at least'} {low}: {text}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}: {text}")
        return value

    coerce.coerceDoc = ""
    return coerce


_positive = _number(float, 0, low_open=True)
_non_negative = _number(float, 0)
_probability = _number(float, 0, 1)


class Options(usage.Options):
    """Options of ``twistd lxp-simulator``."""

    synopsis = "[options]"
    longdesc = (
        "A simulated LuxPower inverter behind its WiFi datalogger: listens like a dongle on "
        "TCP port 8000, sends heartbeats and input broadcasts, answers reads and writes, and "
        "simulates PV, battery, house and grid. Fault injection options are all off by default."
    )

    optFlags = [
        ["mute", None, "Fault: answer no request (heartbeats and broadcasts go on)."],
        ["grid-down", None, "Fault: a power cut; the inverter runs off grid, on EPS if "
         "register 21 bit 0 allows, down to the EPS cut-off SOC (register 125)."],
        ["verbose", "v", "Log every frame's bytes (debug level)."],
    ]

    optParameters = [
        ["port", "p", 8000, "TCP port to listen on; with --count, the first of N consecutive "
         "ports (0: any free port).", _number(int, 0, 65535)],
        ["interface", None, "127.0.0.1", "Interface to listen on (0.0.0.0: all)."],
        ["datalog", None, DEFAULT_DATALOG_SERIAL, "Datalog (dongle) serial, 10 characters."],
        ["serial", None, DEFAULT_INVERTER_SERIAL, "Inverter serial, 10 characters."],
        ["interval", None, 120.0, "Seconds between input broadcasts (param 0).", _positive],
        ["burst-gap", None, 1.0, "Seconds between the three frames of a burst.", _non_negative],
        ["first-burst-delay", None, 1.0, "Seconds from a client connecting to the first burst.",
         _non_negative],
        ["heartbeat", None, 60.0, "Seconds between heartbeats.", _positive],
        ["format", None, "bursts", "Input broadcasts: 'bursts' (three 40-register frames, "
         "protocol 2) or 'all127' (one 127-register frame, protocol 5)."],
        ["dongle", None, "ba", "The dongle's series: 'ba' (replies with address byte 1), or "
         "'bj' or 'dg' (replies with address byte 0 and protocol 5, pushes holding registers "
         "0-79 to each client as it connects, and inputs as 127-register frames from 0, 127 "
         "and 254)."],
        ["model", None, DEFAULT_MODEL.slug, "The inverter model: what registers 7-10 and 19 "
         "report and which input registers exist: " + ", ".join(SIMULATED_MODELS) + "."],
        ["batteries", None, 0, "Battery modules reporting through input registers 5002-5121 "
         "(0: none, reads there get an exception reply); beyond 4 they rotate through the "
         "4 slots.", _number(int, 0, 64)],
        ["speed", None, 1.0, "Time acceleration of the simulated plant.", _positive],
        ["seed", None, None, "Random seed, for repeatable numbers.", int],
        ["start", None, None, "Simulated start time, ISO 8601 local time (default: now), e.g. "
         "2024-06-21T06:00."],
        ["clock-offset", None, 0.0, "Seconds the inverter's clock starts ahead of the simulated "
         "time (negative: behind), e.g. -300 for a clock 5 minutes slow; a client sets it with "
         "a write to registers 12-14.", float],
        ["state", None, None, "JSON file keeping the holding registers and the inverter "
         "clock across restarts (with --count, one file per dongle: NAME-<index>.EXT)."],
        ["count", None, 1, "Serve N independent dongles on ports port .. port+N-1, serials "
         "numbered on from --datalog and --serial.", _number(int, 1)],
        ["drop-every", None, None, "Fault: close each connection this many seconds after it "
         "was made.", _positive],
        ["garbage", None, 0.0, "Fault: probability of garbage bytes before a frame.",
         _probability],
        ["corrupt-crc", None, 0.0, "Fault: probability of a bad CRC on a data frame.",
         _probability],
        ["split", None, 0, "Fault: send frames in random TCP segments of 1..N bytes "
         "(0: off).", _number(int, 0)],
        ["reply-delay", None, 0.0, "Fault: seconds to wait before replying.", _non_negative],
        ["silent-after", None, None, "Fault: each connection goes silent (open, nothing sent, "
         "requests ignored) this many seconds after it was made.", _non_negative],
        ["exception-rate", None, 0.0, "Fault: probability of a BUSY exception reply to a "
         "register request.", _probability],
        ["max-clients", None, None, "Fault: close connections beyond N clients at once.",
         _number(int, 1)],
        ["foreign-traffic", None, None, "Fault: every this many seconds send a frame the vendor "
         "cloud or app would cause (replies to others' requests, write param frames, unknown "
         "input blocks).", _positive],
        ["connect", None, None, "Dial out to HOST:PORT like a real dongle dialling the vendor's "
         "server (or a bridge in server mode), reconnecting with backoff, instead of "
         "listening; with --count, N dongles dial the same address."],
        ["modbus", None, None, "Also serve the inverters' RS485 port: tcp:PORT (Modbus TCP), "
         "rtu-over-tcp:PORT, or pty:PATH (RTU on a new pseudo-terminal linked at PATH); with "
         "--count, inverter N is unit N."],
        ["unanswered-heartbeats", None, 3, "With --connect: stop broadcasting input data after "
         "this many heartbeats in a row go unanswered (real dongles do), until one is.",
         _number(int, 1)],
    ]

    def postOptions(self):
        for name in ("datalog", "serial"):
            try:
                check_serial(self[name], f"--{name}")
            except ValueError as error:
                raise usage.UsageError(str(error)) from None
        try:
            self["format"] = BroadcastFormat(self["format"])
        except ValueError:
            raise usage.UsageError(
                f"--format must be 'bursts' or 'all127': {self['format']!r}"
            ) from None
        try:
            self["dongle"] = DongleKind(self["dongle"])
        except ValueError:
            raise usage.UsageError(
                f"--dongle must be 'ba', 'bj' or 'dg': {self['dongle']!r}") from None
        if self["model"] not in SIMULATED_MODELS:
            raise usage.UsageError(f"--model must be one of {', '.join(SIMULATED_MODELS)}: "
                                   f"{self['model']!r}")
        if self["start"] is not None:
            try:
                self["start"] = datetime.datetime.fromisoformat(self["start"]).replace(tzinfo=None)
            except ValueError:
                raise usage.UsageError(
                    f"--start is not an ISO 8601 time: {self['start']!r}"
                ) from None
        if self["connect"] is not None:
            try:
                self["connect"] = parse_address(self["connect"])
            except ValueError as error:
                raise usage.UsageError(f"--connect: {error}") from None
        if self["modbus"] is not None:
            try:
                self["modbus"] = ModbusListen.parse(self["modbus"])
            except ValueError as error:
                raise usage.UsageError(f"--modbus: {error}") from None
        count = self["count"]
        if self["port"] and self["port"] + count - 1 > 65535:
            raise usage.UsageError(f"--port {self['port']} + --count {count} passes port 65535")
        try:
            self.configs = self._configs()
        except ValueError as error:
            raise usage.UsageError(str(error)) from None

    def _configs(self) -> list[DongleConfig]:
        faults = Faults(
            drop_every=self["drop-every"],
            garbage=self["garbage"],
            corrupt_crc=self["corrupt-crc"],
            split=self["split"],
            reply_delay=self["reply-delay"],
            mute=bool(self["mute"]),
            silent_after=self["silent-after"],
            exception_rate=self["exception-rate"],
            max_clients=self["max-clients"],
            foreign_traffic=self["foreign-traffic"],
            grid_down=bool(self["grid-down"]),
        )
        configs = []
        count = self["count"]
        for index in range(count):
            state = self["state"]
            if state is not None:
                state = state_path_for(state, index, count)
                saved = read_state(state)  # a broken state file is a usage error, found now
                try:
                    HoldingRegisters().load(saved or {})
                except RegisterError as error:
                    raise ValueError(f"state file {state!r}: {error}") from None
            seed = self["seed"]
            configs.append(DongleConfig(
                datalog=serial_for(self["datalog"], index),
                inverter=serial_for(self["serial"], index),
                interval=self["interval"],
                burst_gap=self["burst-gap"],
                heartbeat=self["heartbeat"],
                first_burst_delay=self["first-burst-delay"],
                format=self["format"],
                speed=self["speed"],
                seed=None if seed is None else seed + index,
                start=self["start"],
                clock_offset=self["clock-offset"],
                state_path=state,
                faults=faults,
                dongle=self["dongle"],
                model=self["model"],
                batteries=self["batteries"],
            ))
        return configs


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError says what is wrong."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT with a port 1-65535: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def makeService(options: Options, reactor=None) -> service.MultiService:
    """One Dongle service per ``--count``: listening on consecutive ports, or dialling out."""
    if reactor is None:
        from twisted.internet import reactor
    set_verbose(bool(options["verbose"]))
    simulators = service.MultiService()
    for index, config in enumerate(options.configs):
        try:
            dongle = _dongle(reactor, options, index, config)
        except StateFileError as error:
            raise usage.UsageError(str(error)) from None
        dongle.setServiceParent(simulators)
    if options["modbus"] is not None:
        responders = {unit: dongle.factory for unit, dongle in enumerate(simulators, 1)}
        ModbusServer(reactor, options["modbus"], responders,
                     interface=options["interface"]).setServiceParent(simulators)
    return simulators


def _dongle(reactor, options: Options, index: int, config: DongleConfig):
    if options["connect"] is not None:
        host, port = options["connect"]
        return DialingDongle(
            reactor, HostnameEndpoint(reactor, host, port), config, address=f"{host}:{port}",
            unanswered_heartbeats=options["unanswered-heartbeats"],
        )
    port = options["port"] + index if options["port"] else 0
    endpoint = TCP4ServerEndpoint(reactor, port, interface=options["interface"])
    return Dongle(reactor, endpoint, config)
