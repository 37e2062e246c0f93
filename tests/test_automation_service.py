"""The automation service on a fake clock: off by default (it only says what it would do),
the plan published, nothing written while paused, and again after midnight."""

from __future__ import annotations

import datetime
import json

from twisted.internet import defer, task
from twisted.logger import capturedLogs, formatEvent

from octolux.automation.prices import HALF_HOUR, Price
from octolux.automation.service import Automation, OctopusPrices
from octolux.config.ini import AutomationConfig
from octolux.device.runner import OK, CommandResult
from simulator.registers import default_holding

START = datetime.datetime(2026, 1, 10, 12, 5, tzinfo=datetime.UTC).timestamp()


class Inverter:
    """What the automation reads of an inverter: its name, SOC and registers."""

    name = "inverter"
    connected = True

    def __init__(self):
        self.latest_inputs = {"soc": 40}
        self.registers = dict(enumerate(default_holding()))
        self.observers = []

    def add_observer(self, observer):
        self.observers.append(observer)


class Runner:
    """Records the commands asked for; each succeeds (the e2e test has the real inverter)."""

    def __init__(self, inverter):
        self.inverter = inverter
        self.commands = []

    def run(self, name, payload, *, source=None):
        self.commands.append((name, payload))
        return defer.succeed(CommandResult(0.0, name, repr(payload), OK))


def automation(planner, tmp_path):
    clock = task.Clock()
    clock.advance(START)
    prices = OctopusPrices(clock, "http://127.0.0.1:1", "P", "E-1R-P-G",
                           str(tmp_path / "prices.json"))
    first = START // HALF_HOUR * HALF_HOUR
    # 30p, except 2p 14:00-15:00 and 03:00-04:00: the original's rule charges there
    # (cheap_charge 5).
    prices.prices = tuple(Price(first + n * HALF_HOUR, first + (n + 1) * HALF_HOUR,
                                2.0 if n in (4, 5, 30, 31) else 30.0) for n in range(40))
    config = AutomationConfig(planner=planner, product="P", tariff="E-1R-P-G",
                              cache=prices.cache_path, required_soc=0.0, emergency_soc=0.0,
                              cheap_charge=5.0)
    published = []
    runner = Runner(Inverter())
    service = Automation(config, runner, clock=clock, prices=prices,
                         publish=lambda topic, payload, **kw: published.append((topic, payload)),
                         plan_topic="octolux/plan", tz=datetime.UTC)
    return service, runner, clock, published


def test_sections_without_enabled_say_once_what_they_would_do_and_write_nothing(tmp_path):
    service, runner, clock, published = automation(None, tmp_path)
    with capturedLogs() as events:
        service.startService()
        clock.advance(3600)
    service.stopService()
    told = [formatEvent(e) for e in events if "Automation is off" in formatEvent(e)]
    assert len(told) == 1
    assert "[rules] enabled = yes" in told[0] and "ac_charge True" in told[0]
    assert runner.commands == []
    plan = json.loads(published[-1][1])
    assert plan["enabled"] is False and published[-1][0] == "octolux/plan"


def test_paused_until_midnight_then_the_plan_is_written_again(tmp_path):
    service, runner, clock, published = automation("original", tmp_path)
    service.startService()
    assert ("ac_charge", b"on") in runner.commands
    assert ("ac_charge_slot_1", b"14:00-15:00") in runner.commands
    runner.inverter.registers[21] |= 1 << 7  # the inverter has AC charge on
    runner.commands.clear()
    service.pause()
    assert runner.commands == [("ac_charge", b"off")]  # switched off, once
    assert json.loads(published[-1][1])["paused"] is True
    runner.commands.clear()
    # Left on (the runner here writes nothing): the person's until midnight, not switched
    # off again.
    clock.advance(6 * 3600)  # 18:05: still paused
    assert runner.commands == []
    runner.inverter.registers[21] &= ~(1 << 7)
    clock.advance(6 * 3600)  # past midnight: the plan goes on
    assert ("ac_charge", b"on") in runner.commands
    assert ("ac_charge_slot_1", b"03:00-04:00") in runner.commands
    service.stopService()
