"""The HTTP API: /api/inputs and /api/registers as JSON, from the inverter's latest state."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from e2e_support import read_body
from twisted.internet import reactor
from twisted.web.client import Agent
from twisted.web.test.requesthelper import DummyRequest

from octolux.config.ini import ServerConfig
from octolux.web.api import ApiService, api_root


class FakeInverter:
    """Only the state the API reads."""

    def __init__(self, name="inverter", inputs=None, registers=None, input_registers=None):
        self.name = name
        self.latest_inputs = inputs if inputs is not None else {}
        self.registers = registers if registers is not None else {}
        self.input_registers = input_registers if input_registers is not None else {}


def get(root, path: str, **arguments):
    """Render GET ``path`` synchronously; return (status code, headers, decoded JSON)."""
    segments = [s.encode() for s in path.strip("/").split("/")]
    request = DummyRequest(segments)
    for name, values in arguments.items():
        request.args[name.encode()] = [v.encode() for v in values]
    resource = root
    while request.postpath and not getattr(resource, "isLeaf", False):
        resource = resource.getChildWithDefault(request.postpath.pop(0), request)
    body = resource.render(request)
    code = request.responseCode or 200
    content_type = request.responseHeaders.getRawHeaders(b"content-type")
    return code, content_type, json.loads(body) if code == 200 else body


def test_inputs_are_the_latest_merged_values():
    inverter = FakeInverter(inputs={"soc": 53, "v_bat": 49.4, "t_inner": 43})
    code, content_type, body = get(api_root([inverter]), "/api/inputs")
    assert (code, content_type) == (200, [b"application/json"])
    assert body == {"soc": 53, "v_bat": 49.4, "t_inner": 43}
    inverter.latest_inputs["soc"] = 54  # read at request time, not at start-up
    assert get(api_root([inverter]), "/api/inputs")[2]["soc"] == 54


def test_registers_have_string_keys_in_register_order():
    inverter = FakeInverter(registers={65: 50, 21: 128, 3: 7})
    code, content_type, body = get(api_root([inverter]), "/api/registers")
    assert (code, content_type) == (200, [b"application/json"])
    assert list(body.items()) == [("3", 7), ("21", 128), ("65", 50)]


def test_input_registers_are_served_raw_every_one_seen():
    # Those of no inputs/<n> block too: 127-253, 254-380, the battery modules' 5000s.
    inverter = FakeInverter(registers={21: 128},
                            input_registers={5002: 4, 0: 16, 254: 7, 130: 2301})
    code, content_type, body = get(api_root([inverter]), "/api/registers", kind=["input"])
    assert (code, content_type) == (200, [b"application/json"])
    assert list(body.items()) == [("0", 16), ("130", 2301), ("254", 7), ("5002", 4)]
    assert get(api_root([inverter]), "/api/registers", kind=["hold"])[2] == {"21": 128}


def test_several_inverters_each_have_their_input_registers():
    main = FakeInverter("main", input_registers={0: 1})
    garage = FakeInverter("garage", input_registers={0: 2})
    root = api_root([main, garage])
    assert get(root, "/api/main/registers", kind=["input"])[2] == {"0": 1}
    assert get(root, "/api/garage/registers", kind=["input"])[2] == {"0": 2}


@pytest.mark.parametrize("kind", [["inputs"], [""], ["input", "hold"]])
def test_another_kind_of_registers_is_a_400_that_says_which_there_are(kind):
    code, _, body = get(api_root([FakeInverter()]), "/api/registers", kind=kind)
    assert code == 400
    assert json.loads(body) == {"error": "kind: hold or input"}


def test_nothing_known_yet_is_an_empty_object():
    root = api_root([FakeInverter()])
    assert get(root, "/api/inputs")[2] == {}
    assert get(root, "/api/registers")[2] == {}
    assert get(root, "/api/registers", kind=["input"])[2] == {}


def test_several_inverters_each_have_their_own_path():
    main = FakeInverter("main", inputs={"soc": 1})
    garage = FakeInverter("garage", inputs={"soc": 2})
    root = api_root([main, garage])
    assert get(root, "/api/inputs")[2] == {"soc": 1}
    assert get(root, "/api/main/inputs")[2] == {"soc": 1}
    assert get(root, "/api/garage/inputs")[2] == {"soc": 2}


@pytest_twisted.ensureDeferred
async def test_the_api_listens_on_localhost_and_answers_http():
    inverter = FakeInverter(inputs={"soc": 53}, registers={21: 128})
    api = ApiService(reactor, ServerConfig(listen_host="127.0.0.1", port=0), api_root([inverter]))
    api.startService()
    try:
        assert api.listening.getHost().host == "127.0.0.1"
        agent = Agent(reactor)
        for path, expected in (("inputs", {"soc": 53}), ("registers", {"21": 128})):
            url = f"http://127.0.0.1:{api.port}/api/{path}".encode()
            response = await agent.request(b"GET", url).addTimeout(5, reactor)
            assert response.code == 200
            assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
            assert json.loads(await read_body(response).addTimeout(5, reactor)) == expected
        for path in ("/", "/api/nothing", "/api/inputs/more"):
            missing = await agent.request(
                b"GET", f"http://127.0.0.1:{api.port}{path}".encode()
            ).addTimeout(5, reactor)
            assert missing.code == 404, path
            await read_body(missing).addTimeout(5, reactor)
    finally:
        await api.stopService().addTimeout(5, reactor)


@pytest.mark.parametrize("host", ["localhost", "::1"])
@pytest_twisted.ensureDeferred
async def test_listen_host_may_be_a_name_or_ipv6(host):
    # `localhost` is what the original tool's example config has.
    api = ApiService(reactor, ServerConfig(listen_host=host, port=0), api_root([FakeInverter()]))
    api.startService()
    try:
        assert api.listening.getHost().host in ("127.0.0.1", "::1")
    finally:
        await api.stopService().addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_a_port_in_use_stops_start_up():
    first = ApiService(reactor, ServerConfig(port=0), api_root([FakeInverter()]))
    first.startService()
    try:
        second = ApiService(reactor, ServerConfig(port=first.port), api_root([FakeInverter()]))
        with pytest.raises(Exception, match="Address already in use"):
            second.startService()
        assert second.listening is None
    finally:
        await first.stopService().addTimeout(5, reactor)
