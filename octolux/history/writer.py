"""The writer: one thread, one store, a bounded buffer.

``add`` (reactor thread) puts samples in the buffer and returns at once; the
thread writes them in batches. A database that is down or full costs nothing
but the samples that overflow the buffer: writes are retried, the loss is
counted, and each outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Sequence

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from octolux.history.query import Sample
from octolux.history.store import Store

log = Logger()

BUFFER_SIZE = 100_000  # samples kept while the database is away (~30 hours of frames)
BATCH_SIZE = 2_000  # samples written in one transaction
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds between attempts while failing
PRUNE_INTERVAL = 3600.0  # seconds between applications of retention and size limits
STOP_TIMEOUT = 10.0  # seconds the final flush may take when the bridge stops


@attrs.define
class WriterStats:
    """How a writer is doing, for the page and the tests."""

    written: int = 0  # samples committed
    lost: int = 0  # samples dropped because the buffer was full
    pending: int = 0  # samples waiting (buffered or being written)
    failing: bool = False  # is the database unavailable right now?
    error: str = ""  # why, while failing


class HistoryWriter:
    """Writes the samples given to ``add`` to one store, from one thread of its own.

    ``add`` never blocks the reactor: beyond ``buffer_size`` waiting samples,
    the oldest are dropped and counted. While the store fails, the thread
    retries after each of ``retry_delays`` (the last one repeating).
    """

    def __init__(
        self,
        store: Store,
        reactor,
        *,
        buffer_size: int = BUFFER_SIZE,
        batch_size: int = BATCH_SIZE,
        retry_delays: Sequence[float] | None = None,  # default: RETRY_DELAYS
        prune_interval: float = PRUNE_INTERVAL,
        now: Callable[[], float] = time.time,
    ):
        self.store = store
        self._reactor = reactor
        self._buffer_size = buffer_size
        self._batch_size = min(batch_size, buffer_size)
        self._retry_delays = tuple(RETRY_DELAYS if retry_delays is None else retry_delays)
        self._prune_interval = prune_interval
        self._now = now
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._buffer: collections.deque[Sample] = collections.deque()
        self._in_flight = 0
        self._stopping = False
        self._stop_deadline = 0.0  # when stopping: the flush ends by then (time of self._now)
        self._thread: threading.Thread | None = None
        self._stopped: defer.Deferred | None = None
        self._written = 0
        self._lost = 0
        self._lost_this_outage = 0
        self._dropping = False  # reactor thread: has this run of losses been logged?
        self._failing_since: float | None = None
        self._error = ""

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        with self._lock:
            return WriterStats(
                written=self._written,
                lost=self._lost,
                pending=len(self._buffer) + self._in_flight,
                failing=self._failing_since is not None,
                error=self._error,
            )

    # -- reactor thread --------------------------------------------------------------

    def start(self) -> None:
        """Start the writing thread."""
        self._stopped = defer.Deferred()
        self._thread = threading.Thread(
            target=self._run, name=f"octolux-history ({self.store.description})", daemon=True
        )
        self._thread.start()

    def add(self, samples: Sequence[Sample]) -> None:
        """Queue ``samples``; drops the oldest waiting ones beyond the buffer's size."""
        with self._lock:
            if self._stopping:
                return
            self._buffer.extend(samples)
            overflow = len(self._buffer) + self._in_flight - self._buffer_size
            dropped = 0
            while overflow > 0 and self._buffer:
                self._buffer.popleft()
                overflow -= 1
                dropped += 1
            self._lost += dropped
            self._lost_this_outage += dropped
            if not dropped:
                self._dropping = False
            self._wakeup.notify()
        if dropped and not self._dropping:
            self._dropping = True
            log.warn(
                "history: {store}: buffer full ({size} samples), dropping the oldest until"
                " the database takes them again",
                store=self.store.description,
                size=self._buffer_size,
            )

    def stop(self) -> defer.Deferred:
        """Write what is waiting (for up to ``STOP_TIMEOUT`` s), then end the thread."""
        if self._thread is None:
            return defer.succeed(None)
        with self._lock:
            self._stopping = True
            # From the request on: a write in flight when it comes counts.
            self._stop_deadline = self._now() + STOP_TIMEOUT
            self._wakeup.notify()
        thread, self._thread = self._thread, None
        return self._stopped if thread.is_alive() else defer.succeed(None)

    # -- the writing thread -----------------------------------------------------------

    def _run(self) -> None:
        next_prune = 0.0  # at once: a bridge that was off may find old samples
        attempt = 0
        try:
            while True:
                with self._lock:
                    while not (self._buffer or self._stopping) and self._now() < next_prune:
                        self._wakeup.wait(max(0.0, next_prune - self._now()))
                    if self._stopping and (not self._buffer
                                           or self._now() > self._stop_deadline):
                        break
                    batch = [self._buffer.popleft()
                             for _ in range(min(self._batch_size, len(self._buffer)))]
                    self._in_flight = len(batch)
                try:
                    if self._now() >= next_prune and not self._stopping:
                        self.store.prune(self._now())
                        next_prune = self._now() + self._prune_interval
                    if batch:
                        self.store.write(batch)
                except self.store.errors as error:
                    self._failed(batch, error)
                    delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
                    attempt += 1
                    with self._lock:
                        if self._stopping and self._now() + delay > self._stop_deadline:
                            break
                        self._wakeup.wait(delay)
                    continue
                attempt = 0
                self._succeeded(len(batch))
        finally:
            self._finish()

    def _failed(self, batch: list[Sample], error: BaseException) -> None:
        with self._lock:
            # Back to the front, as the oldest. They were counted in the
            # bound while in flight, so the buffer stays within it.
            self._buffer.extendleft(reversed(batch))
            self._in_flight = 0
            first = self._failing_since is None
            if first:
                self._failing_since = self._now()
            self._error = self._scrub(error)
        if first:
            self._log(log.warn, "cannot write ({error}); keeping up to {size} samples and retrying",
                      error=self._error, size=self._buffer_size)

    def _succeeded(self, count: int) -> None:
        with self._lock:
            self._in_flight = 0
            self._written += count
            since = self._failing_since
            self._failing_since = None
            self._error = ""
            lost, self._lost_this_outage = self._lost_this_outage, 0
        if since is not None:
            self._log(log.info, "writing again after {seconds:.0f} s; {lost} samples lost",
                      seconds=self._now() - since, lost=lost)

    def _finish(self) -> None:
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            self._lost += left
        with contextlib.suppress(*self.store.errors):  # a broken connection: nothing to lose
            self.store.close()
        if left:
            self._log(log.warn, "{left} samples not written: the database was unavailable when"
                      " the bridge stopped", left=left)
        stopped = self._stopped
        self._reactor.callFromThread(stopped.callback, None)

    def _log(self, emit, text: str, **fields) -> None:
        """Log ``history: <store>: <text>`` from the writing thread.

        Through the reactor: log observers (files, stdout) are not written to
        from two threads at once.
        """
        self._reactor.callFromThread(emit, "history: {store}: " + text,
                                     store=self.store.description, **fields)

    def _scrub(self, error: BaseException) -> str:
        """The error as one line, never with a password in it."""
        text = " ".join(str(error).split()) or type(error).__name__
        password = getattr(self.store, "password", None)
        return text.replace(password, "***") if password else text
