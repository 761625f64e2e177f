"""node/fdlimit.py: the store's table cache fits the open-files limit."""

from __future__ import annotations

import logging
import resource

import pytest

from node import fdlimit


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """A fake RLIMIT_NOFILE (soft 1024, hard 8192); records each setrlimit."""
    state = {"soft": 1024, "hard": 8192}
    calls: list[tuple[int, int]] = []

    def getrlimit(which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return state["soft"], state["hard"]

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        if value[0] > state["hard"]:
            raise ValueError("not allowed to raise maximum limit")
        calls.append(value)
        state["soft"] = value[0]

    monkeypatch.setattr(fdlimit.resource, "getrlimit", getrlimit)
    monkeypatch.setattr(fdlimit.resource, "setrlimit", setrlimit)
    return calls


def test_soft_limit_is_raised_to_fit_the_tables(limits: list[tuple[int, int]]) -> None:
    assert fdlimit.table_files_allowed(4096) == 4096
    assert limits == [(4096 + fdlimit.FD_RESERVE, 8192)]


def test_a_low_hard_limit_shrinks_the_table_cache_with_a_warning(
        limits: list[tuple[int, int]], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="node.fdlimit"):
        assert fdlimit.table_files_allowed(20_000) == 8192 - fdlimit.FD_RESERVE
    assert limits == [(8192, 8192)]
    assert "storage.max_open_files 20000" in caplog.text


def test_a_limit_that_fits_is_left_alone(limits: list[tuple[int, int]]) -> None:
    assert fdlimit.table_files_allowed(2000) == 2000  # raised to 3024
    assert fdlimit.table_files_allowed(1000) == 1000
    assert fdlimit.table_files_allowed(74) == 74
    assert limits == [(2000 + fdlimit.FD_RESERVE, 8192)]
