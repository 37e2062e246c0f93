"""Automation as a service: prices kept fresh, a plan every half-hour, the inverter told.

``OctopusPrices`` keeps one tariff's prices: read from the cache file on start,
fetched again (in a thread: ``urllib`` has TLS without new dependencies) when
fewer than 7 hours lie ahead, written back to the cache. A failing API is
logged once per outage; the prices already known, and so the plan, go on.

``Automation`` plans every half-hour (and when prices arrive), publishes the
plan retained on ``plan``, and writes the settings that differ from what the
inverter holds (``windows.changes``) through the commands table, one after
another. ``read_only`` plans and publishes but writes nothing;
``cmd/plan_pause`` switches both modes off and writes nothing more until the
next local midnight.
"""

from __future__ import annotations

import datetime
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable

import attrs
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger

from octolux.automation.planner import (
    Battery,
    HalfHour,
    Plan,
    Rules,
    forecast,
    half_hour_start,
    optimal_plan,
    original_plan,
    plan_from_json,
)
from octolux.automation.prices import (
    HALF_HOUR,
    KEEP_DAYS,
    Price,
    PriceError,
    from_cache,
    merge,
    needs_refresh,
    parse_page,
    rates_url,
    to_cache,
)
from octolux.automation.windows import changes, inverter_settings
from octolux.config.ini import AutomationConfig
from octolux.device.commands import Topics
from octolux.device.runner import OK
from octolux.device.settings import decode_settings
from octolux.history.store import Query

log = Logger()

TICK = 60.0  # seconds between checks: a new half-hour, prices to fetch, writes to retry
RETRY = 600.0  # seconds before asking a failing API again
FETCH_TIMEOUT = 30.0
MAX_PAGES = 20
MAX_PAGE_BYTES = 4 << 20
HISTORY_DAYS = 7
DEFAULT_LOAD_KWH = 0.25  # a half-hour's house load when nothing is recorded yet


def fetch_prices(url: str) -> list[Price]:
    """Every page from ``url`` on, following ``next`` (blocking: run it in a thread)."""
    prices: list[Price] = []
    for _ in range(MAX_PAGES):
        request = urllib.request.Request(url, headers={"User-Agent": "octolux"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:  # noqa: S310
            body = response.read(MAX_PAGE_BYTES + 1)
        if len(body) > MAX_PAGE_BYTES:
            raise PriceError("page too large")
        page, url = parse_page(body)
        prices.extend(page)
        if url is None:
            return prices
    raise PriceError(f"more than {MAX_PAGES} pages")


class OctopusPrices:
    """One tariff's prices: the cache on disk, the API when they run short."""

    def __init__(self, reactor, base_url: str, product: str, tariff: str, cache_path: str,
                 *, fetch: Callable[[str], list[Price]] = fetch_prices):
        self._reactor = reactor
        self.base_url = base_url
        self.product = product
        self.tariff = tariff
        self.cache_path = cache_path
        self._fetch = fetch
        self.prices: tuple[Price, ...] = ()
        self._busy = False
        self._retry_at = 0.0
        self._failing: str | None = None  # the reason logged for the current outage

    def load_cache(self) -> None:
        """The prices cached by the last run (none if there is no cache, or a broken one)."""
        try:
            with open(self.cache_path, encoding="utf-8") as file:
                self.prices = from_cache(file.read(), self.tariff)
        except FileNotFoundError:
            return
        except (OSError, PriceError) as error:
            log.warn("Octopus prices: cache {path} unreadable ({error}); fetching afresh",
                     path=self.cache_path, error=error)

    def refresh_due(self, now: float) -> bool:
        """Time to ask the API: few prices ahead, no request under way, no recent failure."""
        return not self._busy and now >= self._retry_at and needs_refresh(self.prices, now)

    def refresh(self, now: float) -> defer.Deferred[bool]:
        """Ask the API; fires True if new prices arrived (never fails: failures are logged)."""
        self._busy = True
        url = rates_url(self.base_url, self.product, self.tariff, now - 86400)
        fetching = threads.deferToThread(self._fetch, url)
        fetching.addCallbacks(lambda prices: self._arrived(prices, now),
                              lambda failure: self._failed(failure, now))

        def done(result):
            self._busy = False
            return result

        return fetching.addBoth(done)

    def _arrived(self, prices: list[Price], now: float) -> bool:
        if not prices:
            return self._failed_because("no prices in the answer", now)
        if self._failing is not None:
            log.info("Octopus prices for {tariff}: the API answers again", tariff=self.tariff)
            self._failing = None
        before = self.prices
        self.prices = merge(self.prices, prices, since=now - KEEP_DAYS * 86400)
        self._retry_at = 0.0
        if needs_refresh(self.prices, now):
            # Tomorrow's prices are not out yet (about 16:00 UK time): ask later.
            self._retry_at = now + RETRY
        try:
            text = to_cache(self.prices, self.tariff)
            temporary = self.cache_path + ".new"
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, self.cache_path)
        except OSError as error:
            log.warn("Octopus prices: cannot write the cache {path}: {error}",
                     path=self.cache_path, error=error)
        return self.prices != before

    def _failed(self, failure, now: float) -> bool:
        error = failure.value
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code}"
        elif isinstance(error, urllib.error.URLError):
            reason = str(error.reason)
        elif isinstance(error, PriceError | OSError):
            reason = str(error)
        else:
            log.failure("Octopus prices: unexpected error", failure)
            reason = "unexpected error"
        return self._failed_because(reason, now)

    def _failed_because(self, reason: str, now: float) -> bool:
        self._retry_at = now + RETRY
        if self._failing is None:
            log.warn("Octopus prices for {tariff}: the API fails ({reason}); the prices known"
                     " and the last plan go on, asking again every {minutes:.0f} minutes",
                     tariff=self.tariff, reason=reason, minutes=RETRY / 60)
            self._failing = reason
        return False


def setting_payload(value: bool | int | str) -> bytes:
    """A setting's value as its ``cmd/<name>`` payload."""
    if isinstance(value, bool):
        return b"on" if value else b"off"
    return str(value).encode()


class Automation(service.Service):
    """Plans for one inverter and carries the plan out through its own slots."""

    name = "automation"

    def __init__(self, config: AutomationConfig, runner, *, clock, prices: OctopusPrices,
                 export_prices: OctopusPrices | None = None, publish=None,
                 plan_topic: str | None = None, history=None,
                 tz: datetime.tzinfo | None = None):
        self.config = config
        self.runner = runner  # the inverter's CommandRunner: the one way in for writes
        self.inverter = runner.inverter
        self._clock = clock
        self.prices = prices
        self.export_prices = export_prices
        self._publish = publish
        self._plan_topic = plan_topic
        self._history = history
        self._tz = tz
        self.plan: Plan | None = None
        self.paused_until = 0.0
        self.writes = 0  # settings written, for the log and the tests
        self.settled = False  # did the last check find the inverter as the plan wants it?
        self._planned_half: float | None = None
        self._planning = False
        self._writing = False
        self._write_again_at = 0.0  # after a refused write: not before this
        self._switch_off = False  # paused: both modes still to be switched off (once)
        self._told_how = False
        self._read_only_told: list | None = None
        self._loop: task.LoopingCall | None = None
        capacity = config.battery_kwh
        self._battery = (Battery.from_count(config.batteries) if capacity is None
                         else Battery(capacity, float(min(3, config.batteries))))
        self._rules = Rules(config.required_soc, config.emergency_soc, config.cheap_charge,
                            config.min_discharge)

    @property
    def _plan_path(self) -> str:
        return self.prices.cache_path + ".plan"

    def startService(self) -> None:
        """Read the caches, then check every minute."""
        super().startService()
        for source in self._sources():
            source.load_cache()
        self.plan = self._load_plan()
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self._clock
        self._loop.start(TICK, now=True)

    def stopService(self):
        """Stop checking."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _sources(self) -> list[OctopusPrices]:
        return [s for s in (self.prices, self.export_prices) if s is not None]

    # -- every minute -----------------------------------------------------------

    def tick(self) -> None:
        """Fetch what is due; plan on a new half-hour; retry writes that did not happen."""
        now = self._clock.seconds()
        for source in self._sources():
            if source.refresh_due(now):
                source.refresh(now).addCallback(self._prices_arrived)
        if half_hour_start(now) != self._planned_half:
            self.plan_now()
        elif not self._writing:
            self._carry_out()

    def _prices_arrived(self, changed: bool) -> None:
        if changed:
            self.plan_now()

    def pause(self) -> None:
        """``cmd/plan_pause``: both modes off, nothing more written until the next midnight."""
        now = self._clock.seconds()
        local = datetime.datetime.fromtimestamp(now, self._tz)
        midnight = datetime.datetime.combine(local.date() + datetime.timedelta(days=1),
                                             datetime.time(), local.tzinfo)
        self.paused_until = midnight.timestamp()
        log.info("Automation paused until {until}", until=midnight.isoformat())
        self._switch_off = True
        self._carry_out()
        self._publish_plan()

    @property
    def paused(self) -> bool:
        """Is automation paused (``cmd/plan_pause``) now?"""
        return self._clock.seconds() < self.paused_until

    # -- InverterObserver: plan as soon as the SOC is known, write once settings are --

    def inputs_received(self, blocks) -> None:
        """The first SOC of a half-hour without a plan: plan now, not at the next check."""
        if self.running and half_hour_start(self._clock.seconds()) != self._planned_half:
            self.plan_now()

    def registers_received(self, registers) -> None:
        """Settings read (on connecting) or written: carry the plan out if it waits for them."""
        if self.running and not self._writing:
            self._carry_out()

    def connection_changed(self, connected: bool) -> None:
        """Nothing to do: the registers read on connecting call ``registers_received``."""

    # -- planning -----------------------------------------------------------------

    def plan_now(self) -> defer.Deferred | None:
        """Make a plan from the latest SOC and prices, publish it, carry it out."""
        if self._planning:
            return None
        soc = self.inverter.latest_inputs.get("soc")
        if soc is None or not self.prices.prices:
            return None  # no SOC yet (the first inputs come within minutes), or no prices
        now = self._clock.seconds()
        self._planning = True
        planning = self._half_hours(now) if self.config.planner != "original" else \
            defer.succeed(None)

        def planned(half_hours):
            if self.config.planner == "original":
                plan = original_plan(now, float(soc), self.prices.prices, self._rules,
                                     self.config.batteries, self._tz, self.plan)
            else:
                plan = optimal_plan(now, float(soc), half_hours, self._battery, self._rules)
            self.plan = plan
            self._planned_half = half_hour_start(now)
            self._save_plan(plan)
            self._publish_plan()
            self._carry_out()

        def done(result):
            self._planning = False
            return result

        planning.addCallback(planned)
        planning.addErrback(lambda failure: log.failure("Automation: planning failed", failure))
        return planning.addBoth(done)

    def _half_hours(self, now: float) -> defer.Deferred[list[HalfHour]]:
        """The prices ahead with the load and PV forecast from the recorded history."""
        ahead = [p for p in self.prices.prices if p.end > half_hour_start(now)]
        exports = {}
        if self.export_prices is not None:
            exports = {p.start: p.pence for p in self.export_prices.prices}
        starts = [p.start for p in ahead]
        if self._history is None:
            recorded = defer.succeed({})
        else:
            since = half_hour_start(now) - HISTORY_DAYS * 86400
            query = Query(self.inverter.name, ("p_load", "p_pv"), since, half_hour_start(now),
                          HALF_HOUR)
            recorded = self._history.query(query)

            def unrecorded(failure):
                log.warn("Automation: no load history ({error}); planning with a flat load",
                         error=failure.getErrorMessage())
                return {}

            recorded.addErrback(unrecorded)

        def combine(series):
            loads = forecast(series.get("p_load", []), starts, self._tz, DEFAULT_LOAD_KWH)
            pvs = forecast(series.get("p_pv", []), starts, self._tz)
            return [HalfHour(p.start, p.pence, exports.get(p.start) if exports else None,
                             load, pv)
                    for p, load, pv in zip(ahead, loads, pvs, strict=True)]

        return recorded.addCallback(combine)

    # -- carrying it out ------------------------------------------------------------

    def _carry_out(self) -> None:
        plan = self.plan
        if plan is None or self._writing:
            return
        wanted = inverter_settings(plan, self._tz)
        if self.config.planner is None:
            if not self._told_how:
                self._told_how = True
                log.info("Automation is off: the {planner} planner would set {settings} ({why})."
                         " To let it, set [rules] enabled = yes (or original)",
                         planner="ours", settings=_shown(wanted), why=plan.summary)
            return
        if self.config.read_only:
            current = decode_settings(self.inverter.registers)
            if not all(name in current for name in wanted):
                return
            todo = changes(wanted, current)
            if todo != self._read_only_told:
                self._read_only_told = todo
                log.info("Automation, read_only: would write {todo}", todo=_shown(dict(todo)))
            return
        if self.paused:
            # Switched off once (as soon as the inverter can be written); after that
            # the inverter is the person's until midnight.
            if self._switch_off and self._write({"ac_charge": False, "forced_discharge": False}):
                self._switch_off = False
            return
        self._write(wanted)

    def _write(self, wanted) -> bool:
        """Write what differs from ``wanted``; False if that cannot start now (try later)."""
        if not self.inverter.connected or self._writing:
            return False
        if self._clock.seconds() < self._write_again_at:
            return False
        current = decode_settings(self.inverter.registers)
        if not all(name in current for name in wanted):
            return False  # not read yet since connecting: registers_received comes back here
        todo = changes(wanted, current)
        self.settled = not todo
        if not todo:
            return True
        self._writing = True
        log.info("Automation: writing {todo}", todo=_shown(dict(todo)))

        def write_next(outcome=None):
            if outcome is not None and outcome.result != OK:
                # The runner has logged why; try again later, not every minute.
                self._write_again_at = self._clock.seconds() + RETRY
                return None
            if not todo:
                return None
            name, value = todo.pop(0)
            self.writes += 1
            running = self.runner.run(name, setting_payload(value), source="automation:"
                                      f" {self.inverter.name}: {name}")
            return running.addCallback(write_next)

        def failed(failure):
            log.failure("Automation: writing failed", failure)

        def done(_):
            self._writing = False

        writing = write_next()
        writing.addErrback(failed)
        writing.addBoth(done)
        return True

    # -- publishing and keeping the plan ---------------------------------------------

    def plan_json(self) -> dict:
        """What ``plan`` publishes: the plan and the automation's state."""
        body = self.plan.to_json() if self.plan is not None else {}
        body["inverter"] = self.inverter.name
        # For Home Assistant's sensors: this half-hour's slot and the next charge.
        now = self._clock.seconds()
        slots = body.get("slots", [])
        current = [s for s, p in zip(slots, self.plan.slots if self.plan else (), strict=True)
                   if p.start <= now < p.start + HALF_HOUR]
        body["now"] = current[0] if current else None
        body["next_charge"] = next((s["start"] for s, p in zip(
            slots, self.plan.slots if self.plan else (), strict=True)
            if p.action == "charge" and p.start + HALF_HOUR > now), None)
        body["enabled"] = self.config.planner is not None
        body["read_only"] = self.config.read_only
        body["paused"] = self.paused
        if self.plan is not None:
            body["settings"] = inverter_settings(self.plan, self._tz)
        return body

    def _publish_plan(self) -> None:
        if self._publish is not None and self._plan_topic is not None:
            self._publish(self._plan_topic, json.dumps(self.plan_json(), separators=(",", ":")),
                          qos=1, retain=True)

    def broker_connected(self) -> None:
        """Publish the plan again after every broker connection (it may have lost it)."""
        if self.plan is not None:
            self._publish_plan()

    def _save_plan(self, plan: Plan) -> None:
        try:
            with open(self._plan_path, "w", encoding="utf-8") as file:
                json.dump(plan.to_json(), file)
        except OSError as error:
            log.warn("Automation: cannot keep the plan in {path}: {error}",
                     path=self._plan_path, error=error)

    def _load_plan(self) -> Plan | None:
        try:
            with open(self._plan_path, encoding="utf-8") as file:
                return plan_from_json(json.load(file))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warn("Automation: the kept plan {path} is unreadable ({error})",
                     path=self._plan_path, error=error)
            return None


def _shown(settings: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in settings.items()) or "nothing"


def automation(config, reactor, runners, mqtt, history) -> Automation:
    """The ``Automation`` of ``config`` (a whole ``Config``) for its inverter's runner."""
    settings = config.automation
    name = settings.inverter or config.inverters[0].name
    runner = next(runner for runner in runners.values() if runner.inverter.name == name)
    if runner.inverter.read_only and not settings.read_only:
        log.info("Automation: inverter {name} is read_only, so the plan is only published",
                 name=name)
        settings = attrs.evolve(settings, read_only=True)
    prices = OctopusPrices(reactor, settings.url, settings.product, settings.tariff,
                           settings.cache)
    export = None
    if settings.export_tariff is not None:
        product = settings.export_tariff[len("E-1R-"):-2]
        export = OctopusPrices(reactor, settings.url, product, settings.export_tariff,
                               settings.cache + ".export")
    plan_topic = None
    if mqtt is not None:
        plan_topic = Topics(config.mqtt.prefix, name if config.named_topics else None).plan
    result = Automation(settings, runner, clock=reactor, prices=prices, export_prices=export,
                        publish=mqtt.publish if mqtt is not None else None,
                        plan_topic=plan_topic, history=history)
    runner.own_commands["plan_pause"] = result.pause
    runner.inverter.add_observer(result)
    if mqtt is not None:
        mqtt.add_connect_handler(result.broker_connected)
    state = "off (logs what it would do)" if settings.planner is None else (
        f"the {settings.planner} planner" + (", read_only" if settings.read_only else ""))
    log.info("Automation for inverter {name} on {tariff}: {state}", name=name,
             tariff=settings.tariff, state=state)
    return result
