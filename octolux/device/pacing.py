"""A bridge-wide gate for bulk work, so that a fleet's start-up goes as fast as its output drains.

Every inverter reads its 240 holding registers on connecting, and each value
goes out on ``hold/<register>``. For one inverter that is nothing; for 10,000
connecting at once it is 2.4 million messages, more than the broker takes in
a minute. A fixed rate is either too slow for a fast machine or too fast for a
busy one (then the messages queue without bound). A ``Pacer`` instead lets
bulk work run while what it produced is draining: a piece of work starts only
when the work still running plus the ``backlog`` (the messages not yet through
to the broker, ``MqttService.backlog``) leave room for it under ``limit``.
Work is let through in order; commands never go through the Pacer.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

# Units (register values) running or waiting to reach the broker, at most: the
# room for what the output has not drained (MqttService.IN_FLIGHT, 2,000, in
# paho's hands) and as much again read ahead, so that the output never runs
# dry; also at most 100 reads of 40 registers at once, whatever the output.
BULK_LIMIT = 4_000
# Seconds between looks at the backlog while work waits for it to drain.
POLL = 0.01


def _nothing_waiting() -> int:
    return 0


class Pacer:
    """Runs bulk work in order while ``limit`` leaves room for it beside the ``backlog``."""

    def __init__(
        self,
        clock: IReactorTime,
        backlog: Callable[[], int] = _nothing_waiting,
        limit: int = BULK_LIMIT,
    ):
        self._clock = clock
        self._backlog = backlog
        self._limit = limit
        self._running = 0  # units of the work started and not yet done
        self._waiting: collections.deque[tuple[int, Callable[[], Any], Deferred]] = (
            collections.deque()
        )
        self._timer: IDelayedCall | None = None
        self._starting = False  # in _start_what_fits: no second loop from inside the first

    def run(self, units: int, work: Callable[[], Any]) -> Deferred:
        """Call ``work()`` when there is room for ``units``; fires with its result.

        The units count as running until ``work``'s result (a Deferred's) has
        arrived: by then what the work produced is in the backlog. Work bigger
        than ``limit`` waits until nothing else runs or waits to drain.
        """
        done: Deferred = Deferred(canceller=self._cancelled)
        self._waiting.append((units, work, done))
        self._start_what_fits()
        return done

    def _fits(self, units: int) -> bool:
        used = self._running + self._backlog()
        return used + units <= self._limit or used == 0

    def _start_what_fits(self) -> None:
        if self._starting:
            return  # work that finished at once: the loop below goes on with its room
        self._starting = True
        try:
            while self._waiting and self._fits(self._waiting[0][0]):
                units, work, done = self._waiting.popleft()
                self._running += units
                maybeDeferred(work).addBoth(self._finished, units, done)
        finally:
            self._starting = False
        if self._waiting and self._timer is None:
            # The backlog drains with nobody telling: look again soon.
            self._timer = self._clock.callLater(POLL, self._poll)

    def _finished(self, result, units: int, done: Deferred) -> None:
        self._running -= units
        if not done.called:  # else cancelled while it ran: nobody waits for the result
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(result)
        self._start_what_fits()

    def _poll(self) -> None:
        self._timer = None
        self._start_what_fits()

    def _cancelled(self, done: Deferred) -> None:
        # Work still waiting never starts; work running goes on, its result unheard.
        self._waiting = collections.deque(item for item in self._waiting if item[2] is not done)
        if not self._waiting and self._timer is not None:
            self._timer.cancel()
            self._timer = None
