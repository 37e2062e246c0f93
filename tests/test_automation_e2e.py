"""End to end: a fake Octopus API over real HTTP, the whole bridge, mosquitto and the simulator.

The fake API serves the real JSON shape: pages linked by ``next``, newest
first, a negative price, a missing half-hour, and old clock-change days (an
autumn one of 50 half-hours, a spring one of 46). The bridge runs the original
tool's rule with ``cheap_charge = 5`` (and nothing needed to reach ``required_soc``), so the
half-hours it charges in are exactly the ones under 5p: the test checks that
the simulated inverter's AC charge slots are those, that a restart rewrites
nothing, that ``read_only`` writes nothing, and that ``cmd/plan_pause`` stops it.
"""

from __future__ import annotations

import datetime
import itertools
import json
import time

import pytest_twisted
from e2e_support import MqttProbe, get
from twisted.internet import reactor
from twisted.web import resource, server

from octolux import lxp
from octolux.automation.planner import original_plan, plan_from_json
from octolux.automation.prices import HALF_HOUR, Price
from octolux.automation.windows import inverter_settings
from octolux.config.ini import (
    AutomationConfig,
    Config,
    InverterConfig,
    MqttConfig,
    ServerConfig,
)
from octolux.device.settings import decode_settings
from octolux.service.tap import build_service
from simulator.dongle import start_simulator

_prefixes = itertools.count()
WRITES = (lxp.WriteSingleRequest, lxp.WriteMultiRequest, lxp.WriteParamRequest)
PRODUCT = "AGILE-18-02-21"
TARIFF = f"E-1R-{PRODUCT}-G"


def z(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeOctopus(resource.Resource):
    """The unit-rate pages of one tariff, as api.octopus.energy serves them."""

    isLeaf = True

    def __init__(self, prices: dict[float, float], per_page: int = 24):
        super().__init__()
        self.prices = prices
        self.per_page = per_page
        self.port = None
        self.requests: list[bytes] = []

    def render_GET(self, request):
        self.requests.append(request.uri)
        expected = f"/v1/products/{PRODUCT}/electricity-tariffs/{TARIFF}/standard-unit-rates/"
        if request.path.decode() != expected:
            request.setResponseCode(404)
            return b'{"detail": "Not found."}'
        page = int(request.args.get(b"page", [b"1"])[0])
        newest_first = sorted(self.prices.items(), reverse=True)
        chunk = newest_first[(page - 1) * self.per_page: page * self.per_page]
        following = None
        if page * self.per_page < len(newest_first):
            following = (f"http://127.0.0.1:{self.port}{expected}?period_from="
                         f"{request.args[b'period_from'][0].decode()}&page={page + 1}")
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "count": len(newest_first), "next": following, "previous": None,
            "results": [{"value_exc_vat": round(p / 1.05, 4), "value_inc_vat": p,
                         "valid_from": z(s), "valid_to": z(s + HALF_HOUR),
                         "payment_method": None} for s, p in chunk],
        }).encode()


def served_prices(now: float) -> tuple[dict[float, float], list[float]]:
    """30p from 2 hours ago to 20 hours ahead, three half-hours under 5p (one negative),
    one half-hour missing; plus two old clock-change days. And the cheap starts."""
    first = now // HALF_HOUR * HALF_HOUR
    prices = {first + n * HALF_HOUR: 30.0 + n % 3 for n in range(-4, 40)}
    cheap = [first + 6 * HALF_HOUR, first + 7 * HALF_HOUR, first + 16 * HALF_HOUR]
    for start, pence in zip(cheap, (-2.5, 1.0, 3.0), strict=True):
        prices[start] = pence
    del prices[first + 20 * HALF_HOUR]
    # Local days of clock changes: 50 half-hours in autumn, 46 in spring.
    autumn = datetime.datetime(2023, 10, 28, 23, 0, tzinfo=datetime.UTC).timestamp()
    spring = datetime.datetime(2023, 3, 26, 0, 0, tzinfo=datetime.UTC).timestamp()
    for day, count in ((autumn, 50), (spring, 46)):
        for n in range(count):
            prices[day + n * HALF_HOUR] = 12.0
    return prices, cheap


class Rig:
    """The simulator, the fake API, the bridge in this process and a probe on the broker."""

    def __init__(self, mosquitto, dongle, api: FakeOctopus, cache: str, **automation):
        self.dongle = dongle
        self.api = api
        self.prefix = f"e2e-automation-{next(_prefixes)}"
        self.config = Config(
            inverters=(InverterConfig(
                name="inverter", host="127.0.0.1", port=dongle.port,
                serial=dongle.config.inverter, datalog=dongle.config.datalog,
                command_timeout=5.0,
            ),),
            server=ServerConfig(port=0),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=self.prefix),
            automation=AutomationConfig(
                planner="original", product=PRODUCT, tariff=TARIFF,
                url=f"http://127.0.0.1:{api.port}", cache=cache, batteries=1,
                required_soc=0.0, emergency_soc=0.0, cheap_charge=5.0, min_discharge=3.0,
                **automation,
            ),
        )
        self.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{self.prefix}/#"])
        self.service = None

    def start_bridge(self):
        self.service = build_service(self.config, reactor)
        self.automation = [s for s in self.service if s.name == "automation"][0]
        self.service.startService()

    async def stop_bridge(self):
        await self.service.stopService().addTimeout(10, reactor)

    async def until(self, condition, what: str, timeout: float = 20.0):
        return await self.probe.until(reactor, condition, timeout, what)

    def plans(self) -> list[dict]:
        return [json.loads(m.payload) for m in self.probe.on(f"{self.prefix}/plan")]

    def writes(self) -> list:
        return [r for r in self.dongle.requests if isinstance(r, WRITES)]

    def inverter_settings(self) -> dict:
        return decode_settings(dict(enumerate(self.dongle.plant.holding.values)))


async def started(mosquitto, tmp_path, **automation) -> Rig:
    dongle = await start_simulator(
        reactor, interval=2.0, first_burst_delay=0.1, burst_gap=0.05, seed=3,
    ).addTimeout(5, reactor)
    prices, cheap = served_prices(time.time())
    api = FakeOctopus(prices)
    api.port = reactor.listenTCP(0, server.Site(api), interface="127.0.0.1")
    api.listening, api.port = api.port, api.port.getHost().port
    rig = Rig(mosquitto, dongle, api, str(tmp_path / "prices.json"), **automation)
    rig.cheap = cheap
    await rig.probe.ready(reactor)
    rig.start_bridge()
    return rig


async def stopped(rig: Rig) -> None:
    if rig.service is not None and rig.service.running:
        await rig.stop_bridge()
    await rig.dongle.stop().addTimeout(5, reactor)
    await rig.api.listening.stopListening()
    await rig.probe.close(reactor)


@pytest_twisted.ensureDeferred
async def test_the_slots_written_are_the_rules_and_a_restart_rewrites_nothing(mosquitto,
                                                                             tmp_path):
    rig = await started(mosquitto, tmp_path)
    try:
        # Settled on the bridge, and its plan through the broker: the plan message
        # travels through the outbox and mosquitto, and may come after settling.
        await rig.until(lambda: rig.automation.settled and rig.plans(),
                        "the plan carried out and on the broker")
        # Every page fetched, following next (139 prices, 24 a page).
        assert [uri.rpartition(b"page=")[2] for uri in rig.api.requests[1:]] == [
            b"2", b"3", b"4", b"5", b"6"]
        plan = plan_from_json(rig.plans()[-1])
        charged = [slot.start for slot in plan.slots if slot.action == "charge"]
        assert charged == rig.cheap
        # The rule itself, run on what the API served, chooses the same.
        served = [Price(s, s + HALF_HOUR, p) for s, p in sorted(rig.api.prices.items())]
        again = original_plan(plan.made_at, plan.soc, served, plan_rules(rig), 1)
        assert [s.start for s in again.slots if s.action == "charge"] == charged
        wanted = inverter_settings(plan)
        local = [datetime.datetime.fromtimestamp(start) for start in (charged[0], charged[2])]
        assert wanted["ac_charge_slot_1"] == (
            f"{local[0]:%H:%M}-{local[0] + datetime.timedelta(hours=1):%H:%M}")
        assert wanted["ac_charge_slot_2"] == (
            f"{local[1]:%H:%M}-{local[1] + datetime.timedelta(minutes=30):%H:%M}")
        on_inverter = rig.inverter_settings()
        assert {name: on_inverter[name] for name in wanted} == wanted
        assert on_inverter["ac_charge"] is True
        written = len(rig.writes())
        assert 0 < written <= len(wanted) + 1  # the bit is a read-modify-write

        # A restart mid-plan: the kept plan and prices, nothing rewritten.
        await rig.stop_bridge()
        plans_before = len(rig.plans())
        rig.start_bridge()
        await rig.until(lambda: len(rig.plans()) > plans_before and rig.automation.settled,
                        "the restarted bridge's plan checked against the inverter")
        assert len(rig.writes()) == written
        assert rig.automation.writes == 0
        assert len(rig.api.requests) == 6  # the cache was enough

        # cmd/plan_pause: AC charge off, OK, and the plan says paused.
        rig.probe.publish(f"{rig.prefix}/cmd/plan_pause", b"1")
        await rig.until(lambda: [m for m in rig.probe.on(f"{rig.prefix}/result/plan_pause")
                                 if m.text == "OK"], "plan_pause OK")
        await rig.until(lambda: rig.inverter_settings()["ac_charge"] is False,
                        "AC charge switched off")
        await rig.until(lambda: rig.plans()[-1]["paused"] is True, "the plan says paused")
    finally:
        await stopped(rig)


def plan_rules(rig):
    from octolux.automation.planner import Rules
    automation = rig.config.automation
    return Rules(automation.required_soc, automation.emergency_soc, automation.cheap_charge,
                 automation.min_discharge)


@pytest_twisted.ensureDeferred
async def test_read_only_plans_and_publishes_but_writes_nothing(mosquitto, tmp_path):
    rig = await started(mosquitto, tmp_path, read_only=True)
    try:
        await rig.until(lambda: rig.plans() and rig.automation._read_only_told is not None,
                        "a plan published and compared with the inverter")
        plan = rig.plans()[-1]
        assert plan["read_only"] is True and plan["enabled"] is True
        # Home Assistant's sensors read this half-hour's slot and the next charge.
        assert plan["now"] == plan["slots"][0]
        assert plan["next_charge"] == z(rig.cheap[0])
        assert [s["start"] for s in plan["slots"] if s["action"] == "charge"] == [
            z(start) for start in rig.cheap]
        assert rig.writes() == []
        assert rig.automation._read_only_told  # what it would have written, logged
        # The page's GET /api/plan: the same plan.
        api = [s for s in rig.service if type(s).__name__ == "ApiService"][0]
        response, body = await get(reactor, f"http://127.0.0.1:{api.port}/api/plan")
        shown = json.loads(body)
        assert response.code == 200 and shown["inverter"] == "inverter"
        assert shown["slots"] == plan["slots"]
    finally:
        await stopped(rig)
