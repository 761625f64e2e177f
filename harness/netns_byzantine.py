"""A Byzantine validator and network partitions at once, in namespaces.

node3 runs the test-only equivocating mode (``harness/byzantine.py``: split
proposals, double votes) while the links are cut (``harness/netns.py``):

* ``isolate``: honest node0 is cut off.  The other three (one of them
  Byzantine) may commit; node0 commits nothing meanwhile, then catches up
  after the heal.
* ``split``: {0, 3} | {1, 2}.  Neither side holds a quorum of 3 even with
  the Byzantine node's votes, so no node commits during the split; both
  batches commit after the heal.

After each: no fork among the honest nodes, and evidence names node3 only.
Run with ``python -m harness.netns_byzantine`` inside a lab's hub namespace
(``netns.run_in_lab(..., module="harness.netns_byzantine")``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from .byzantine import byzantine_command
from .netns import NetnsLab, _cluster, lab_main, post_envelopes

BYZ = 3
HONEST = [0, 1, 2]
SPLIT_OBSERVE_S = 4.0  # several rounds of consensus timeouts (FAST_PARAMS)


class _Scenario:
    def __init__(self, directory: Path, lab: NetnsLab) -> None:
        from ledger.keys import load_key_file

        self.c = _cluster(directory, lab)
        self.lab = lab
        self.everyone = list(range(lab.n))
        self.key = load_key_file(self.c.dir / "keys" / "demo.json").key
        self.nonce = int(time.time() * 1000) * 1000

    def envelopes(self, k: int) -> list[Any]:
        from ledger.records import make_record, sign_record

        out = []
        for _ in range(k):
            self.nonce += 1
            rec = make_record(chain=self.c.genesis.chain, submitter=self.key.public_key,
                              nonce=self.nonce, ts=int(time.time() * 1000), kind="payment",
                              origin={"system": "netns-byz"}, body={"amount": self.nonce % 1000},
                              parents=[])
            out.append(sign_record(rec, self.key))
        return out

    async def submit(self, node: int, envs: list[Any], may_refuse: bool = False) -> bool:
        return await post_envelopes(self.c, node, envs, may_refuse)

    async def height(self, i: int) -> int:
        st = await self.c.status(i)
        return -1 if st is None else int(st["height"])

    async def heights(self, nodes: list[int]) -> list[int]:
        return [await self.height(i) for i in nodes]

    async def forks(self) -> int:
        """Honest nodes whose headers differ from node0's, up to the common height."""
        top = max(await self.heights(HONEST))
        await self.c.wait_height(HONEST, top, timeout=60)
        ref = await self.c.header_hashes(0, top)
        return sum([await self.c.header_hashes(i, top) != ref for i in HONEST[1:]])

    def start(self) -> None:
        for i in HONEST:
            self.c.start(i)
        self.c.start(BYZ, byzantine_command(self.c.config(BYZ)))

    async def isolate(self) -> dict[str, Any]:
        victim, rest = 0, [1, 2]
        self.lab.isolate(victim)
        before = await self.height(victim)
        batch = self.envelopes(10)
        await self.submit(1, batch)
        # With node0 cut off, commits need node3's (equivocating) votes too.
        await self.c.wait_committed(rest, batch[-1].id.hex(), timeout=60)
        during = await self.height(victim)
        self.lab.heal()
        await self.c.wait_committed(HONEST, batch[-1].id.hex(), timeout=60)
        return {"victim": victim, "victim_height_before": before,
                "victim_height_during": during, "majority_committed": True,
                "forks": await self.forks()}

    async def split(self) -> dict[str, Any]:
        left, right = [0, BYZ], [1, 2]
        before = await self.heights(self.everyone)
        self.lab.partition(left, right)
        a, b = self.envelopes(5), self.envelopes(5)
        await self.submit(0, a, may_refuse=True)
        await self.submit(1, b, may_refuse=True)
        advanced = await self._advanced_within(before, SPLIT_OBSERVE_S)
        self.lab.heal()
        await self.c.wait_connected(self.everyone, timeout=60)
        await self.submit(0, a)  # idempotent if accepted during the split
        await self.submit(1, b)
        await self.c.wait_committed(HONEST, a[-1].id.hex(), timeout=90)
        await self.c.wait_committed(HONEST, b[-1].id.hex(), timeout=90)
        return {"groups": [left, right], "committed_during_split": advanced,
                "resumed_after_heal": True, "forks": await self.forks()}

    async def _advanced_within(self, before: list[int], seconds: float) -> bool:
        """Did any node's height pass ``before`` during the window?  (The window
        is an observation period; the answer does not depend on its timing.)"""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(x > y for x, y in zip(await self.heights(self.everyone), before)):
                return True
            await asyncio.sleep(0.2)
        return False

    async def evidence(self) -> dict[str, Any]:
        named: dict[int, list[int]] = {}
        for i in HONEST:
            status, doc = await self.c.get(i, "/v1/evidence")
            named[i] = sorted({e["validator"] for e in doc["evidence"]}) if status == 200 else []
        return {"validators_named": named,
                "only_node3": all(v in ([], [BYZ]) for v in named.values()),
                "recorded_by": [i for i, v in named.items() if v == [BYZ]]}


async def run_scenarios(directory: Path, lab: NetnsLab, which: list[str]) -> dict[str, Any]:
    s = _Scenario(directory, lab)
    report: dict[str, Any] = {"scenarios": {}, "forks": 0, "partitions_healed": 0}
    try:
        s.start()
        await s.c.wait_connected(s.everyone, timeout=60)
        warm = s.envelopes(3)
        await s.submit(0, warm)
        await s.c.wait_committed(HONEST, warm[-1].id.hex(), timeout=60)
        for name in which:
            result = await (s.isolate() if name == "isolate" else s.split())
            report["scenarios"][name] = result
            report["forks"] += result["forks"]
            report["partitions_healed"] += 1
        report["evidence"] = await s.evidence()
        split = report["scenarios"].get("split", {})
        report["ok"] = (report["forks"] == 0 and report["evidence"]["only_node3"]
                        and not split.get("committed_during_split", False))
    finally:
        lab.heal()
        await s.c.stop_all()
    return report


def main(argv: list[str] | None = None) -> int:
    return lab_main("python -m harness.netns_byzantine", ["isolate", "split"], run_scenarios, argv)


if __name__ == "__main__":
    sys.exit(main())
