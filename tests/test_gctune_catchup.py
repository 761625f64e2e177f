"""node.gctune.catching_up: the young generation widened while a node
catches up, and the thresholds back as they were after."""

from __future__ import annotations

import gc

import pytest

from node.gctune import (
    CATCH_UP_GEN0_THRESHOLD,
    GEN0_THRESHOLD,
    GEN1_THRESHOLD,
    GEN2_THRESHOLD,
    catching_up,
)


@pytest.fixture(autouse=True)
def node_thresholds() -> object:
    saved = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    yield
    gc.set_threshold(*saved)


def test_widened_inside_and_restored_after() -> None:
    with catching_up():
        assert gc.get_threshold() == (CATCH_UP_GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    assert gc.get_threshold() == (GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


def test_restored_when_catch_up_fails() -> None:
    with pytest.raises(RuntimeError), catching_up():
        raise RuntimeError("peer gone")
    assert gc.get_threshold() == (GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


def test_never_narrows_and_leaves_a_later_setting_alone() -> None:
    gc.set_threshold(CATCH_UP_GEN0_THRESHOLD * 2, 5, 5)
    with catching_up():
        assert gc.get_threshold() == (CATCH_UP_GEN0_THRESHOLD * 2, 5, 5)
    with catching_up():
        gc.set_threshold(3_000, 10, 10)  # set by something else meanwhile
    assert gc.get_threshold() == (3_000, 10, 10)
