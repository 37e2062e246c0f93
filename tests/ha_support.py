"""A real Home Assistant Core for the discovery tests, and its REST and websocket APIs.

``HomeAssistant`` runs `hass` from .venv-ha (scripts/setup-ha.sh installs it)
with a private config directory: its MQTT integration points at the test's
mosquitto (the config entry is written into .storage before start, as MQTT
cannot be set up in YAML), and a user created with `hass --script auth` gets a
token through the login flow. Nothing here blocks the reactor: the process is
watched with deferLater, HTTP goes through Agent, the websocket through
autobahn. Not a test module.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from e2e_support import poll_until, read_body
from support import free_port
from twisted.internet import defer, task, utils
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, FileBodyProducer, ResponseNeverReceived
from twisted.web.http_headers import Headers

ROOT = Path(__file__).resolve().parent.parent
HASS = ROOT / ".venv-ha" / "bin" / "hass"
START_TIMEOUT = 90.0  # seconds; it takes ~4 s here, more on a loaded CI machine
USER = "octolux"
PASSWORD = "octolux-test-password"  # a throwaway account of a throwaway instance

# Log lines that every start of this Home Assistant prints and that say
# nothing about the discovery under test.
BENIGN_LOG = (
    "Skipping pip installation of required modules",
    "Support for the running Python version",
    # The readiness probe asks /api/ before it has a token.
    "Login attempt or request with invalid authentication",
)


class HomeAssistantError(Exception):
    """Home Assistant did not start, or an API call failed; the message says how."""


class HomeAssistant:
    """One `hass` process with its own config directory, on a free port of 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, broker_host: str, broker_port: int,
                 discovery_prefix: str = "homeassistant"):
        if not HASS.exists():
            raise HomeAssistantError(f"{HASS} is missing: run scripts/setup-env.sh --tests")
        self.config_dir = workdir / "config"
        self.port = free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        self.broker = (broker_host, broker_port)
        self.discovery_prefix = discovery_prefix
        self.token: str | None = None
        self.proc: subprocess.Popen | None = None
        self.started_in: float | None = None  # seconds from launch to MQTT up, for reports
        self._websocket: _Websocket | None = None

    @property
    def log_file(self) -> Path:
        return self.config_dir / "home-assistant.log"

    # -- lifecycle --------------------------------------------------------------

    async def configure(self, reactor) -> None:
        """Write the config directory: HTTP on our port, the MQTT entry, one user."""
        storage = self.config_dir / ".storage"
        storage.mkdir(parents=True)
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: octolux test\n"
            "  latitude: 51.5\n  longitude: 0\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  currency: GBP\n  country: GB\n"
            "http:\n"
            f"  server_host: {self.host}\n  server_port: {self.port}\n"
            "api:\n"
            "logger:\n  default: info\n"
        )
        host, port = self.broker
        entry = {
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1,
            "domain": "mqtt", "title": f"{host}:{port}",
            "data": {
                "broker": host, "port": port, "discovery": True,
                "discovery_prefix": self.discovery_prefix,
                # Announced on <discovery prefix>/status, as a bridge expects; Home
                # Assistant's default is homeassistant/status whatever the prefix.
                "birth_message": {"topic": f"{self.discovery_prefix}/status",
                                  "payload": "online", "qos": 0, "retain": False},
                "will_message": {"topic": f"{self.discovery_prefix}/status",
                                 "payload": "offline", "qos": 0, "retain": False},
            },
            "options": {}, "pref_disable_new_entities": False,
            "pref_disable_polling": False, "source": "user", "unique_id": None,
            "disabled_by": None,
        }
        (storage / "core.config_entries").write_text(json.dumps({
            "version": 1, "minor_version": 1, "key": "core.config_entries",
            "data": {"entries": [entry]},
        }))
        out, err, code = await utils.getProcessOutputAndValue(
            str(HASS), ["--script", "auth", "-c", str(self.config_dir), "add", USER, PASSWORD],
            env=dict(os.environ), reactor=reactor,
        ).addTimeout(60, reactor)
        if code != 0:
            raise HomeAssistantError(f"hass --script auth failed ({code}): {out!r} {err!r}")

    async def start(self, reactor, mqtt_up) -> None:
        """Start `hass` and wait until the API answers with a token and ``mqtt_up()`` is true.

        ``mqtt_up`` is the caller's evidence that MQTT discovery is running
        (Home Assistant's birth message on ``<prefix>/status``, which it sends
        only once discovery is subscribed).
        """
        await self.configure(reactor)
        await self._launch(reactor, mqtt_up)

    async def restart(self, reactor, mqtt_up) -> None:
        """Stop `hass` and start it again on the same config directory, as an upgrade would.

        ``mqtt_up`` as for ``start``: evidence of the new process's MQTT (its
        birth message), not of the old one's.
        """
        await self.stop(reactor)
        await self._launch(reactor, mqtt_up)

    async def _launch(self, reactor, mqtt_up) -> None:
        launched = time.monotonic()
        with open(self.config_dir / "hass.out", "ab") as out:
            self.proc = subprocess.Popen(
                [str(HASS), "-c", str(self.config_dir), "--skip-pip"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

        def context() -> str:
            return f"hass exit status {self.proc.poll()}; log tail:\n{self.log_tail()}"

        async def http_up():
            self._check_running()
            try:
                code, _ = await self.request(reactor, b"GET", "/api/", authorized=False)
            except (ConnectError, ResponseNeverReceived, defer.TimeoutError):
                return False  # not listening yet, or not answering yet
            return code == 401

        deadline = reactor.seconds() + START_TIMEOUT
        while not await http_up():
            if reactor.seconds() > deadline:
                raise HomeAssistantError(f"no HTTP API within {START_TIMEOUT} s; {context()}")
            await task.deferLater(reactor, 0.1, lambda: None)
        self.token = await self._login(reactor)

        def ready():
            self._check_running()
            return mqtt_up()

        await poll_until(reactor, ready, START_TIMEOUT, "Home Assistant's MQTT", context)
        self.started_in = time.monotonic() - launched

    async def stop(self, reactor) -> int | None:
        """SIGTERM, wait (without blocking the reactor), SIGKILL after 30 s."""
        if self._websocket is not None:
            self._websocket.close()
            self._websocket = None
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        deadline = reactor.seconds() + 30
        while self.proc.poll() is None and reactor.seconds() < deadline:
            await task.deferLater(reactor, 0.1, lambda: None)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def _check_running(self) -> None:
        if self.proc.poll() is not None:
            raise HomeAssistantError(
                f"hass exited with status {self.proc.returncode}:\n{self.log_tail()}"
            )

    def rss_kib(self) -> int:
        """Resident memory of the hass process, KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise HomeAssistantError("no VmRSS")

    # -- its log ----------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Every WARNING, ERROR or CRITICAL line of the log, less the benign ones above."""
        return [
            line for line in self.log_text().splitlines()
            if any(f" {level} (" in line for level in ("WARNING", "ERROR", "CRITICAL"))
            and not any(benign in line for benign in BENIGN_LOG)
        ]

    # -- REST -------------------------------------------------------------------

    async def request(self, reactor, method: bytes, path: str, body=None, *,
                      authorized: bool = True, form: dict | None = None, timeout: float = 10.0):
        """(status code, decoded JSON or None) of one HTTP request to the API."""
        headers = Headers()
        producer = None
        if authorized:
            headers.addRawHeader(b"Authorization", f"Bearer {self.token}".encode())
        if form is not None:
            headers.addRawHeader(b"Content-Type", b"application/x-www-form-urlencoded")
            producer = _body(urlencode(form).encode())
        elif body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            producer = _body(json.dumps(body).encode())
        response = await Agent(reactor).request(
            method, (self.url + path).encode(), headers, producer
        ).addTimeout(timeout, reactor)
        raw = await read_body(response).addTimeout(timeout, reactor)
        try:
            return response.code, json.loads(raw) if raw else None
        except ValueError:
            return response.code, raw.decode("utf-8", "replace")

    async def api(self, reactor, method: bytes, path: str, body=None):
        """The JSON of a successful authorized API call; HomeAssistantError otherwise."""
        code, result = await self.request(reactor, method, path, body)
        if code != 200:
            raise HomeAssistantError(f"{method.decode()} {path} {body!r}: HTTP {code}: {result}")
        return result

    async def states(self, reactor) -> dict[str, dict]:
        """Every entity's state object, by entity id."""
        states = await self.api(reactor, b"GET", "/api/states")
        return {state["entity_id"]: state for state in states}

    async def call_service(self, reactor, domain: str, service: str, **data):
        """Call a service through the REST API, as an automation or the UI would."""
        return await self.api(reactor, b"POST", f"/api/services/{domain}/{service}", data)

    async def _login(self, reactor) -> str:
        client_id = self.url + "/"
        code, flow = await self.request(reactor, b"POST", "/auth/login_flow", {
            "client_id": client_id, "handler": ["homeassistant", None],
            "redirect_uri": client_id,
        }, authorized=False)
        if code != 200:
            raise HomeAssistantError(f"login flow: HTTP {code}: {flow}")
        code, step = await self.request(reactor, b"POST", f"/auth/login_flow/{flow['flow_id']}", {
            "client_id": client_id, "username": USER, "password": PASSWORD,
        }, authorized=False)
        if code != 200 or step.get("type") != "create_entry":
            raise HomeAssistantError(f"login: HTTP {code}: {step}")
        code, token = await self.request(reactor, b"POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": step["result"], "client_id": client_id,
        }, authorized=False)
        if code != 200:
            raise HomeAssistantError(f"token: HTTP {code}: {token}")
        return token["access_token"]

    # -- websocket ----------------------------------------------------------------

    async def ws(self, reactor, message_type: str, **fields):
        """The result of one websocket API command (e.g. ``config/entity_registry/list``)."""
        if self._websocket is None:
            self._websocket = await _Websocket.open(reactor, self.url, self.token)
        return await self._websocket.command(message_type, **fields).addTimeout(10, reactor)


def _body(data: bytes) -> FileBodyProducer:
    return FileBodyProducer(io.BytesIO(data))


class _WebsocketProtocol(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.client.opened(self)

    def onMessage(self, payload, isBinary):
        self.factory.client.message_received(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        self.factory.client.closed(reason)


class _Websocket:
    """Home Assistant's websocket API: authenticate, then numbered commands and their results."""

    def __init__(self, token: str):
        self._token = token
        self._protocol: _WebsocketProtocol | None = None
        self._ids = iter(range(1, 1 << 30))
        self._waiting: dict[int, defer.Deferred] = {}
        self._authenticated: defer.Deferred = defer.Deferred()

    @classmethod
    async def open(cls, reactor, url: str, token: str) -> _Websocket:
        client = cls(token)
        ws_url = url.replace("http://", "ws://") + "/api/websocket"
        factory = WebSocketClientFactory(ws_url)
        factory.protocol = _WebsocketProtocol
        factory.client = client
        connectWS(factory)
        await client._authenticated.addTimeout(10, reactor)
        return client

    def opened(self, protocol: _WebsocketProtocol) -> None:
        self._protocol = protocol

    def _send(self, message: dict) -> None:
        self._protocol.sendMessage(json.dumps(message).encode())

    def message_received(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "auth_required":
            self._send({"type": "auth", "access_token": self._token})
        elif kind == "auth_ok":
            self._authenticated.callback(None)
        elif kind == "auth_invalid":
            self._authenticated.errback(HomeAssistantError(f"websocket auth: {message}"))
        elif kind == "result":
            waiting = self._waiting.pop(message["id"], None)
            if waiting is None:
                return
            if message.get("success"):
                waiting.callback(message.get("result"))
            else:
                waiting.errback(HomeAssistantError(f"websocket: {message.get('error')}"))

    def command(self, message_type: str, **fields) -> defer.Deferred:
        number = next(self._ids)
        self._waiting[number] = waiting = defer.Deferred()
        self._send({"id": number, "type": message_type, **fields})
        return waiting

    def closed(self, reason) -> None:
        if not self._authenticated.called:
            self._authenticated.errback(HomeAssistantError(f"websocket closed: {reason}"))
        waiting, self._waiting = self._waiting, {}
        for deferred in waiting.values():
            deferred.errback(HomeAssistantError(f"websocket closed: {reason}"))

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.sendClose()
