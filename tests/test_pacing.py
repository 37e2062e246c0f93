"""Pacer: bulk work spread over time at a fixed rate, in order, with a burst allowance."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from octolux.device.pacing import Pacer

_case = SynchronousTestCase()


def fired(deferreds) -> list[int]:
    return [index for index, d in enumerate(deferreds) if d.called]


def test_work_within_the_burst_goes_at_once():
    pacer = Pacer(Clock(), rate=100, burst=500)
    assert fired([pacer.take(240), pacer.take(240)]) == [0, 1]


def test_beyond_the_burst_work_waits_for_the_rate_in_order():
    clock = Clock()
    pacer = Pacer(clock, rate=100, burst=240)
    takes = [pacer.take(240) for _ in range(4)]
    assert fired(takes) == [0]
    clock.advance(2.39)
    assert fired(takes) == [0]
    clock.advance(0.01)
    assert fired(takes) == [0, 1]
    clock.advance(2.4)
    assert fired(takes) == [0, 1, 2]
    clock.advance(2.4)
    assert fired(takes) == [0, 1, 2, 3]
    assert clock.getDelayedCalls() == []


def test_ten_thousand_inverters_registers_take_eight_minutes():
    clock = Clock()
    pacer = Pacer(clock)  # the bridge's budget
    takes = [pacer.take(40) for _ in range(10_000 * 6)]  # each inverter's six block reads
    clock.pump([0.01] * 24_000)  # the reactor wakes it as often as it asks
    assert 0.45 < sum(d.called for d in takes) / len(takes) < 0.55
    clock.pump([0.01] * 24_100)
    assert all(d.called for d in takes)
    assert clock.getDelayedCalls() == []


def test_a_take_bigger_than_the_burst_waits_for_a_full_bucket_and_leaves_a_debt():
    clock = Clock()
    pacer = Pacer(clock, rate=10, burst=10)
    assert fired([pacer.take(10)]) == [0]
    big, after = pacer.take(30), pacer.take(1)
    clock.advance(1)
    assert fired([big, after]) == [0]
    clock.advance(2)  # the debt of 20 paid, and 1 more
    assert fired([big, after]) == [0]
    clock.advance(0.1)
    assert fired([big, after]) == [0, 1]


def test_a_cancelled_take_gives_up_its_turn():
    clock = Clock()
    pacer = Pacer(clock, rate=10, burst=10)
    pacer.take(10)
    waiting = pacer.take(10)
    waiting.cancel()
    _case.failureResultOf(waiting, CancelledError)
    assert clock.getDelayedCalls() == []
    assert fired([pacer.take(5)]) == []
