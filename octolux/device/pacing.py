"""A bridge-wide budget for bulk work, so that a fleet's start-up does not swamp the bridge.

Every inverter reads its 240 holding registers on connecting, and each value
goes out on ``hold/<register>``. For one inverter that is nothing; for 10,000
connecting at once it is 2.4 million messages in a minute, more than the
reactor and paho's thread can pass on: replies wait past their deadline and
paho's unbounded queue of outgoing messages takes gigabytes. A ``Pacer`` spreads
such work over time at a fixed rate of units (here: register values), with a
burst allowance so that a single inverter, or a few, are never slowed down.
"""

from __future__ import annotations

import collections

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

# Register values a second for the bridge as a whole: 10,000 inverters' 240
# registers in about 8 minutes (at 10,000 a second, bench/fleet.py's bridge came
# out of its start-up 35 MiB bigger); a burst of 1,000 lets one inverter, or a
# few, through at once.
BULK_RATE = 5_000.0
BULK_BURST = 1_000.0


class Pacer:
    """A token bucket on a clock: ``take(units)`` fires once the budget allows, in order."""

    def __init__(self, clock: IReactorTime, rate: float = BULK_RATE, burst: float = BULK_BURST):
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._updated = clock.seconds()
        self._waiting: collections.deque[tuple[float, Deferred]] = collections.deque()
        self._timer: IDelayedCall | None = None

    def take(self, units: float) -> Deferred[None]:
        """Fires when ``units`` may be spent; the caller then does that much work at once.

        A take bigger than the burst waits until the bucket is full, then
        leaves it in debt: later takes wait for the debt to be paid.
        """
        self._refill()
        if not self._waiting and self._tokens >= min(units, self._burst):
            self._tokens -= units
            return succeed(None)
        turn: Deferred[None] = Deferred(canceller=self._cancelled)
        self._waiting.append((units, turn))
        self._schedule()
        return turn

    def _refill(self) -> None:
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def _schedule(self) -> None:
        if self._timer is not None or not self._waiting:
            return
        units, _ = self._waiting[0]
        missing = min(units, self._burst) - self._tokens
        self._timer = self._clock.callLater(max(0.0, missing / self._rate), self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._refill()
        while self._waiting:
            units, turn = self._waiting[0]
            if self._tokens < min(units, self._burst) - 1e-9:
                break
            self._waiting.popleft()
            self._tokens -= units
            turn.callback(None)
        self._schedule()

    def _cancelled(self, turn: Deferred) -> None:
        self._waiting = collections.deque(item for item in self._waiting if item[1] is not turn)
        if not self._waiting and self._timer is not None:
            self._timer.cancel()
            self._timer = None
