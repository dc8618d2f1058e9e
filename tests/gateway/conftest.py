"""Fixtures for keepwarm-gateway tests (helpers in gwhelpers.py: this directory has no __init__.py, so that the
`gateway` package name stays the product's)."""

from __future__ import annotations

import pytest
from gwhelpers import Gateway


@pytest.fixture
def gateway_factory(tmp_path):
    """Start gateways in front of an upstream URL with extra CLI args; all are stopped after the test."""
    started: list[Gateway] = []

    def start(upstream: str, *args: str, **kw) -> Gateway:
        gw = Gateway(upstream, list(args), tmp_path / f"gateway-{len(started)}.log", **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
