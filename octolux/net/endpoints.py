"""Peers and endpoints in words: ``host:port`` for the log, and why a connection attempt failed."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from octolux.config.ini import host_and_port


def describe_peer(address) -> str:
    """``host:port`` for an IPv4/IPv6 address, else the address as text."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return str(address)
    return host_and_port(host, port)


def failure_phrase(failure: Failure) -> str:
    """A connection failure as a short phrase: Twisted's message without its full stop."""
    return failure.getErrorMessage().rstrip(".")


@implementer(IStreamClientEndpoint)
class FailureReportingEndpoint:
    """A client endpoint that tells ``on_failure`` why each failed connection attempt failed.

    ``ClientService`` has no hook for a failed attempt; wrapping its endpoint
    in this is how the inverter's and the relay's "cannot connect: <why>" log
    lines get their reason.
    """

    def __init__(self, endpoint, on_failure: Callable[[Failure], None]):
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory):
        """Connect through the wrapped endpoint."""
        attempt = self._endpoint.connect(factory)
        attempt.addErrback(self._failed)
        return attempt

    def _failed(self, failure: Failure) -> Failure:
        self._on_failure(failure)
        return failure

    def __repr__(self) -> str:
        return repr(self._endpoint)
