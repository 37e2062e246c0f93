"""The HTTP API: the original server's latest inputs and holding registers, and the history.

``GET /api/inputs`` and ``GET /api/registers`` answer for the first inverter
(the only one, usually); with several, ``/api/<name>/inputs`` and
``/api/<name>/registers`` answer for each. ``GET /api/history`` (and
``/api/<name>/history``) answers from the history database, off the reactor
thread (see ``HistoryResource``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, resource, server

from octolux.config import ServerConfig
from octolux.history import QueryError, query_from_arguments


class _Node(resource.Resource):
    """A directory of the tree: unknown children are a plain 404."""

    def getChild(self, path: bytes, request) -> resource.IResource:
        """Any path not put here (the default's page is deprecated for not escaping)."""
        return pages.notFound()


class JsonResource(resource.Resource):
    """A leaf answering GET with ``produce()`` as JSON."""

    isLeaf = True

    def __init__(self, produce: Callable[[], Any]):
        super().__init__()
        self._produce = produce

    def render_GET(self, request) -> bytes:
        """The current value, as ``application/json``."""
        if request.postpath and request.postpath != [b""]:
            return pages.notFound().render(request)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self._produce(), separators=(",", ":")).encode()


def write_json(request, value: Any, code: int = 200) -> None:
    """Answer ``request`` (still open) with ``value`` as JSON."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.write(json.dumps(value, separators=(",", ":")).encode())
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
        if request.postpath and request.postpath != [b""]:
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


def inverter_resource(inverter, history=None, now=time.time) -> resource.Resource:
    """``inputs``, ``registers`` and ``history`` of one inverter."""
    node = _Node()
    node.putChild(b"inputs", JsonResource(lambda: inverter.latest_inputs))
    node.putChild(
        b"registers",
        # JSON keys are strings; sorted, so the answer reads in register order.
        JsonResource(lambda: {str(r): v for r, v in sorted(inverter.registers.items())}),
    )
    node.putChild(b"history", HistoryResource(history, inverter.name, now))
    return node


def api_root(
    inverters: Sequence, *, history=None, now: Callable[[], float] = time.time
) -> resource.Resource:
    """The resource tree: ``/api/...`` for the first inverter, ``/api/<name>/...`` for each.

    ``history`` is the ``HistoryService`` (None: no history); ``now`` gives
    the default ``until`` of history queries.
    """
    api = inverter_resource(inverters[0], history, now)
    if len(inverters) > 1:
        for inverter in inverters:
            api.putChild(inverter.name.encode(), inverter_resource(inverter, history, now))
    root = _Node()
    root.putChild(b"api", api)
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


class ApiService(service.Service):
    """Listens on ``[server] listen_host:port`` while running; ``port`` is the bound port."""

    log = Logger()

    def __init__(self, reactor, config: ServerConfig, root: resource.Resource):
        self._reactor = reactor
        self.config = config
        self.site = ApiSite(root)
        self.listening: IListeningPort | None = None

    @property
    def port(self) -> int | None:
        """The TCP port actually listened on (useful with ``port = 0``)."""
        return None if self.listening is None else self.listening.getHost().port

    def startService(self) -> None:
        """Start listening; a port that cannot be bound stops start-up."""
        super().startService()
        host, port = self.config.listen_host, self.config.port
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = endpoint_type(self._reactor, port, interface=host)
        listening = endpoint.listen(self.site)
        # The reactor listens synchronously, so the result is already here;
        # raising it stops start-up instead of running without the API.
        result: list = []
        listening.addBoth(result.append)
        if isinstance(result[0], Failure):
            self.log.error(
                "HTTP API: cannot listen on {host}:{port}: {why}",
                host=host,
                port=port,
                why=_reason(result[0]),
            )
            result[0].raiseException()
        self.listening = result[0]
        self.log.info("HTTP API on http://{host}:{port}/api/", host=host, port=self.port)

    def stopService(self) -> defer.Deferred:
        """Stop listening."""
        super().stopService()
        listening, self.listening = self.listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)


def _reason(failure: Failure) -> str:
    """Why listening failed, without Twisted's restatement of the address."""
    socket_error = getattr(failure.value, "socketError", None)
    return getattr(socket_error, "strerror", None) or failure.getErrorMessage()
