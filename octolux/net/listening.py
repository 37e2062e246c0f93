"""A service that listens on one port while it runs: the HTTP API, a dongle listener.

A port that cannot be had stops start-up with one error line saying why,
rather than leaving the bridge running without it.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure


class ListeningService(service.Service):
    """Listens from ``listen_now`` (called by ``startService``) until ``stop_listening``."""

    log = Logger()
    listening: IListeningPort | None = None

    @property
    def port(self) -> int | None:
        """The TCP port actually listened on (useful with port 0)."""
        return None if self.listening is None else self.listening.getHost().port

    def listen_now(self, endpoint, factory, what: str) -> None:
        """Listen on ``endpoint``; if it cannot, log ``<what>: <why>`` and raise the error."""
        result: list = []
        # The reactor listens synchronously, so the result is already here;
        # raising it stops start-up instead of running without the port.
        endpoint.listen(factory).addBoth(result.append)
        if isinstance(result[0], Failure):
            self.log.error("{what}: {why}", what=what, why=cannot_listen_reason(result[0]))
            result[0].raiseException()
        self.listening = result[0]

    def stop_listening(self) -> defer.Deferred:
        """Close the port (if open); fires once it is closed."""
        listening, self.listening = self.listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)


def cannot_listen_reason(failure: Failure) -> str:
    """Why listening failed, without Twisted's restatement of the address."""
    socket_error = getattr(failure.value, "socketError", None)
    return getattr(socket_error, "strerror", None) or failure.getErrorMessage()
