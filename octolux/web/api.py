"""The HTTP API: the original server's latest inputs and holding registers, and the history.

``GET /api/inputs`` and ``GET /api/registers`` answer for the first inverter
(the only one, usually); with several, ``/api/<name>/inputs`` and
``/api/<name>/registers`` answer for each. ``registers`` are the holding
registers, or with ``?kind=input`` every input register seen, raw (also those
no ``inputs/<n>`` block names). ``GET /api/history`` (and
``/api/<name>/history``) answers from the history database, off the reactor
thread (see ``HistoryResource``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, resource, server

from octolux.config.ini import ServerConfig
from octolux.history.query import QueryError, query_from_arguments
from octolux.net.listening import ListeningService


class _Node(resource.Resource):
    """A directory of the tree: unknown children are a plain 404."""

    def getChild(self, path: bytes, request) -> resource.IResource:
        """Any path not put here (the default's page is deprecated for not escaping)."""
        return pages.notFound()


class _ApiNode(_Node):
    """``/api``: also ``/api/<name>/...`` of an inverter added while running."""

    def __init__(self, find: Callable[[str], resource.Resource | None]):
        super().__init__()
        self._find = find

    def getChild(self, path: bytes, request) -> resource.IResource:
        """An inverter by name, or a 404."""
        found = self._find(path.decode("utf-8", "replace"))
        return found if found is not None else pages.notFound()


def _below_leaf(request) -> bool:
    """Is a path asked for below a leaf (``/api/inputs/x``)? Then it is a 404."""
    return bool(request.postpath) and request.postpath != [b""]


def _json_body(request, value: Any) -> bytes:
    """``value`` as the JSON body of an answer no cache keeps (the headers set here)."""
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, separators=(",", ":")).encode()


class JsonResource(resource.Resource):
    """A leaf answering GET with ``produce()`` as JSON."""

    isLeaf = True

    def __init__(self, produce: Callable[[], Any]):
        super().__init__()
        self._produce = produce

    def render_GET(self, request) -> bytes:
        """The current value, as ``application/json``."""
        if _below_leaf(request):
            return pages.notFound().render(request)
        return _json_body(request, self._produce())


class RegistersResource(resource.Resource):
    """``GET .../registers[?kind=hold|input]``: ``{"<register>": value, ...}``, in register order.

    ``hold`` (the default): the latest value of every holding register seen;
    ``input``: of every input register seen, raw. Another kind is a 400.
    """

    isLeaf = True

    def __init__(self, inverter):
        super().__init__()
        self._stores = {"hold": lambda: inverter.registers,
                        "input": lambda: inverter.input_registers}

    def render_GET(self, request) -> bytes:
        """The registers of the kind asked for, as ``application/json``."""
        if _below_leaf(request):
            return pages.notFound().render(request)
        kinds = request.args.get(b"kind", [b"hold"])
        store = self._stores.get(kinds[-1].decode("utf-8", "replace"))
        if store is None or len(kinds) > 1:
            request.setResponseCode(400)
            return _json_body(request, {"error": "kind: hold or input"})
        # JSON keys are strings; sorted, so the answer reads in register order.
        return _json_body(request, {str(r): v for r, v in sorted(store().items())})


def write_json(request, value: Any, code: int = 200) -> None:
    """Answer ``request`` (still open) with ``value`` as JSON."""
    request.setResponseCode(code)
    request.write(_json_body(request, value))
    request.finish()


class HistoryResource(resource.Resource):
    """``GET .../history?key=soc&key=p_pv&since=...&until=...&step=...&aggregate=avg``.

    Answers ``{"inverter", "since", "until", "step", "aggregate",
    "series": {key: [[time, value], ...]}}``, times in seconds since the epoch,
    each value the aggregate of its step (computed by the database). 400 for
    a bad query, 503 while the database is unavailable, 404 without a history.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, history, inverter_name: str, now: Callable[[], float]):
        super().__init__()
        self._history = history
        self._inverter_name = inverter_name
        self._now = now

    def render_GET(self, request):
        """Start the query; the answer is written when the database has answered."""
        if _below_leaf(request):
            return pages.notFound().render(request)
        if self._history is None:
            write_json(request, {"error": "no history: add a [history] section to config.ini"}, 404)
            return server.NOT_DONE_YET
        arguments = {
            name.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
            for name, values in request.args.items()
        }
        try:
            query = query_from_arguments(self._inverter_name, arguments, self._now())
        except QueryError as error:
            write_json(request, {"error": str(error)}, 400)
            return server.NOT_DONE_YET
        gone: list = []
        request.notifyFinish().addErrback(gone.append)  # the client went away
        answering = self._history.query(query)
        answering.addCallbacks(
            lambda series: self._answer(request, gone, query, series),
            lambda failure: self._failed(request, gone, failure),
        )
        return server.NOT_DONE_YET

    @staticmethod
    def _answer(request, gone, query, series) -> None:
        if not gone:
            write_json(request, {
                "inverter": query.inverter,
                "since": query.since,
                "until": query.until,
                "step": query.step,
                "aggregate": query.aggregate,
                "series": series,
            })

    def _failed(self, request, gone, failure: Failure) -> None:
        if failure.check(*self._history.query_errors):
            why = " ".join(failure.getErrorMessage().split())
            self.log.info("history query failed: {why}", why=why)
            answer, code = {"error": f"history unavailable: {why}"}, 503
        else:
            self.log.failure("history query failed", failure)
            answer, code = {"error": "unexpected error"}, 500
        if not gone:
            write_json(request, answer, code)


# -- the page -------------------------------------------------------------------------------

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
EVENT_DELAY = 0.2  # seconds: the blocks of one burst go out as one event
KEEPALIVE = 15.0  # seconds between comments on an idle event stream
MAX_COMMAND_BODY = 4096  # bytes
_COMMAND = re.compile(r"[a-z0-9_]{1,40}(/[0-9]{1,5})?\Z")


_CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


class _StaticFile(resource.Resource):
    """One file of the page, read once (they ship in the package: octolux/web/static/)."""

    isLeaf = True

    def __init__(self, name: str):
        super().__init__()
        with open(os.path.join(STATIC, name), "rb") as file:
            self._body = file.read()
        self._type = _CONTENT_TYPES[os.path.splitext(name)[1]]

    def render_GET(self, request) -> bytes:
        """The file; revalidated on every load, so a new version shows at once."""
        if _below_leaf(request):
            return pages.notFound().render(request)
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return self._body


def _event(kind: str, value: Any) -> bytes:
    data = json.dumps(value, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()


class EventsResource(resource.Resource):
    """``GET /api/events``: server-sent events, the page's live updates.

    A ``state`` event (all of ``/api/state``) on connecting, then an
    ``inverter`` event with one inverter's state whenever it changes (several
    changes within ``EVENT_DELAY`` make one event).
    """

    isLeaf = True

    def __init__(self, page, clock):
        super().__init__()
        self._page = page
        self._clock = clock
        self._clients: set = set()
        self._changed: dict[str, Any] = {}  # name -> LiveInverter, waiting to go out
        self._sending = None
        self._keepalive = None
        page.listeners.append(self._inverter_changed)

    def render_GET(self, request):
        """Keep the request open and stream events on it."""
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.write(b"retry: 2000\n\n" + _event("state", self._page.state()))
        self._clients.add(request)
        request.notifyFinish().addBoth(lambda _: self._clients.discard(request))
        if self._keepalive is None:
            self._keepalive = self._clock.callLater(KEEPALIVE, self._keep_alive)
        return server.NOT_DONE_YET

    def _inverter_changed(self, live) -> None:
        self._changed[live.name] = live
        if self._sending is None and self._clients:
            self._sending = self._clock.callLater(EVENT_DELAY, self._send)

    def _send(self) -> None:
        self._sending = None
        changed, self._changed = self._changed, {}
        events = b"".join(_event("inverter", live.state()) for live in changed.values())
        self._write(events)

    def _keep_alive(self) -> None:
        self._keepalive = None
        if self._clients:
            # A comment: proxies and phones keep an idle stream open for it.
            self._write(b": keepalive\n\n")
            self._keepalive = self._clock.callLater(KEEPALIVE, self._keep_alive)

    def _write(self, data: bytes) -> None:
        for request in list(self._clients):
            request.write(data)

    def close(self) -> None:
        """End every stream and timer (the service is stopping)."""
        for call in (self._sending, self._keepalive):
            if call is not None and call.active():
                call.cancel()
        self._sending = self._keepalive = None
        for request in list(self._clients):
            request.finish()
        self._clients.clear()


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_name(host: bytes) -> str:
    """The name in a Host header, without the port: ``[::1]:4346`` -> ``::1``."""
    text = host.decode("ascii", "replace").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.rpartition(":")[0] if text.count(":") == 1 else text


class CommandResource(resource.Resource):
    """``POST /api/command``: ``{"inverter": name, "command": name, "value": ...}`` -> OK/FAIL.

    Only with ``[server] control = yes``. The command runs through the
    inverter's ``CommandRunner``, as ``cmd/<command>`` would; ``value`` is the payload
    (true/false become ``on``/``off``). Cross-site requests cannot reach it: a
    browser sends ``application/json`` to another origin only after a CORS
    preflight, which this server never grants, and an ``Origin`` header, when
    sent, must name this very host. Listening on loopback only, the request
    must also be addressed to a loopback name (``Page.local_only``).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, page):
        super().__init__()
        self._page = page

    def render_POST(self, request):
        """Check the request, run the command, answer ``{"result": "OK"}`` or an error."""
        refusal = self._refusal(request)
        if refusal is not None:
            code, why = refusal
            write_json(request, {"error": why}, code)
            return server.NOT_DONE_YET
        try:
            live, command, payload = self._parse(request)
        except ValueError as error:
            write_json(request, {"error": str(error)}, 400)
            return server.NOT_DONE_YET
        gone: list = []
        request.notifyFinish().addErrback(gone.append)
        running = live.run_command(command, payload)
        running.addCallbacks(
            lambda result: gone or write_json(request, {"result": result}),
            lambda failure: self._failed(request, gone, failure),
        )
        return server.NOT_DONE_YET

    def _failed(self, request, gone, failure: Failure) -> None:
        # The runner turns every failure of a command into FAIL: this is a bug,
        # and the page is still owed an answer.
        self.log.failure("page command", failure)
        if not gone:
            write_json(request, {"error": "unexpected error"}, 500)

    def _refusal(self, request) -> tuple[int, str] | None:
        if not self._page.control:
            return 403, "control is off: set [server] control = yes to command from the page"
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip()
        if content_type.lower() != b"application/json":
            return 415, "send the command as application/json"
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host") or b""
        if origin is not None and origin.split(b"://", 1)[-1] != host:
            return 403, "cross-origin request refused"
        if self._page.local_only and _host_name(host) not in LOOPBACK_NAMES:
            # DNS rebinding: another site's name, pointed at 127.0.0.1, is
            # same-origin to the browser; the Host header still names it.
            return 403, "commands only through localhost, 127.0.0.1 or [::1]"
        return None

    def _parse(self, request):
        body = request.content.read(MAX_COMMAND_BODY + 1)
        if len(body) > MAX_COMMAND_BODY:
            raise ValueError("body too large")
        try:
            fields = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        live = self._page.inverter(fields.get("inverter"))
        if live is None:
            raise ValueError(f"no inverter named {fields.get('inverter')!r}")
        command = fields.get("command")
        if not isinstance(command, str) or not _COMMAND.match(command):
            raise ValueError("command: a command name, as in cmd/<name>")
        value = fields.get("value", "")
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("value: text, a number or true/false")
        return live, command, value.encode()


def page_resources(root: resource.Resource, api: resource.Resource, page, clock):
    """Put the page (``/``, ``/static/...``) and its API (state, events, command) in the tree."""
    api.putChild(b"state", JsonResource(page.state))
    events = EventsResource(page, clock)
    api.putChild(b"events", events)
    api.putChild(b"command", CommandResource(page))
    root.putChild(b"", _StaticFile("index.html"))
    files = _Node()
    for name in sorted(os.listdir(STATIC)):
        if os.path.splitext(name)[1] in _CONTENT_TYPES and name != "index.html":
            files.putChild(name.encode(), _StaticFile(name))
    root.putChild(b"static", files)
    return events


def inverter_resource(inverter, history=None, now=time.time, node=None) -> resource.Resource:
    """``inputs``, ``registers`` and ``history`` of one inverter (in ``node``, or a new one)."""
    node = _Node() if node is None else node
    node.putChild(b"inputs", JsonResource(lambda: inverter.latest_inputs))
    node.putChild(b"registers", RegistersResource(inverter))
    node.putChild(b"history", HistoryResource(history, inverter.name, now))
    return node


def api_root(
    inverters: Sequence,
    *,
    history=None,
    now: Callable[[], float] = time.time,
    page=None,
    clock=None,
) -> resource.Resource:
    """The resource tree: ``/api/...`` for the first inverter, ``/api/<name>/...`` for each.

    ``history`` is the ``HistoryService`` (None: no history); ``now`` gives
    the default ``until`` of history queries. With a ``page`` (an
    ``octolux.web.page.Page``), ``/`` is the page and ``/api/state``,
    ``/api/events`` and ``/api/command`` serve it (``clock`` times its events);
    the root's ``events`` attribute is then the event stream, to close on stop.
    """

    def added_while_running(name: str) -> resource.Resource | None:
        live = page.inverter(name) if page is not None else None
        return None if live is None else inverter_resource(live.inverter, history, now)

    api = inverter_resource(inverters[0], history, now, _ApiNode(added_while_running))
    if len(inverters) > 1:
        for inverter in inverters:
            api.putChild(inverter.name.encode(), inverter_resource(inverter, history, now))
    root = _Node()
    root.putChild(b"api", api)
    root.events = None
    if page is not None:
        root.events = page_resources(root, api, page, clock)
    return root


class ApiSite(server.Site):
    """A Site whose access log lines are debug events, not one info line per request."""

    displayTracebacks = False
    noisy = False  # no "Starting factory" lines

    def log(self, request) -> None:
        """Log one request at debug level (twisted.web calls this for every request)."""
        _access_log.debug(
            "{method} {uri} -> {code}",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            code=request.code,
        )


_access_log = Logger(namespace="octolux.web.access")


class ApiService(ListeningService):
    """Listens on ``[server] listen_host:port`` while running; ``port`` is the bound port."""

    log = Logger()

    def __init__(self, reactor, config: ServerConfig, root: resource.Resource):
        self._reactor = reactor
        self.config = config
        self.site = ApiSite(root)

    def startService(self) -> None:
        """Start listening; a port that cannot be bound stops start-up."""
        super().startService()
        host, port = self.config.listen_host, self.config.port
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = endpoint_type(self._reactor, port, interface=host)
        self.listen_now(endpoint, self.site, f"HTTP API: cannot listen on {host}:{port}")
        self.log.info("HTTP API on http://{host}:{port}/api/", host=host, port=self.port)

    def stopService(self) -> defer.Deferred:
        """Stop listening, and end the page's event streams."""
        super().stopService()
        events = getattr(self.site.resource, "events", None)
        if events is not None:
            events.close()
        return self.stop_listening()
