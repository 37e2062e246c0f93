"""The price source over real HTTP: an outage or garbage is logged once, the known prices
go on, the cache makes a restart cost nothing."""

from __future__ import annotations

import time

import pytest_twisted
from test_automation_e2e import PRODUCT, TARIFF, FakeOctopus, served_prices
from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.web import resource, server

from octolux.automation.prices import needs_refresh
from octolux.automation.service import RETRY, OctopusPrices


class Flaky(resource.Resource):
    """A 500, then garbage, then the real pages."""

    isLeaf = True

    def __init__(self, good: FakeOctopus):
        super().__init__()
        self.good = good
        self.answers = [b"500", b"garbage"]

    def render_GET(self, request):
        if self.answers:
            answer = self.answers.pop(0)
            if answer == b"500":
                request.setResponseCode(500)
                return b"Server Error"
            return b"<html>not json</html>"
        return self.good.render_GET(request)


@pytest_twisted.ensureDeferred
async def test_an_outage_is_logged_once_and_the_prices_come_back_and_are_cached(tmp_path):
    now = time.time()
    good = FakeOctopus(served_prices(now)[0])
    flaky = Flaky(good)
    port = reactor.listenTCP(0, server.Site(flaky), interface="127.0.0.1")
    good.port = port.getHost().port
    cache = str(tmp_path / "prices.json")
    try:
        prices = OctopusPrices(reactor, f"http://127.0.0.1:{good.port}", PRODUCT, TARIFF, cache)
        prices.load_cache()
        assert prices.prices == () and prices.refresh_due(now)
        with capturedLogs() as events:
            assert await prices.refresh(now) is False  # HTTP 500
            assert not prices.refresh_due(now + 1)  # not asked again at once
            assert await prices.refresh(now + RETRY) is False  # garbage
            assert await prices.refresh(now + 2 * RETRY) is True
        lines = [formatEvent(e) for e in events]
        failures = [line for line in lines if "the API fails" in line]
        assert len(failures) == 1 and "HTTP 500" in failures[0]
        assert [line for line in lines if "answers again" in line]
        assert not needs_refresh(prices.prices, now)
        assert min(p.pence for p in prices.prices) < 0  # negative prices kept

        # A restart reads the cache: nothing to fetch.
        again = OctopusPrices(reactor, "http://127.0.0.1:1", PRODUCT, TARIFF, cache)
        again.load_cache()
        assert again.prices == prices.prices
        assert not again.refresh_due(now)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_known_prices_stay_while_the_api_is_down(tmp_path):
    now = time.time()
    good = FakeOctopus(served_prices(now)[0])
    port = reactor.listenTCP(0, server.Site(good), interface="127.0.0.1")
    good.port = port.getHost().port
    prices = OctopusPrices(reactor, f"http://127.0.0.1:{good.port}", PRODUCT, TARIFF,
                           str(tmp_path / "prices.json"))
    assert await prices.refresh(now) is True
    known = prices.prices
    await port.stopListening()
    with capturedLogs() as events:
        assert await prices.refresh(now + 15 * 3600) is False  # connection refused
    assert prices.prices == known
    assert [e for e in events if "the API fails" in formatEvent(e)]
