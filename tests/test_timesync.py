"""ClockKeeper: reads the inverter's clock on connecting and daily, corrects drift over a minute."""

from __future__ import annotations

import datetime

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from octolux.device.inverter import CommandFailed
from octolux.device.timesync import ClockKeeper
from octolux.lxp import holding

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0)
result_of = SynchronousTestCase().successResultOf


class ClockInverter:
    """A fake inverter whose clock reads ``clock`` and records what is written."""

    name = "inverter"

    def __init__(self, clock: datetime.datetime | None, *, refuse_writes: bool = False):
        self.clock = clock
        self.refuse_writes = refuse_writes
        self.requests: list[tuple] = []

    def read_hold(self, register, count=1) -> Deferred:
        self.requests.append(("read_hold", register, count))
        # A fresh inverter's clock registers hold 0: month 0 is no date.
        values = (0, 0, 0) if self.clock is None else holding.encode_clock(self.clock)
        return succeed(dict(zip(range(register, register + count), values, strict=True)))

    def write_multi(self, register, values) -> Deferred:
        self.requests.append(("write_multi", register, tuple(values)))
        if self.refuse_writes:
            return fail(CommandFailed("read_only is set for this inverter"))
        self.clock = holding.decode_clock(*values)
        return succeed(dict(enumerate(values, register)))


def keeper_for(inverter, clock=None):
    keeper = ClockKeeper(inverter, clock=clock or Clock(), now=lambda: NOW)
    keeper.startService()
    return keeper


def test_a_clock_within_a_minute_is_left_alone():
    inverter = ClockInverter(NOW + datetime.timedelta(seconds=59))
    keeper = keeper_for(inverter)
    assert result_of(keeper.check()) == 59
    assert inverter.requests == [("read_hold", 12, 3)]


def test_a_clock_more_than_a_minute_off_is_set_and_the_drift_logged():
    inverter = ClockInverter(NOW - datetime.timedelta(minutes=7, seconds=3))
    keeper = keeper_for(inverter)
    with capturedLogs() as events:
        assert result_of(keeper.check()) == -423
    assert inverter.requests[-1] == ("write_multi", 12, holding.encode_clock(NOW))
    assert inverter.clock == NOW
    assert any("clock was -423 s off" in formatEvent(e) for e in events)


def test_a_clock_that_is_no_date_is_set():
    inverter = ClockInverter(None)
    assert result_of(keeper_for(inverter).check()) is None
    assert inverter.clock == NOW


def test_it_checks_on_every_connection_and_once_a_day():
    inverter = ClockInverter(NOW + datetime.timedelta(hours=1))
    clock = Clock()
    keeper = keeper_for(inverter, clock)
    keeper.connection_changed(True)
    assert [r[0] for r in inverter.requests] == ["read_hold", "write_multi"]
    keeper.connection_changed(False)
    clock.advance(24 * 3600 - 1)
    assert len(inverter.requests) == 2
    inverter.clock = NOW + datetime.timedelta(minutes=2)  # drifted again over the day
    clock.advance(1)
    assert [r[0] for r in inverter.requests] == ["read_hold", "write_multi"] * 2
    keeper.stopService()
    assert clock.getDelayedCalls() == []


def test_a_failure_is_logged_and_never_raised():
    inverter = ClockInverter(NOW + datetime.timedelta(hours=1), refuse_writes=True)
    with capturedLogs() as events:
        assert result_of(keeper_for(inverter).check()) == 3600
    assert any("setting it failed: read_only" in formatEvent(e) for e in events)

    class Unreachable(ClockInverter):
        def read_hold(self, register, count=1):
            return fail(CommandFailed("no reply within 10 s"))

    with capturedLogs() as events:
        assert result_of(keeper_for(Unreachable(NOW)).check()) is None
    assert any("cannot read the inverter's clock: no reply" in formatEvent(e) for e in events)
