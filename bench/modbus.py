"""Round trips over the inverter's RS485 port (Modbus TCP), beside the same over the dongle.

One simulator process (`twistd lxp-simulator`) serves one plant both ways: as
a dongle on TCP (the LXP protocol) and with ``--modbus tcp:PORT``. This
process runs two ``Inverter`` objects on the real reactor, one per way in,
and measures, alternately so that both see the same load:

- a poll: ``read_input(0, 40)``, the read the bridge makes of every input
  block (over Modbus, every ``poll_interval``; over the dongle, what a
  broadcast brings unasked), and a whole poll round (input registers 0-159,
  four reads) as ``ModbusPoller`` makes it;
- a command: ``write_single(64, value)``, from the request to the echo that
  answers it (what a command's OK waits for, MQTT aside).

    .venv/bin/python bench/modbus.py [--count 300]

Prints the median and the 99th percentile in milliseconds, and the Modbus /
dongle ratio of the medians. Prints figures only; nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import HostnameEndpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import free_port, run_twistd, stop_process  # noqa: E402

from octolux.config.ini import ModbusConfig  # noqa: E402
from octolux.device.inverter import Inverter  # noqa: E402
from octolux.device.modbus import datalog_stand_in, modbus_lines  # noqa: E402

DATALOG = "BENCH00001"
SERIAL = "BENCHINV01"
ROUND = (0, 40, 80, 120)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(action) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def poll_round(inverter: Inverter) -> None:
    """The four reads of one ``ModbusPoller`` round, one after the other."""
    for register in ROUND:
        await inverter.read_input(register, 40)


async def until_connected(inverter: Inverter, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not (inverter.connected and inverter.serial):
        if time.monotonic() > deadline:
            raise SystemExit(f"{inverter.name}: not connected within {timeout:g} s")
        await task.deferLater(reactor, 0.05, lambda: None)


async def measure(count: int) -> dict[str, dict[str, list[float]]]:
    lxp_port, modbus_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-modbus-"))
    simulator = run_twistd(
        ["-n", "--pidfile=", "-l", "-", "lxp-simulator", "--port", str(lxp_port),
         "--datalog", DATALOG, "--serial", SERIAL, "--seed", "1",
         # No broadcast during the run: one could answer the dongle's read early.
         "--interval", "86400", "--first-burst-delay", "86400",
         "--modbus", f"tcp:{modbus_port}"],
        cwd=work, log_path=work / "simulator.log")
    await task.deferLater(reactor, 1.5, lambda: None)  # it listens within a second
    modbus_config = ModbusConfig("tcp", host="127.0.0.1", port=modbus_port)
    inverters = {
        "dongle (LXP)": Inverter(HostnameEndpoint(reactor, "127.0.0.1", lxp_port), DATALOG,
                                 SERIAL, clock=reactor, name="dongle"),
        "Modbus TCP": Inverter(None, datalog_stand_in(1), SERIAL, clock=reactor, name="modbus"),
    }
    (line,) = modbus_lines(reactor, [(inverters["Modbus TCP"], modbus_config)])
    results: dict[str, dict[str, list[float]]] = {
        name: {"read_input(0, 40)": [], "poll round (0-159)": [], "write_single(64)": []}
        for name in inverters}
    try:
        for inverter in inverters.values():
            inverter.startService()
        line.startService()
        for inverter in inverters.values():
            await until_connected(inverter)
        for index in range(count):
            for name, inverter in inverters.items():
                samples = results[name]
                samples["read_input(0, 40)"].append(
                    await timed(lambda i=inverter: i.read_input(0, 40)))
                samples["poll round (0-159)"].append(
                    await timed(lambda i=inverter: poll_round(i)))
                value = 10 + index % 80
                samples["write_single(64)"].append(
                    await timed(lambda i=inverter, v=value: i.write_single(64, v)))
    finally:
        await line.stopService()
        for inverter in inverters.values():
            await inverter.stopService()
        stop_process(simulator)
    return results


def report(results, count: int) -> None:
    names = list(results)
    print(f"{count} of each, alternately; milliseconds (median / 99th percentile)")
    print(f"{'':22}" + "".join(f"{name:>22}" for name in names) + f"{'ratio':>8}")
    for what in results[names[0]]:
        cells = []
        medians = []
        for name in names:
            samples = [s * 1000 for s in results[name][what]]
            medians.append(statistics.median(samples))
            cells.append(f"{medians[-1]:8.2f} / {percentile(samples, 0.99):8.2f}")
        print(f"{what:22}" + "".join(f"{cell:>22}" for cell in cells)
              + f"{medians[1] / medians[0]:8.2f}")
    print("ratio = Modbus TCP median / dongle median")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}; python {sys.version.split()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="round trips of each kind")
    arguments = parser.parse_args()

    async def run():
        report(await measure(arguments.count), arguments.count)

    def done(result):
        reactor.stop()
        return result

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run()).addBoth(done))
    reactor.run()


if __name__ == "__main__":
    main()
