"""Pacer: bulk work let through in order, as far as the backlog it produces has drained."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from octolux.device.pacing import POLL, Pacer

_case = SynchronousTestCase()


class Work:
    """Work whose results the test gives out: each call returns a Deferred kept in ``calls``."""

    def __init__(self):
        self.calls: list[Deferred] = []

    def __call__(self) -> Deferred:
        self.calls.append(Deferred())
        return self.calls[-1]


def fired(deferreds) -> list[int]:
    return [index for index, d in enumerate(deferreds) if d.called]


def test_work_that_fits_starts_at_once_and_holds_its_units_until_done():
    work = Work()
    pacer = Pacer(Clock(), limit=100)
    runs = [pacer.run(40, work) for _ in range(3)]
    assert len(work.calls) == 2  # 80 running: 40 more would pass the limit
    work.calls[0].callback("read")
    assert _case.successResultOf(runs[0]) == "read"
    assert len(work.calls) == 3 and fired(runs) == [0]


def test_work_waits_for_the_backlog_to_drain_in_order():
    clock, backlog, started = Clock(), [0], []
    pacer = Pacer(clock, backlog=lambda: backlog[0], limit=100)
    pacer.run(60, lambda: started.append("first"))
    backlog[0] = 60  # what the first produced, not yet through to the broker
    pacer.run(60, lambda: started.append("second"))
    pacer.run(10, lambda: started.append("third"))  # would fit, but waits its turn
    assert started == ["first"]
    clock.advance(POLL)
    assert started == ["first"]
    backlog[0] = 40
    clock.advance(POLL)
    assert started == ["first", "second", "third"]
    assert clock.getDelayedCalls() == []


def test_work_bigger_than_the_limit_runs_alone():
    clock, backlog = Clock(), [0]
    work = Work()
    pacer = Pacer(clock, backlog=lambda: backlog[0], limit=100)
    pacer.run(40, work)
    big = pacer.run(240, work)
    assert len(work.calls) == 1
    work.calls[0].callback(None)
    assert len(work.calls) == 2  # nothing else running, nothing waiting to drain
    work.calls[1].callback(None)
    assert fired([big]) == [0]


def test_a_failure_reaches_the_caller_and_frees_the_room():
    work = Work()
    pacer = Pacer(Clock(), limit=40)
    failing, after = pacer.run(40, work), pacer.run(40, work)
    work.calls[0].errback(ValueError("no reply"))
    _case.failureResultOf(failing, ValueError)
    assert len(work.calls) == 2 and not after.called


def test_cancelled_work_that_waits_never_runs_and_running_work_goes_on():
    clock, work = Clock(), Work()
    pacer = Pacer(clock, backlog=lambda: 50, limit=100)
    running, waiting = pacer.run(40, work), pacer.run(40, work)
    assert len(work.calls) == 1 and clock.getDelayedCalls() != []
    waiting.cancel()
    _case.failureResultOf(waiting, CancelledError)
    assert clock.getDelayedCalls() == []
    running.cancel()
    _case.failureResultOf(running, CancelledError)
    work.calls[0].callback("late")  # its result unheard, its room given back
    assert len(work.calls) == 1
    pacer.run(40, work)
    assert len(work.calls) == 2


def test_ten_thousand_pieces_of_work_done_at_once_need_no_deep_stack():
    pacer = Pacer(Clock(), limit=40)
    runs = [pacer.run(40, lambda: None) for _ in range(10_000)]
    assert len(fired(runs)) == 10_000


@pytest.mark.parametrize("drained_per_second", [5_000, 50_000])
def test_a_fleets_start_up_goes_as_fast_as_the_output_drains(drained_per_second):
    """10,000 inverters' six 40-register reads: the backlog stays under the limit throughout."""
    clock = Clock()
    backlog = [0]
    longest = [0]

    def read():  # its 40 values go out at once: the backlog grows by 40
        backlog[0] += 40
        longest[0] = max(longest[0], backlog[0])

    pacer = Pacer(clock, backlog=lambda: backlog[0], limit=4_000)
    runs = [pacer.run(40, read) for _ in range(10_000 * 6)]
    seconds = 0.0
    while not runs[-1].called:
        clock.advance(POLL)
        seconds += POLL
        backlog[0] = max(0, backlog[0] - drained_per_second * POLL)
    assert longest[0] <= 4_000
    expected = 10_000 * 240 / drained_per_second
    assert expected * 0.95 < seconds < expected * 1.05
