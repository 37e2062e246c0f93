"""Keeping the inverter's clock on the bridge's local time (``[lxp] sync_time = yes``).

The inverter runs its time slots by its own clock, which drifts and knows
nothing of summer time. ``ClockKeeper`` reads the clock (holding registers
12-14) on every connection and once a day, and sets it, in one multi write,
when it is more than a minute off, logging by how much.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from twisted.application import service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from octolux.device.requests import CommandFailed
from octolux.lxp import holding

CHECK_INTERVAL = 24 * 3600.0  # seconds between checks, besides one per connection
TOLERANCE = 60.0  # seconds of drift left alone


class ClockKeeper(service.Service):
    """Checks one inverter's clock on connecting and daily; corrects drift over ``tolerance``.

    Wire it with ``inverter.add_observer(keeper)``; as a service it runs the daily check.
    """

    log = Logger()

    def __init__(
        self,
        inverter,
        *,
        clock,  # IReactorTime
        now: Callable[[], datetime.datetime] = datetime.datetime.now,  # local time, naive
        interval: float = CHECK_INTERVAL,
        tolerance: float = TOLERANCE,
    ):
        self.inverter = inverter
        self.now = now
        self.interval = interval
        self.tolerance = tolerance
        self._daily = LoopingCall(self.check)
        self._daily.clock = clock

    def startService(self) -> None:
        """Check once a day from now on (and on every connection, as an observer)."""
        super().startService()
        self._daily.start(self.interval, now=False)

    def stopService(self) -> None:
        """No more checks."""
        super().stopService()
        if self._daily.running:
            self._daily.stop()

    # -- InverterObserver ----------------------------------------------------------

    def connection_changed(self, connected: bool) -> None:
        """Check the clock as soon as the datalogger is connected."""
        if connected and self.running:
            self.check()

    def inputs_received(self, blocks) -> None:
        """Nothing to do."""

    def registers_received(self, registers) -> None:
        """Nothing to do."""

    # -- the check ---------------------------------------------------------------------

    def check(self) -> Deferred[float | None]:
        """Read the clock, set it if it is off; fires with the drift in seconds (None: unknown).

        Never fails: a failure is logged (the next check comes anyway).
        """
        return ensureDeferred(self._check())

    async def _check(self) -> float | None:
        name = self.inverter.name
        try:
            registers = await self.inverter.read_hold(holding.CLOCK, 3)
        except CommandFailed as error:
            self.log.info("{name}: cannot read the inverter's clock: {reason}",
                          name=name, reason=error.reason)
            return None
        now = self.now()
        try:
            clock = holding.decode_clock(*(registers[holding.CLOCK + i] for i in range(3)))
        except ValueError:
            clock = None
        drift = None if clock is None else (clock - now).total_seconds()
        if drift is not None and abs(drift) <= self.tolerance:
            self.log.debug("{name}: the inverter's clock is {drift:+.0f} s off: left alone",
                           name=name, drift=drift)
            return drift
        shown = "not a valid time" if drift is None else f"{drift:+.0f} s off"
        try:
            await self.inverter.write_multi(holding.CLOCK, holding.encode_clock(self.now()))
        except CommandFailed as error:
            self.log.warn("{name}: the inverter's clock is {shown}; setting it failed: {reason}",
                          name=name, shown=shown, reason=error.reason)
            return drift
        self.log.info("{name}: the inverter's clock was {shown} ({clock}); set to local time",
                      name=name, shown=shown, clock=clock)
        return drift
