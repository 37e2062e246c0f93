"""The RS485 path end to end: `twistd octolux` with mosquitto, against Modbus servers.

The inverter is played by pymodbus's server (an independent implementation,
serving a register image) over Modbus TCP and over a serial line made of two
pseudo-terminals, and by the simulator (`twistd lxp-simulator --modbus`),
whose plant a command changes as it does over the dongle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from e2e_support import MqttProbe, poll_until
from support import free_port, run_twistd, stop_process
from test_e2e import MQ_MD_KEYS
from twisted.internet import reactor

from octolux.lxp.inputs import decode_inputs
from simulator.plant import Plant

PASSWORD = "modbus-e2e-pw-never-logged"

# pymodbus's server on a register image: over TCP (argv: tcp PORT IMAGE) or on
# a serial line (argv: serial LINK IMAGE): two pseudo-terminals joined by a
# relay thread, a null-modem cable; pymodbus opens one end, LINK names the
# other for the bridge. Its debug log shows every frame it received.
PYMODBUS_SERVER = r"""
import asyncio, json, logging, os, sys, threading, tty
from pymodbus import FramerType, pymodbus_apply_logging_config
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

kind, where, image_path = sys.argv[1:4]
image = json.load(open(image_path))

def registers(values):
    return [SimData(0, values=values, datatype=DataType.REGISTERS)]

bits = [SimData(0, values=False, datatype=DataType.BITS)]
device = SimDevice(id=1, simdata=(bits, bits, registers(image["holding"]),
                                  registers(image["inputs"])))
pymodbus_apply_logging_config(logging.DEBUG)

def relay(one, other):
    while True:
        try:
            data = os.read(one, 4096)
        except OSError:
            return  # the other side closed: nothing to carry any more
        os.write(other, data)

def tcp_server():
    return ModbusTcpServer(device, address=("127.0.0.1", int(where)), framer=FramerType.SOCKET)

def serial_server():
    ends = []
    for _ in range(2):
        primary, secondary = os.openpty()
        tty.setraw(primary)
        tty.setraw(secondary)
        ends.append((primary, secondary))
    (a_primary, a_secondary), (b_primary, b_secondary) = ends
    for one, other in ((a_primary, b_primary), (b_primary, a_primary)):
        threading.Thread(target=relay, args=(one, other), daemon=True).start()
    server = ModbusSerialServer(device, port=os.ttyname(a_secondary), framer=FramerType.RTU,
                                baudrate=19200)
    os.symlink(os.ttyname(b_secondary), where)
    return server

async def main():
    server = tcp_server() if kind == "tcp" else serial_server()
    print("serving", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def register_image() -> dict[str, list[int]]:
    """What the pymodbus server holds: a simulated plant's registers, frozen."""
    plant = Plant(seed=3)
    return {"inputs": list(plant.input_registers()), "holding": list(plant.read_holding(0, 240))}


class Bridge:
    """One `twistd octolux` on an RS485 ``modbus`` URI, and a probe on its broker."""

    def __init__(self, tmp_path: Path, mosquitto, modbus: str, prefix: str,
                 sections: str | None = None):
        self.tmp = tmp_path
        self.prefix = prefix
        self.log = tmp_path / "octolux.log"
        self.config = tmp_path / "octolux.ini"
        sections = sections or f"[lxp]\nmodbus = {modbus}\n"
        self.config.write_text(
            f"{sections}poll_interval = 2\ncommand_timeout = 4\n"
            f"[server]\nport = {free_port()}\n"
            f"[mqtt]\nuri = mqtt://octolux:{PASSWORD}@{mosquitto.host}:{mosquitto.port}\n"
            f"prefix = {prefix}\n"
        )
        self.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{prefix}/#"])
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        await self.probe.ready(reactor)
        self.process = run_twistd(
            ["-n", "--pidfile=", "-l", "-", "octolux", "-c", str(self.config)],
            cwd=self.tmp, log_path=self.log)

    async def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        await self.probe.close(reactor)

    async def inputs(self, block: int) -> dict:
        message = await self.probe.next_on(reactor, f"{self.prefix}/inputs/{block}", timeout=20)
        return json.loads(message.payload)

    async def command(self, name: str, payload: bytes) -> str:
        before = len(self.probe.on(f"{self.prefix}/result/{name}"))
        self.probe.publish(f"{self.prefix}/cmd/{name}", payload)
        result = await self.probe.next_on(reactor, f"{self.prefix}/result/{name}",
                                          after=before, timeout=15)
        return result.text

    async def hold(self, register: int, value: int) -> None:
        topic = f"{self.prefix}/hold/{register}"
        await self.probe.until(
            reactor, lambda: [m for m in self.probe.on(topic) if int(m.text) == value],
            what=f"{topic} = {value}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def start_pymodbus(tmp_path: Path, kind: str, where: str) -> tuple[subprocess.Popen, Path]:
    image = tmp_path / "image.json"
    image.write_text(json.dumps(register_image()))
    log = tmp_path / "pymodbus.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-c", PYMODBUS_SERVER, kind, where,
                                    str(image)], stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    return process, log


async def _serving(log: Path) -> None:
    await poll_until(reactor, lambda: log.exists() and "serving" in log.read_text(),
                     timeout=20, what="pymodbus serving", context=lambda: log.read_text())


async def _check_against_pymodbus(bridge: Bridge, log: Path) -> None:
    image = register_image()
    expected = decode_inputs(0, image["inputs"][:40])
    inputs = await bridge.inputs(1)
    assert inputs["soc"] == expected["soc"]
    assert inputs["v_bat"] == expected["v_bat"]
    assert (await bridge.inputs(3))["inverter_serial"] == decode_inputs(
        80, image["inputs"][80:120])["inverter_serial"]
    # Holding registers read on connecting, as over the dongle.
    await bridge.hold(21, image["holding"][21])
    assert await bridge.command("discharge_pct", b"50") == "OK"
    await bridge.hold(65, 50)
    # pymodbus itself saw the write: function 6, register 65, value 50, big-endian.
    assert "0x6 0x0 0x41 0x0 0x32" in log.read_text()
    assert await bridge.command("discharge_pct", b"150") == "FAIL"
    assert PASSWORD not in bridge.log_text()


async def _against_pymodbus(tmp_path, mosquitto, kind: str, where: str, uri: str) -> None:
    server, log = start_pymodbus(tmp_path, kind, where)
    bridge = Bridge(tmp_path, mosquitto, uri, f"modbus-{kind}")
    try:
        await _serving(log)
        await bridge.start()
        await _check_against_pymodbus(bridge, log)
    finally:
        await bridge.stop()
        stop_process(server)


@pytest_twisted.ensureDeferred
async def test_the_bridge_over_modbus_tcp_against_pymodbus(tmp_path, mosquitto):
    port = free_port()
    await _against_pymodbus(tmp_path, mosquitto, "tcp", str(port), f"tcp://127.0.0.1:{port}")


@pytest_twisted.ensureDeferred
async def test_the_bridge_over_a_serial_line_against_pymodbus(tmp_path, mosquitto):
    link = tmp_path / "ttyINVERTER"
    await _against_pymodbus(tmp_path, mosquitto, "serial", str(link),
                            f"serial://{link}?baudrate=19200")


def start_simulator(tmp_path: Path, modbus: str, count: int = 1):
    log = tmp_path / "simulator.log"
    process = run_twistd(
        ["-n", "--pidfile=", "-l", "-", "lxp-simulator", "--port", "0", "--seed", "7",
         "--count", str(count), "--modbus", modbus], cwd=tmp_path, log_path=log)
    return process, log


async def _check_against_the_simulator(bridge: Bridge, log: Path) -> None:
    for block, keys in MQ_MD_KEYS.items():
        values = await bridge.inputs(block)
        assert [key for key in keys if key not in values] == []
    # A command changes the plant: AC charge on sets register 21 bit 7 there,
    # which the simulator logs as it does for a write over the dongle.
    assert await bridge.command("ac_charge", b"on") == "OK"
    await poll_until(reactor, lambda: "holding register 21 (" in log.read_text(), timeout=10,
                     what="the simulator's write of register 21")
    assert await bridge.command("charge_pct", b"30") == "OK"
    await bridge.hold(64, 30)


async def _against_the_simulator(tmp_path, mosquitto, served: str, uri: str,
                                 ready) -> None:
    simulator, log = start_simulator(tmp_path, served)
    bridge = Bridge(tmp_path, mosquitto, uri, f"modbus-sim-{served.partition(':')[0]}")
    try:
        await poll_until(reactor, ready, timeout=20, what="the simulator serving Modbus",
                         context=lambda: log.read_text())
        await bridge.start()
        await _check_against_the_simulator(bridge, log)
    finally:
        await bridge.stop()
        stop_process(simulator)


@pytest.mark.parametrize("scheme", ["tcp", "rtu-over-tcp"])
@pytest_twisted.ensureDeferred
async def test_the_bridge_over_tcp_against_the_simulator(tmp_path, mosquitto, scheme):
    port = free_port()
    log = tmp_path / "simulator.log"
    await _against_the_simulator(
        tmp_path, mosquitto, f"{scheme}:{port}", f"{scheme}://127.0.0.1:{port}",
        lambda: log.exists() and "modbus: serving" in log.read_text())


@pytest_twisted.ensureDeferred
async def test_the_bridge_over_a_pty_against_the_simulator_over_rtu(tmp_path, mosquitto):
    link = tmp_path / "ttySIM"
    await _against_the_simulator(tmp_path, mosquitto, f"pty:{link}", f"serial://{link}",
                                 lambda: os.path.islink(link))


@pytest_twisted.ensureDeferred
async def test_two_inverters_on_one_line_by_unit(tmp_path, mosquitto):
    link = tmp_path / "ttyBUS"
    simulator, log = start_simulator(tmp_path, f"pty:{link}", count=2)
    # The simulator's second inverter is unit 2, serial SIMINV0002.
    sections = (f"[lxp one]\nmodbus = serial://{link}\npoll_interval = 2\n"
                f"[lxp two]\nmodbus = serial://{link}\nunit = 2\n")
    bridge = Bridge(tmp_path, mosquitto, "", "modbus-bus", sections=sections)
    try:
        await poll_until(reactor, lambda: os.path.islink(link), timeout=20,
                         what="the simulator's pty", context=lambda: log.read_text())
        await bridge.start()
        for name, serial in (("one", "SIMINV0001"), ("two", "SIMINV0002")):
            message = await bridge.probe.next_on(reactor, f"modbus-bus/{name}/inputs/3",
                                                 timeout=20)
            assert json.loads(message.payload)["inverter_serial"] == serial
        bridge.prefix = "modbus-bus/two"  # with two inverters, topics are named
        assert await bridge.command("charge_pct", b"30") == "OK"
        await bridge.hold(64, 30)
        assert "unit 2: WriteSingle(address=64, value=30)" in log.read_text()
        assert "unit 1: WriteSingle" not in log.read_text()
    finally:
        await bridge.stop()
        stop_process(simulator)
