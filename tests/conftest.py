"""Shared pytest configuration.

``@pytest.mark.slow`` tests (long campaigns, big clusters) are skipped unless
``--runslow`` is given; scripts/ run the long versions on demand.
"""

from __future__ import annotations

import pytest
from helpers import World, make_world  # tests/ is on sys.path for conftest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def world() -> World:
    """A 4-validator genesis with its keys (see helpers.make_world)."""
    return make_world()
