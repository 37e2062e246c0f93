"""Requests to an inverter, one on the wire at a time, each within its deadline.

``RequestEngine`` is the state machine of a conversation with an inverter and
nothing else: it queues requests, puts one at a time on the wire through a
``send`` callable, hands it the reply that answers it and fails it at its
deadline. It knows time only through an ``IReactorTime`` and the wire only
through what its owner tells it (``connected``, ``disconnected``,
``reply_received``, ``hold``), as Twisted's ``ClientService`` keeps its state
machine apart from sockets; so a dongle's TCP stream and a Modbus line can
share it, and its tests run on ``twisted.internet.task.Clock``.

Which reply answers which request is a ``ReplyRule``: ``LXP_REPLIES`` for a
dongle, where every client's replies and broadcasts reach every client
(PROTOCOL.md section 8), so only a reply that matches on function, register,
serials, count (reads) and value (writes) answers; a broadcast, another
client's reply, a late reply to an earlier request or an exception meant for
someone else is news, not the answer, and the request keeps waiting for its
own until its deadline.

A request is a generator of steps (``Steps``): it yields the frames to send
and is sent each answer; its return value is the result. A plain read or write
has one step, a read-modify-write two, run back to back.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Generator
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from octolux import lxp

# A queued request goes on the wire only while this much of its time is left
# (or half the command timeout, if that is shorter): a dongle answers within
# about a second (the inverter's serial bus, then WiFi), so with less left the
# reply could not arrive in time, and a request failed as unanswered might
# still be carried out by the inverter later.
SEND_MARGIN = 2.0  # seconds

Steps = Generator[Any, Any, Any]  # yields requests, is sent their answers, returns the result


class CommandFailed(Exception):
    """A request to the inverter did not succeed; ``reason`` says why, for the log.

    Reasons (exact texts, ``T`` being the command timeout in seconds as ``%g``):
    ``no reply within T s``, ``not connected within T s``, ``still queued after T s``,
    ``not sent: T2 s of T s left`` (its turn came with too little time left for
    a reply, see ``SEND_MARGIN``; ``T2`` with one decimal), ``exception reply:
    ILLEGAL_VALUE`` (or another ``ExceptionCode`` name, or ``code N``),
    ``inverter serial not learned within T s`` (connected, but no frame has
    told the inverter serial yet), ``connection lost``
    (it was on the wire when the connection dropped), ``stopping`` (the service
    stopped), ``not running`` (asked while the service was not running),
    ``invalid request: ...`` (a register, count, value or bit out of range).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ReplyRule(Protocol):
    """Which reply answers which request, for one kind of wire."""

    def answers(self, request: Any, reply: Any) -> bool:
        """Is ``reply`` the inverter's answer to ``request`` (the one on the wire)?"""

    def refusal(self, reply: Any) -> str | None:
        """The ``CommandFailed`` reason if ``reply``, an answer, refuses its request; else None."""


class LxpReplies:
    """The ``ReplyRule`` of a dongle's LXP stream (the datalog serial already checked)."""

    @staticmethod
    def answers(request: lxp.Frame, reply: lxp.Frame) -> bool:
        """Is ``reply`` the inverter's answer to ``request``? See the module docstring."""
        if reply.register != request.register or reply.inverter != request.inverter:
            return False
        kind = type(reply)
        if kind is lxp.ReadReply:
            # A broadcast of the very registers asked for (inputs 0-39) is the data
            # asked for. Another count is someone else's read, or a late reply to an
            # earlier one of ours: taking it would leave our own reply to be taken,
            # later, as the answer to the next request.
            return (
                type(request) is lxp.ReadRequest
                and reply.function == request.function
                and len(reply.values) == request.count
            )
        if kind is lxp.WriteSingleReply:
            # An echo of another value is news (someone else's write, or the late
            # echo of an earlier write of ours), not the answer to this write.
            return type(request) is lxp.WriteSingleRequest and reply.value == request.value
        if kind is lxp.WriteMultiReply:
            # Its ack carries the count written: another count answers another write.
            return type(request) is lxp.WriteMultiRequest and reply.count == len(request.values)
        if kind is lxp.ExceptionReply:
            return reply.function == request.function
        return False

    @staticmethod
    def refusal(reply: lxp.Frame) -> str | None:
        """An exception reply refuses (``exception reply: ILLEGAL_VALUE``); the others answer."""
        if type(reply) is lxp.ExceptionReply:
            return f"exception reply: {reply.reason}"
        return None


LXP_REPLIES = LxpReplies()


@attrs.define(eq=False)
class _Request:
    """One queued request: its steps, its caller's Deferred and its deadline."""

    description: str
    steps: Steps
    deadline: float
    deferred: Deferred = attrs.field(init=False)
    timer: IDelayedCall | None = None
    on_wire: Any = None  # the request frame sent, waiting for its answer
    done: bool = False


class RequestEngine:
    """A queue of requests with deadlines, one at a time on the wire, answered by ``rule``.

    The owner says when the wire is up (``connected``) and down
    (``disconnected``), gives it every reply (``reply_received``), and may
    ``hold`` the queue while requests cannot be addressed yet. Each request
    fails with ``CommandFailed`` within ``timeout`` seconds of ``submit``, and a
    request that has failed is never sent afterwards.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[Any], None],  # puts one request frame on the wire
        rule: ReplyRule = LXP_REPLIES,
        *,
        timeout: float,  # seconds a request may take, waiting included
        # The request as it goes out (e.g. addressed with serials learned since
        # it was built); may raise CommandFailed to refuse it.
        prepare: Callable[[Any], Any] | None = None,
        name: str = "inverter",  # starts every log line
    ):
        self.timeout = timeout
        self.send_margin = min(SEND_MARGIN, timeout / 2)
        self.name = name
        self.accepting = False
        self._clock = clock
        self._send = send
        self._rule = rule
        self._prepare = prepare
        self._queue: collections.deque[_Request] = collections.deque()
        self._current: _Request | None = None
        self._connected = False
        self._connected_at = 0.0
        self._held: str | None = None

    # -- the owner's side -------------------------------------------------------

    def start(self) -> None:
        """Take requests from now on."""
        self.accepting = True

    def stop(self) -> None:
        """Fail every pending request with ``stopping``; refuse new ones (``not running``)."""
        self.accepting = False
        pending = [self._current, *self._queue] if self._current else list(self._queue)
        for request in pending:
            self._finish(request, failure=CommandFailed("stopping"))

    def connected(self) -> None:
        """The wire is up: send the next request (unless held)."""
        self._connected = True
        self._connected_at = self._clock.seconds()
        self._send_next()

    def disconnected(self) -> None:
        """The wire is down: the request on it fails with ``connection lost``; the queue waits."""
        self._connected = False
        if self._current is not None:
            self._finish(self._current, failure=CommandFailed("connection lost"))

    def hold(self, reason: str) -> None:
        """Send nothing until ``release``; a request that expires meanwhile fails
        with ``<reason> within T s`` (e.g. ``inverter serial not learned``)."""
        self._held = reason

    def release(self) -> None:
        """Requests may go out again: send the next one."""
        self._held = None
        self._send_next()

    def answered_by(self, reply: Any) -> Any:
        """The request on the wire if ``reply`` answers it, else None."""
        current = self._current
        if current is None or current.on_wire is None:
            return None
        return current.on_wire if self._rule.answers(current.on_wire, reply) else None

    def reply_received(self, reply: Any) -> bool:
        """Give ``reply`` to the request on the wire if it answers it; True if it did.

        A refusal (an exception reply) fails the request at once with its reason;
        an answer advances it to its next step or its result.
        """
        if self.answered_by(reply) is None:
            return False
        refusal = self._rule.refusal(reply)
        if refusal is not None:
            self._finish(self._current, failure=CommandFailed(refusal))
        else:
            self._advance(self._current, reply)
        return True

    # -- the callers' side ------------------------------------------------------

    def submit(self, description: str, steps: Steps) -> Deferred:
        """Queue the request ``steps``; fires with its result or fails with CommandFailed.

        ``description`` names it in log lines. Cancelling the Deferred takes it
        off the queue (or the wire).
        """
        if not self.accepting:
            steps.close()
            return fail(CommandFailed("not running"))
        request = _Request(description, steps, self._clock.seconds() + self.timeout)
        request.deferred = Deferred(canceller=lambda _: self._cancel(request))
        request.timer = self._clock.callLater(self.timeout, self._expire, request)
        self._queue.append(request)
        self._send_next()
        return request.deferred

    # -- the machine ------------------------------------------------------------

    def _send_next(self) -> None:
        """Put the next live request on the wire, if it is up, free and not held."""
        while (
            self._current is None and self._queue and self._connected and self._held is None
        ):
            request = self._queue.popleft()
            if request.done:
                continue
            left = request.deadline - self._clock.seconds()
            if left < self.send_margin:
                # Its reply could not arrive in time (or its timer is due in
                # this very instant): never send it.
                self._finish(request, failure=self._too_late(request, left), send_next=False)
                continue
            self._current = request
            self._advance(request, None)

    def _advance(self, request: _Request, answer: Any) -> None:
        """Give ``answer`` to the request; send its next frame or finish it."""
        try:
            frame = request.steps.send(answer)
        except StopIteration as stop:
            self._finish(request, result=stop.value)
            return
        except CommandFailed as error:
            self._finish(request, failure=error)
            return
        except Exception:
            self._finish(request, failure=Failure())
            return
        left = request.deadline - self._clock.seconds()
        if answer is not None and left < self.send_margin:
            # A later step (a read-modify-write's write) whose turn came too late.
            self._finish(request, failure=self._too_late(request, left))
            return
        if self._prepare is not None:
            try:
                frame = self._prepare(frame)
            except CommandFailed as error:
                self._finish(request, failure=error)
                return
        request.on_wire = frame
        self.log.debug("{name}: {command}: sending {request}", name=self.name,
                       command=request.description, request=frame)
        self._send(frame)

    def _expire(self, request: _Request) -> None:
        timeout = self.timeout
        if request is self._current:
            reason = f"no reply within {timeout:g} s"
        elif self._connected and self._held is not None:
            reason = f"{self._held} within {timeout:g} s"
        elif not self._connected or self._connected_at >= request.deadline:
            # (The second: the connection came just as its time ran out.)
            reason = f"not connected within {timeout:g} s"
        else:
            reason = f"still queued after {timeout:g} s"
        self._finish(request, failure=CommandFailed(reason))

    def _too_late(self, request: _Request, left: float) -> CommandFailed:
        """Why ``request``, whose turn came with ``left`` seconds to go, is not sent."""
        timeout = self.timeout
        if self._connected_at > request.deadline - self.send_margin:
            # The connection itself came too late for it.
            return CommandFailed(f"not connected within {timeout:g} s")
        if left <= 0:
            return CommandFailed(f"still queued after {timeout:g} s")
        return CommandFailed(f"not sent: {left:.1f} s of {timeout:g} s left")

    def _cancel(self, request: _Request) -> None:
        # Deferred.cancel errbacks with CancelledError once we return.
        self._settle(request)
        self._send_next()

    def _settle(self, request: _Request) -> None:
        """Take ``request`` off the wire, the queue and the clock."""
        request.done = True
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        request.timer = None
        request.steps.close()
        if request is self._current:
            self._current = None
        # Expired requests would be skipped at dequeue anyway; removing them
        # keeps the queue from holding dead entries while disconnected.
        with contextlib.suppress(ValueError):
            self._queue.remove(request)

    def _finish(
        self, request: _Request, *, result: Any = None, failure=None, send_next: bool = True
    ) -> None:
        """Settle ``request`` and fire its Deferred; then, normally, start the next one."""
        if request.done:
            return
        self._settle(request)
        if failure is None:
            request.deferred.callback(result)
        else:
            if isinstance(failure, CommandFailed):
                # Debug only: whoever asked logs the outcome (the MQTT bridge does).
                self.log.debug("{name}: {command} failed: {reason}", name=self.name,
                               command=request.description, reason=failure.reason)
            request.deferred.errback(failure)
        if send_next and self.accepting:
            self._send_next()
