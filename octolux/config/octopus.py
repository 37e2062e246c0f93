"""Octopus tariff codes, as ``[octopus]`` gives them: pure, shared by the config and the prices."""

from __future__ import annotations

import re

OCTOPUS_URL = "https://api.octopus.energy"
_REGION = re.compile(r"[A-HJ-NP]\Z")  # the grid supply point letters (no I or O)
_TARIFF = re.compile(r"E-1R-(?P<product>[A-Z0-9-]+)-(?P<region>[A-Z])\Z")


def tariff_code(product_code: str | None, tariff: str) -> tuple[str, str]:
    """(product, tariff) from ``[octopus]``'s keys: a full tariff code, or a region letter.

    ``E-1R-AGILE-18-02-21-G`` carries its product; a letter ``G`` needs the
    product code. ValueError says which is missing or malformed.
    """
    tariff = tariff.strip().upper()
    if _REGION.match(tariff):
        if not product_code:
            raise ValueError("a region letter needs product_code too")
        return product_code, f"E-1R-{product_code}-{tariff}"
    match = _TARIFF.match(tariff)
    if match is None:
        raise ValueError("not a tariff code like E-1R-AGILE-18-02-21-G, nor a region letter")
    product = match["product"]
    if product_code and product_code != product:
        raise ValueError(f"names product {product}, not product_code {product_code}")
    return product, tariff
