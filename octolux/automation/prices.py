"""Octopus's half-hourly unit rates: the API's pages read, merged and cached. Pure.

The public REST API (no key needed) serves a tariff's standard unit rates at
``<base>/v1/products/<product>/electricity-tariffs/<tariff>/standard-unit-rates/``
as JSON pages, newest first: ``{"count": N, "next": URL or null, "results":
[{"value_inc_vat": 15.2, "valid_from": "2023-03-26T01:00:00Z", "valid_to":
...}, ...]}``. Times are UTC; a day has 46 or 50 half-hours when the clocks
change, prices may be negative, and a half-hour may be missing.
"""

from __future__ import annotations

import datetime
import json
import math
import urllib.parse
from collections.abc import Iterable

import attrs

HALF_HOUR = 1800.0
REFRESH_HOURS = 7.0  # fetch again when fewer future hours than this are known
KEEP_DAYS = 8.0  # prices older than this are dropped from the cache


class PriceError(ValueError):
    """A page or a cache that is not what Octopus serves; the message says what is wrong."""


@attrs.frozen(order=True)
class Price:
    """One half-hour's unit rate: ``start``/``end`` in seconds since the epoch, pence per kWh."""

    start: float
    end: float
    pence: float


def rates_url(base: str, product: str, tariff: str, since: float) -> str:
    """The first page of ``tariff``'s unit rates from ``since`` (epoch seconds) on."""
    moment = datetime.datetime.fromtimestamp(since, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = (f"/v1/products/{urllib.parse.quote(product)}/electricity-tariffs/"
            f"{urllib.parse.quote(tariff)}/standard-unit-rates/")
    return base.rstrip("/") + path + "?" + urllib.parse.urlencode({"period_from": moment})


def _time(text, what: str) -> float:
    if not isinstance(text, str):
        raise PriceError(f"{what} is not a time: {text!r}")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise PriceError(f"{what} is not a time: {text!r}") from None
    if moment.tzinfo is None:
        raise PriceError(f"{what} has no time zone: {text!r}")
    return moment.timestamp()


def parse_page(body: bytes) -> tuple[list[Price], str | None]:
    """The prices of one page and the address of the next (None on the last page)."""
    try:
        page = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise PriceError("not JSON") from None
    if not isinstance(page, dict) or not isinstance(page.get("results"), list):
        raise PriceError("no 'results' list")
    following = page.get("next")
    if following is not None and not isinstance(following, str):
        raise PriceError(f"'next' is not an address: {following!r}")
    prices = []
    for number, result in enumerate(page["results"]):
        if not isinstance(result, dict):
            raise PriceError(f"result {number} is not an object")
        value = result.get("value_inc_vat")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            raise PriceError(f"result {number}: value_inc_vat is not a number: {value!r}")
        start = _time(result.get("valid_from"), f"result {number}: valid_from")
        end_text = result.get("valid_to")
        end = start + HALF_HOUR if end_text is None else _time(end_text, f"result {number}:"
                                                               " valid_to")
        if end <= start:
            raise PriceError(f"result {number}: valid_to is not after valid_from")
        prices.extend(_half_hours(start, end, float(value)))
    return prices, following


def _half_hours(start: float, end: float, pence: float) -> list[Price]:
    """A rate valid for longer than half an hour (a fixed tariff's) as half-hours."""
    count = max(1, min(round((end - start) / HALF_HOUR), 48 * 2))
    return [Price(start + n * HALF_HOUR, start + (n + 1) * HALF_HOUR, pence)
            for n in range(count)]


def merge(*batches: Iterable[Price], since: float | None = None) -> tuple[Price, ...]:
    """One price per half-hour, sorted; a later batch wins; none ending before ``since``."""
    by_start: dict[float, Price] = {}
    for batch in batches:
        for price in batch:
            by_start[price.start] = price
    return tuple(sorted(p for p in by_start.values() if since is None or p.end > since))


def known_hours(prices: Iterable[Price], now: float) -> float:
    """Hours from ``now`` to the end of the last known price (0 when none lies ahead)."""
    ends = [price.end for price in prices]
    return max(0.0, (max(ends, default=now) - now) / 3600.0)


def needs_refresh(prices: Iterable[Price], now: float) -> bool:
    """Fewer than ``REFRESH_HOURS`` of future prices: time to ask the API again."""
    return known_hours(prices, now) < REFRESH_HOURS


def to_cache(prices: Iterable[Price], tariff: str) -> str:
    """The cache file's text: the tariff it belongs to and its prices."""
    return json.dumps({"tariff": tariff, "prices": [[p.start, p.end, p.pence] for p in prices]})


def from_cache(text: str, tariff: str) -> tuple[Price, ...]:
    """The cached prices of ``tariff`` (none if the cache is of another tariff)."""
    try:
        cache = json.loads(text)
        if cache.get("tariff") != tariff:
            return ()
        return merge(Price(float(start), float(end), float(pence))
                     for start, end, pence in cache["prices"])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise PriceError("not a price cache") from None
