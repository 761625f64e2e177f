"""Bounds of the chain's consensus params (PROTOCOL §9.3, "Consensus params").

The one place these bounds live: ``gov.params.set`` refuses a value outside
them (rule 1, :class:`~ledger.errors.ParamOutOfRange`), so a block carrying
one is invalid on every validator alike; a genesis naming one is a genesis
error; and a node's own ``node.toml`` ``[consensus]`` overrides take the
same bounds (node/settings_chain.py).

Why bounded: a timeout of 0 makes every round end before a proposal can
arrive, one of 10^12 ms leaves a height without a live proposer stalled for
decades, and a block cap of 0 stops the chain (blocks are never empty).
The upper bounds leave room for any sane deployment: ten minutes per step,
100,000 records per block.  Pure; integers only.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import ParamOutOfRange

__all__ = ["PARAM_BOUNDS", "TIMEOUT_MIN_MS", "TIMEOUT_MAX_MS", "DELTA_MIN_MS",
           "BLOCK_RECORDS_MIN", "BLOCK_RECORDS_MAX", "check_param", "check_params"]

TIMEOUT_MIN_MS = 10
TIMEOUT_MAX_MS = 600_000
DELTA_MIN_MS = 0
BLOCK_RECORDS_MIN = 1
BLOCK_RECORDS_MAX = 100_000

# param name -> (lowest, highest), both included.
PARAM_BOUNDS: Mapping[str, tuple[int, int]] = {
    "timeout_propose_ms": (TIMEOUT_MIN_MS, TIMEOUT_MAX_MS),
    "timeout_prevote_ms": (TIMEOUT_MIN_MS, TIMEOUT_MAX_MS),
    "timeout_precommit_ms": (TIMEOUT_MIN_MS, TIMEOUT_MAX_MS),
    "timeout_delta_ms": (DELTA_MIN_MS, TIMEOUT_MAX_MS),
    "max_block_records": (BLOCK_RECORDS_MIN, BLOCK_RECORDS_MAX),
}


def check_param(name: str, value: Any) -> None:
    """Raise :class:`ParamOutOfRange` when ``name`` is a bounded param and
    ``value`` is not an integer within its bounds; other names pass."""
    bounds = PARAM_BOUNDS.get(name)
    if bounds is None:
        return
    lo, hi = bounds
    if type(value) is not int or not lo <= value <= hi:
        raise ParamOutOfRange(f"param {name} must be an integer in {lo}..{hi}, got {value!r}")


def check_params(params: Mapping[str, Any]) -> None:
    """:func:`check_param` over every entry, in name order (deterministic)."""
    for name in sorted(params):
        check_param(name, params[name])
