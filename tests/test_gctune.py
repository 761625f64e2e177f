"""The node's collector settings and their accounting (node/gctune.py)."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from node.gctune import GEN0_THRESHOLD, GEN2_THRESHOLD, GcAccounting, tune_after_start
from node.settings import SCHEMA


def test_collections_are_counted_per_generation() -> None:
    registry = CollectorRegistry()
    acct = GcAccounting(registry)
    acct.install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        acct.uninstall()
    assert registry.get_sample_value("ledger_gc_collections_total", {"generation": "0"}) >= 1
    assert registry.get_sample_value("ledger_gc_collections_total", {"generation": "2"}) >= 1
    assert registry.get_sample_value("ledger_gc_seconds_total", {"generation": "2"}) > 0
    gc.collect()
    assert acct._callback not in gc.callbacks  # uninstalled: nothing counted any more


def test_tuning_freezes_startup_objects_and_widens_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_after_start()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
        assert gc.get_threshold()[2] == GEN2_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_nodes_young_threshold_is_its_setting() -> None:
    """node.toml's ``limits.gc_young_threshold`` (default: GEN0_THRESHOLD)
    is what the node widens the young generation to."""
    assert SCHEMA["limits"]["gc_young_threshold"][1] == GEN0_THRESHOLD
    before = gc.get_threshold()
    try:
        tune_after_start(5_000)
        assert gc.get_threshold()[0] == 5_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
