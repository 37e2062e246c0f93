"""The page's HTTP side without a browser: its files, state, event stream and POST /api/command.

In-process, over real HTTP on a loopback port, with a fake inverter behind
the real command runner and bridge (so commands take the one way in that MQTT's
take, and their results are published as theirs are).
"""

from __future__ import annotations

import io
import json

import pytest
import pytest_twisted
from e2e_support import EventStream, get, poll_until, read_body
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from octolux.config.ini import ServerConfig
from octolux.device.commands import Topics
from octolux.device.runner import CommandRunner
from octolux.mqtt.bridge import InverterBridge
from octolux.web.api import EVENT_DELAY, KEEPALIVE, ApiService, api_root
from octolux.web.page import LiveInverter, Page


class FakeInverter:
    """Just what the page and the bridge use; ``set_bit`` answers like an inverter."""

    name = "inverter"

    def __init__(self):
        self.connected = True
        self.latest_inputs = {"soc": 60, "p_pv": 1200, "p_load": 450}
        self.registers = {21: 0x0102}
        self.writes = []

    def set_bit(self, register, bit, on):
        self.writes.append((register, bit, on))
        old = self.registers[register]
        value = old | 1 << bit if on else old & ~(1 << bit)
        self.registers[register] = value
        return defer.succeed(value)


class Published:
    def __init__(self):
        self.messages = []

    def publish(self, topic, payload, *, qos=0, retain=False, coalesce=False, batch=False):
        self.messages.append((topic, payload))


@pytest_twisted.async_yield_fixture(params=[True, False], ids=["control", "read-only"])
async def site(request):
    inverter = FakeInverter()
    published = Published()
    runner = CommandRunner(inverter, now=lambda: 1_764_500_000.0)
    InverterBridge(inverter, published, Topics("octolux"), runner)
    clock = Clock()  # the page's: when its events go out is the test's to say
    clock.advance(1_764_500_000)
    page = Page(control=request.param, local_only=True, clock=clock)
    live = LiveInverter(inverter, runner=runner, api_path="/api", clock=clock)
    page.add(live)
    root = api_root([inverter], page=page, clock=clock)
    service = ApiService(reactor, ServerConfig(port=0), root)
    service.startService()
    try:
        yield {"url": f"http://127.0.0.1:{service.port}", "inverter": inverter, "live": live,
               "published": published, "control": request.param, "clock": clock}
    finally:
        await service.stopService()


async def post(url, body: bytes, headers: dict):
    producer = FileBodyProducer(io.BytesIO(body))
    response = await Agent(reactor).request(
        b"POST", url.encode(), Headers({k: [v] for k, v in headers.items()}), producer
    ).addTimeout(5, reactor)
    return response.code, json.loads(await read_body(response))


JSON = {"Content-Type": "application/json"}


@pytest_twisted.ensureDeferred
async def test_the_page_and_its_files_are_served(site):
    response, body = await get(reactor, site["url"] + "/")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
    assert b'<script src="static/app.js">' in body
    for name, kind in (("app.js", b"text/javascript"), ("style.css", b"text/css")):
        response, body = await get(reactor, f"{site['url']}/static/{name}")
        assert response.code == 200 and len(body) > 1000
        assert response.headers.getRawHeaders(b"content-type")[0].startswith(kind)
    response, _ = await get(reactor, site["url"] + "/static/")
    assert response.code == 404  # no listing
    response, _ = await get(reactor, site["url"] + "/static/../api.py")
    assert response.code == 404


@pytest_twisted.ensureDeferred
async def test_state_has_the_live_values_and_the_settings(site):
    response, body = await get(reactor, site["url"] + "/api/state")
    state = json.loads(body)
    assert state["control"] is site["control"]
    assert state["history"] == {"enabled": False, "stores": []}
    inverter = state["inverters"][0]
    assert (inverter["name"], inverter["connected"], inverter["api"]) == ("inverter", True, "/api")
    assert inverter["inputs"] == {"soc": 60, "p_pv": 1200, "p_load": 450}
    assert inverter["settings"]["ac_charge"] is False  # register 21 bit 7
    # 0x0102: bits 1 and 8.
    assert inverter["settings"]["ovf_load_derate"] is True
    assert inverter["settings"]["seamless_eps_switching"] is True
    assert inverter["settings"]["eps"] is False
    assert state["settings_table"]["ac_charge"]["writable"] is True
    assert state["settings_table"]["ac_charge_slot_1"]["kind"] == "time_slot"


@pytest_twisted.ensureDeferred
async def test_events_stream_the_state_then_each_change(site):
    response = await Agent(reactor).request(
        b"GET", (site["url"] + "/api/events").encode()
    ).addTimeout(5, reactor)
    assert response.headers.getRawHeaders(b"content-type") == [b"text/event-stream; charset=utf-8"]
    stream = EventStream()
    response.deliverBody(stream)
    await poll_until(reactor, stream.events, 5, "the first event")
    assert stream.events()[0][0] == "state"
    # A burst (three blocks) makes one event, with the new values.
    site["inverter"].latest_inputs["soc"] = 61
    for block in (1, 2, 3):
        site["live"].inputs_received({block: {}})
        site["clock"].advance(0.05)
    site["clock"].advance(EVENT_DELAY)
    events = await poll_until(reactor, lambda: stream.events()[1:], 5, "an inverter event")
    assert len(events) == 1
    kind, inverter = events[0]
    assert kind == "inverter" and inverter["inputs"]["soc"] == 61
    assert inverter["last_frame"] == 1_764_500_000.1
    # An idle stream gets a comment now and then, so that it stays open.
    site["clock"].advance(KEEPALIVE)
    await poll_until(reactor, lambda: b": keepalive" in stream.data, 5, "a keepalive")


@pytest_twisted.ensureDeferred
async def test_a_command_goes_the_bridge_s_way(site):
    code, answer = await post(
        site["url"] + "/api/command",
        json.dumps({"inverter": "inverter", "command": "ac_charge", "value": True}).encode(),
        JSON,
    )
    if not site["control"]:
        assert code == 403 and "control = yes" in answer["error"]
        assert site["inverter"].writes == []
        return
    assert (code, answer) == (200, {"result": "OK"})
    assert site["inverter"].writes == [(21, 7, True)]
    assert ("octolux/result/ac_charge", "OK") in site["published"].messages  # as from MQTT
    _, body = await get(reactor, site["url"] + "/api/state")
    result = json.loads(body)["inverters"][0]["results"][0]
    assert result == {"at": 1_764_500_000.0, "command": "ac_charge", "payload": "'on'",
                      "result": "OK", "reason": ""}
    # A bad value is the bridge's FAIL, and nothing is written.
    code, answer = await post(site["url"] + "/api/command",
                              b'{"command": "charge_pct", "value": 150}', JSON)
    assert (code, answer) == (200, {"result": "FAIL"})
    assert site["inverter"].writes == [(21, 7, True)]


@pytest.mark.parametrize(("body", "headers", "code", "error"), [
    (b'{"command": "ac_charge", "value": "on"}', {"Content-Type": "text/plain"}, 415,
     "application/json"),
    (b"command=ac_charge&value=on", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "application/json"),
    (b'{"command": "ac_charge", "value": "on"}',
     {**JSON, "Origin": "http://evil.example"}, 403, "cross-origin"),
    (b"not json", JSON, 400, "not JSON"),
    (b'["ac_charge"]', JSON, 400, "not a JSON object"),
    (b'{"command": "ac charge"}', JSON, 400, "command"),
    (b'{"command": "ac_charge", "inverter": "garage"}', JSON, 400, "no inverter named"),
    (b'{"command": "ac_charge", "value": [1]}', JSON, 400, "value"),
    # DNS rebinding: a foreign name pointed at 127.0.0.1, same-origin to the browser.
    (b'{"command": "ac_charge", "value": "on"}',
     {**JSON, "Host": "evil.example:4346", "Origin": "http://evil.example:4346"}, 403,
     "only through localhost"),
])
@pytest_twisted.ensureDeferred
async def test_what_the_command_endpoint_refuses(site, body, headers, code, error):
    if not site["control"]:
        code, error = 403, "control is off"
    answer_code, answer = await post(site["url"] + "/api/command", body, headers)
    assert answer_code == code
    assert error in answer["error"]
    assert site["inverter"].writes == []


def test_the_runner_keeps_only_the_last_results():
    from octolux.device.runner import RECENT_RESULTS

    clock = Clock()
    runner = CommandRunner(FakeInverter(), now=clock.seconds)
    heard = []
    runner.listeners.append(heard.append)
    for _ in range(RECENT_RESULTS + 5):
        clock.advance(1)
        runner.run("charge_pct", b"nope")
    assert len(runner.recent) == RECENT_RESULTS
    assert runner.recent[-1].at == RECENT_RESULTS + 5
    assert len(heard) == RECENT_RESULTS + 5
    assert heard[-1].result == "FAIL" and "not a whole number" in heard[-1].reason


@pytest.mark.parametrize(("host", "name"), [
    (b"127.0.0.1:4346", "127.0.0.1"), (b"localhost:4346", "localhost"), (b"[::1]:4346", "::1"),
    (b"LOCALHOST", "localhost"), (b"evil.example:4346", "evil.example"), (b"[::1]", "::1"),
])
def test_host_names_without_their_port(host, name):
    from octolux.web.api import _host_name

    assert _host_name(host) == name


@pytest.mark.parametrize(("listen_host", "local_only"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False),
])
def test_only_a_loopback_page_insists_on_loopback_names(listen_host, local_only):
    from octolux.config.ini import Config, InverterConfig
    from octolux.service.tap import build_service

    config = Config(
        inverters=(InverterConfig(name="inverter", host="127.0.0.1", port=1,
                                  serial="SIMINV0001", datalog="SIMDL00001"),),
        server=ServerConfig(listen_host=listen_host, port=0, control=True),
    )
    assert build_service(config, reactor).page.local_only is local_only


def test_without_mqtt_the_page_still_commands_through_the_runner():
    from octolux.config.ini import Config, InverterConfig
    from octolux.service.tap import build_service

    config = Config(
        inverters=(InverterConfig(name="inverter", host="127.0.0.1", port=1,
                                  serial="SIMINV0001", datalog="SIMDL00001"),),
        server=ServerConfig(port=0, control=True),
    )
    live = build_service(config, reactor).page.inverters[0]
    assert isinstance(live.runner, CommandRunner)
    # No broker to publish on: the result still comes back, and shows on the page.
    running = live.run_command("charge_pct", b"50")
    assert running.result == "FAIL"  # the inverter's service was never started
    assert live.state()["results"][0]["reason"] == "not running"


class _BrokenLive:
    """A page inverter whose command path has a bug."""

    name = "inverter"

    def __init__(self):
        self.listeners = []

    def state(self):
        return {"name": self.name}

    def run_command(self, command, payload):
        return defer.fail(RuntimeError("a bug"))


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_in_a_command_is_answered_not_left_hanging():
    page = Page(control=True, local_only=True, clock=Clock())
    page.add(_BrokenLive())
    service = ApiService(reactor, ServerConfig(port=0),
                         api_root([FakeInverter()], page=page, clock=Clock()))
    service.startService()
    try:
        code, answer = await post(f"http://127.0.0.1:{service.port}/api/command",
                                  b'{"command": "ac_charge", "value": "on"}', JSON)
    finally:
        await service.stopService()
    assert (code, answer) == (500, {"error": "unexpected error"})
