"""Fixtures for the protocol core tests."""

import pytest
from vectors import VECTORS


@pytest.fixture(params=sorted(VECTORS), ids=str)
def vector(request):
    """Each captured frame in turn, with its documented decoding."""
    return VECTORS[request.param]
