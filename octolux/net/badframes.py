"""A bound on what a peer's garbage costs the log, shared by the bridge and the simulator."""

from __future__ import annotations

import collections

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from octolux import lxp

# Bad frames logged one line each on a connection; after that, one summary
# per interval. A dongle sending garbage fast could otherwise write a million
# lines a minute, which an SD card does not survive.
BAD_FRAME_LINES = 5
BAD_FRAME_SUMMARY_INTERVAL = 60.0
# The most of a bad frame shown in hex at debug (a garbage run can be a whole
# 64 KB read).
_BAD_FRAME_HEX_BYTES = 64


class BadFrameLog:
    """Logs one connection's bad frames within a bound, whatever the peer sends.

    The first ``lines`` bad frames get a line each (and, at debug, their first
    bytes in hex); later ones are counted by reason and summed up in one line
    per ``interval`` seconds while they keep coming, and once more by
    ``close`` if any were left unreported. So a connection logs at most
    ``lines + 1 + (its duration / interval) + 1`` bad-frame lines.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime,
        name: str,
        peer: str,
        *,
        lines: int = BAD_FRAME_LINES,
        interval: float = BAD_FRAME_SUMMARY_INTERVAL,
    ):
        self._log = log
        self._clock = clock
        self._name = name
        self.peer = peer
        self._lines_left = lines
        self._interval = interval
        self._unreported: collections.Counter[str] = collections.Counter()
        self._unreported_bytes = 0
        self._since = 0.0
        self._summary_call: IDelayedCall | None = None

    def report(self, bad: lxp.BadFrame) -> None:
        """Log ``bad``, or count it for the next summary."""
        if self._lines_left > 0:
            self._lines_left -= 1
            self._log_line(bad)
            return
        if self._lines_left == 0:
            self._lines_left = -1  # say once why the lines stop
            self._log.info(
                "{name}: more bad frames from {peer}; from now on one summary every "
                "{interval:g} s",
                name=self._name, peer=self.peer, interval=self._interval,
            )
        if self._summary_call is None:
            self._since = self._clock.seconds()
            self._summary_call = self._clock.callLater(self._interval, self._summarise)
        self._unreported[bad.reason] += 1
        self._unreported_bytes += len(bad.data)

    def close(self) -> None:
        """The connection is gone: sum up what was not reported yet, stop the timer."""
        if self._summary_call is not None:
            if self._summary_call.active():
                self._summary_call.cancel()
            self._summary_call = None
        self._log_summary()

    def _log_line(self, bad: lxp.BadFrame) -> None:
        self._log.info(
            "{name}: skipped {length} bytes from {peer}: {reason}",
            name=self._name, length=len(bad.data), peer=self.peer, reason=bad.reason,
        )
        # Formatted only if an observer wants debug: no hex is built otherwise.
        shown = bad.data[:_BAD_FRAME_HEX_BYTES]
        self._log.debug(
            "{name}: skipped bytes: {data.hex()}{more}", name=self._name, data=shown,
            more=f" ... ({len(bad.data) - len(shown)} more)" if len(bad.data) > len(shown) else "",
        )

    def _summarise(self) -> None:
        self._summary_call = None
        if self._log_summary():
            # Still coming: the next summary covers the next interval.
            self._since = self._clock.seconds()
            self._summary_call = self._clock.callLater(self._interval, self._summarise)

    def _log_summary(self) -> bool:
        """Log the unreported bad frames, if any; True if there were."""
        if not self._unreported:
            return False
        counts = dict(self._unreported.most_common())
        self._log.info(
            "{name}: skipped {frames} more bad frames ({length} bytes) from {peer} "
            "in {seconds:g} s: {reasons}",
            name=self._name, frames=sum(counts.values()), length=self._unreported_bytes,
            peer=self.peer, seconds=round(self._clock.seconds() - self._since, 1),
            reasons=", ".join(f"{reason} {count}" for reason, count in counts.items()),
            counts=counts,
        )
        self._unreported.clear()
        self._unreported_bytes = 0
        return True
