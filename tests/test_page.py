"""The web page in a real headless Chromium, against the bridge and the simulator as processes.

One Chromium (Debian's, driven by Playwright, which never downloads a browser
here), one simulator, one bridge and the session's mosquitto for the whole
module. The bridge's SQLite history is seeded first with four weeks of the
simulator's plant model, so the charts have something to draw.

``OCTOLUX_SCREENSHOT=docs/page.png`` saves the screenshot the README shows.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from e2e_support import MqttProbe
from support import run_twistd, stop_process

from octolux import lxp
from octolux.history.recorder import Recorder
from octolux.history.sqlite import SqliteStore
from simulator.plant import Plant

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
DATALOG, SERIAL = "SIMDL00001", "SIMINV0001"
PREFIX = "page"
INTERVAL = 4  # seconds between the simulator's bursts
TIMEOUT = 20_000  # ms, for anything the page waits for
CHROMIUM = "/usr/bin/chromium"
STARTUP = 60.0  # s for each process to start (a loaded machine is slow to start Python)


class _PlantClock:
    def __init__(self, plant):
        self.plant = plant

    def seconds(self) -> float:
        return self.plant.now.timestamp()


def seed_history(path: Path, days: int = 28) -> None:
    """``days`` of the plant model up to now, recorded as the bridge does.

    A frame every 10 minutes over the last 26 hours, every hour before (enough
    for daily totals, and quick). Through the registers, so the values are the
    ones the bridge would decode.
    """
    end = datetime.datetime.now().replace(microsecond=0)
    plant = Plant(start=end - datetime.timedelta(days=days), seed=11)
    store = SqliteStore(str(path))
    samples = []

    class Sink:
        def add(self, batch):
            samples.extend(batch)

    recorder = Recorder("inverter", Sink(), _PlantClock(plant))
    recent = end - datetime.timedelta(hours=26)
    while plant.now < end - datetime.timedelta(minutes=10):
        plant.advance(600 if plant.now >= recent else 3600)
        registers = list(plant.input_registers())[:120]
        recorder.inputs_received(lxp.inputs.decode_input_blocks(0, registers))
    for start in range(0, len(samples), 5000):
        store.write(samples[start:start + 5000])
    store.close()


def http(url: str, body: dict | None = None, headers: dict | None = None):
    """(status, decoded JSON) of a GET, or of a POST of ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(condition, what: str, timeout: float = 20.0):
    """Poll ``condition`` until truthy (these tests run no reactor: Playwright's API blocks)."""
    deadline = time.monotonic() + timeout
    idle = threading.Event()  # never set: its wait is the pause between polls
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        idle.wait(0.1)


def read_simulator_register(port: int, register: int) -> int:
    """Ask the simulated inverter itself (a second TCP client), not the bridge."""
    decoder = lxp.FrameDecoder(lxp.Direction.FROM_DONGLE)
    request = lxp.ReadRequest(lxp.DeviceFunction.READ_HOLD, DATALOG, SERIAL, register, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(lxp.build(request))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for frame in decoder.feed(connection.recv(4096)):
                if (isinstance(frame, lxp.ReadReply) and frame.register == register
                        and frame.function == lxp.DeviceFunction.READ_HOLD):
                    return frame.values[0]
    raise AssertionError(f"the simulator did not answer a read of register {register}")


class Rig:
    """The simulator and the bridge (control on), as twistd processes."""

    def __init__(self, workdir: Path, mosquitto):
        self.workdir = workdir
        seed_history(workdir / "history.sqlite")
        # Port 0 for both, read back from their logs: a port picked beforehand
        # could be taken by another process before they bind it.
        self.bridge = None
        self.simulator = run_twistd(
            ["-n", "--pidfile=", "-l", "-", "lxp-simulator", "--port", "0",
             "--interval", str(INTERVAL), "--burst-gap", "0.05", "--first-burst-delay", "0.1",
             "--seed", "4"],
            workdir, workdir / "simulator.log",
        )
        self.sim_port = int(wait_for(
            lambda: _logged(workdir / "simulator.log", r"listening on 127\.0\.0\.1:(\d+)"),
            "the simulator listening", timeout=STARTUP))
        (workdir / "config.ini").write_text(
            f"[lxp]\nhost = 127.0.0.1\nport = {self.sim_port}\nserial = {SERIAL}\n"
            f"datalog = {DATALOG}\ncommand_timeout = 5\n"
            "[server]\nport = 0\ncontrol = yes\n"
            f"[mqtt]\nuri = mqtt://{mosquitto.host}:{mosquitto.port}\nprefix = {PREFIX}\n"
            "[history]\npath = history.sqlite\n"
        )
        self.bridge = run_twistd(["-n", "--pidfile=", "-l", "-", "octolux", "-c", "config.ini"],
                                 workdir, workdir / "bridge.log")
        http_port = wait_for(
            lambda: _logged(workdir / "bridge.log", r"HTTP API on http://127\.0\.0\.1:(\d+)/"),
            "the bridge's HTTP API", timeout=STARTUP)
        self.url = f"http://127.0.0.1:{http_port}/"
        wait_for(self.ready, "the bridge connected, with input values", timeout=STARTUP)

    def ready(self) -> bool:
        for process, log in ((self.simulator, "simulator.log"), (self.bridge, "bridge.log")):
            if process.poll() is not None:
                raise AssertionError(f"{log} ended:\n{(self.workdir / log).read_text()[-3000:]}")
        try:
            status, state = http(self.url + "api/state")
        except OSError:
            return False
        inverter = state["inverters"][0]
        return status == 200 and inverter["connected"] and "soc" in inverter["inputs"]

    def stop(self) -> None:
        for process in (self.bridge, self.simulator):
            if process is not None:
                stop_process(process)


def _logged(path: Path, pattern: str) -> str | None:
    """The first group of ``pattern`` in the log at ``path``, once it is there."""
    match = re.search(pattern, path.read_text()) if path.exists() else None
    return match and match[1]


@pytest.fixture(scope="module")
def rig(tmp_path_factory, mosquitto):
    rig = Rig(tmp_path_factory.mktemp("page"), mosquitto)
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """Debian's Chromium through Playwright: a fresh profile, never a downloaded browser."""
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM  # Debian's, as scripts/setup-env.sh --tests installs it
    if not os.path.exists(executable):  # never a skip: CI must run these
        pytest.fail("chromium is not installed (run scripts/setup-env.sh --tests)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(chromium, rig):
    page = chromium.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(rig.url)
    page.wait_for_selector("[data-key=soc]:not([data-value=''])", timeout=TIMEOUT)
    yield page
    page.close()
    assert errors == []  # no script error on the page


def test_the_page_renders_the_live_values(page, rig):
    _, state = http(rig.url + "api/state")
    inputs = state["inverters"][0]["inputs"]
    assert page.text_content("[data-connected]") == "connected"
    soc = int(page.get_attribute("[data-key=soc]", "data-value"))
    assert 0 <= soc <= 100
    assert page.text_content("[data-key=soc]") == f"{soc} %"
    for key in ("p_pv", "p_battery", "p_grid", "p_load"):
        assert page.get_attribute(f"[data-key={key}]", "data-value") != "", key
        assert page.text_content(f"[data-key={key}]").endswith("W"), key
    assert "p_load" in inputs  # the house load, computed by the bridge
    assert page.text_content("#link") == "live"


def test_the_charts_have_data_points(page):
    page.wait_for_selector("svg[data-chart=power] polyline[data-series=p_pv]", timeout=TIMEOUT)
    for chart, series in (("power", "p_pv"), ("power", "p_load"), ("soc", "soc")):
        points = page.eval_on_selector_all(
            f"svg[data-chart={chart}] polyline[data-series={series}]",
            "lines => lines.map(l => l.getAttribute('points').split(' ').length)",
        )
        assert sum(points) >= 100, (chart, series, points)  # ~144 ten-minute values in 24 h
    bars = page.locator("svg[data-chart=energy] rect[data-series=e_pv_day]").count()
    assert bars >= 27  # a bar a day, four weeks


def test_a_value_changes_when_the_next_burst_arrives(page, rig, mosquitto):
    before = float(page.get_attribute("[data-last-frame]", "data-time"))
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{PREFIX}/inputs/1"])

    def shows_a_burst_seen_on_mqtt() -> bool:
        # Any burst since the probe subscribed: on a loaded machine the page may
        # be checked only after the one after the first has come.
        seen = {str(json.loads(message.payload)["p_pv"]) for message in probe.messages}
        shown = page.get_attribute("[data-key=p_pv]", "data-value")
        return (float(page.get_attribute("[data-last-frame]", "data-time")) > before
                and shown in seen)

    try:
        wait_for(shows_a_burst_seen_on_mqtt, "the page showing a burst seen on MQTT",
                 timeout=3 * INTERVAL + TIMEOUT / 1000)
    finally:
        probe.client.disconnect()
        probe.client.loop_stop()


def test_with_control_on_a_click_changes_the_simulated_inverter(page, rig):
    original = read_simulator_register(rig.sim_port, 21)
    was_on = bool(original & 0x80)
    button = page.locator("button[data-command=ac_charge]")
    button.wait_for(timeout=TIMEOUT)
    button.click()
    wait_for_notice(page, f"ac_charge {str(not was_on).lower()}: OK")
    assert read_simulator_register(rig.sim_port, 21) == original ^ 0x80  # bit 7, nothing else
    expected = "off" if was_on else "on"
    page.wait_for_selector(f"[data-setting=ac_charge]:text('{expected}')", timeout=TIMEOUT)
    page.wait_for_selector("[data-results] [data-result=ac_charge] .ok", timeout=TIMEOUT)
    # And back, through the same path.
    page.locator("button[data-command=ac_charge]").click()
    wait_for(lambda: read_simulator_register(rig.sim_port, 21) == original, "ac_charge back")


def wait_for_notice(page, text: str) -> None:
    page.wait_for_function(
        "text => document.querySelector('[data-notice]').textContent === text",
        arg=text, timeout=TIMEOUT,
    )


def test_with_control_on_rates_and_time_slots_are_set_from_their_fields(page, rig):
    page.fill("input[data-input=charge_pct]", "55")
    page.click("button[data-command=charge_pct]")
    wait_for_notice(page, "charge_pct 55: OK")
    assert read_simulator_register(rig.sim_port, 64) == 55
    page.wait_for_selector("[data-setting=charge_pct][data-value='55']", timeout=TIMEOUT)

    page.fill("input[data-input=ac_charge_slot_1]", "01:30-04:00")
    page.press("input[data-input=ac_charge_slot_1]", "Enter")
    wait_for_notice(page, "ac_charge_slot_1 01:30-04:00: OK")
    # Low byte the hour, high byte the minute (PROTOCOL.md): 01:30 and 04:00.
    assert read_simulator_register(rig.sim_port, 68) == 1 | 30 << 8
    assert read_simulator_register(rig.sim_port, 69) == 4
    page.wait_for_selector("[data-setting=ac_charge_slot_1][data-value='01:30-04:00']",
                           timeout=TIMEOUT)

    page.fill("input[data-input=charge_pct]", "101")  # out of range: the bridge says no
    page.click("button[data-command=charge_pct]")
    wait_for_notice(page, "charge_pct 101: FAIL")
    assert read_simulator_register(rig.sim_port, 64) == 55


def test_it_fits_a_phone_screen(chromium, rig):
    phone = chromium.new_page()
    try:
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(rig.url)
        phone.wait_for_selector("svg[data-chart=power] polyline", timeout=TIMEOUT)
        width = phone.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390  # nothing sticks out sideways
    finally:
        phone.close()


def test_screenshot(page):
    page.wait_for_selector("svg[data-chart=energy] rect", timeout=TIMEOUT)
    page.wait_for_selector("svg[data-chart=soc] polyline", timeout=TIMEOUT)
    image = page.screenshot(full_page=True)
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000
    target = os.environ.get("OCTOLUX_SCREENSHOT")
    if target:
        Path(target).write_bytes(image)
