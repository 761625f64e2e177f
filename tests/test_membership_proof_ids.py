"""Membership.proof_ids picks the governance records a version 2 bundle
carries (PROTOCOL §9.6) from the changes that can matter to a bundle, found
once per Membership: the same ids, in the same order, as a pass that asks
every change for its targets (the rule as §9.6 states it), on histories that
mix every kind - lists of many entries among them."""

from __future__ import annotations

import random
from typing import Any

from govhelpers import gov_genesis

from ledger.encoding import to_hex
from ledger.governance import Action
from ledger.membership import Change, Membership

GENESIS = gov_genesis(4, 3)[0]


def by_targets(m: Membership, submitter: bytes, height: int) -> list[bytes]:
    """§9.6 over every change's targets."""
    keys = {to_hex(submitter)}
    chosen: list[bytes] = []
    for change in reversed([c for c in m.changes if c.committed < height]):
        targets = change.action.targets()
        if targets & {("validators",), ("members",)}:
            chosen.append(change.record_id)
        elif any(t[0] == "submitter" and t[1] in keys for t in targets):
            chosen.append(change.record_id)
            keys.update(t[1] for t in targets if t[0] == "submitter")
    return chosen[::-1]


def history(rng: random.Random, n: int, keys: list[bytes]) -> list[Change]:
    def action(kind: str, body: dict[str, Any]) -> Action:
        return Action(kind=kind, body=body, expires_height=2**63)

    out = []
    height = 1
    for k in range(n):
        height += rng.randrange(0, 3)
        pick = rng.randrange(12)
        if pick == 0:
            a = action("gov.validator.add", {"pubkey": bytes(32), "name": "v", "address": "x"})
        elif pick == 1:
            a = action("gov.member.add", {"pubkey": rng.choice(keys), "name": "m"})
        elif pick == 2:
            a = action("gov.threshold.set", {"threshold": 2})
        elif pick in (3, 4):
            a = action("gov.submitter.add", {"pubkey": rng.choice(keys), "name": "s",
                                             "roles": ["submit"]})
        elif pick == 5:
            old, new = rng.sample(keys, 2)
            a = action("gov.submitter.rotate", {"pubkey": old, "new_pubkey": new})
        elif pick == 6:
            a = action("gov.submitter.roles", {"pubkey": rng.choice(keys), "roles": ["audit"]})
        elif pick == 7:
            a = action("gov.params.set", {"params": {"max_block_records": 500}})
        elif pick == 8:
            a = action("gov.scope.pause", {"scope": "submitter", "value": to_hex(rng.choice(keys))})
        elif pick == 9:
            a = action("gov.policy.set", {"policy": b""})
        else:
            a = action("gov.list.add", {"list": "known", "entries": sorted(
                f"acc-{rng.randrange(10**6):06d}" for _ in range(rng.randrange(1, 400)))})
        out.append(Change(height, height + 1, k.to_bytes(32, "big"), a))
    return out


def test_proof_ids_match_the_rule_over_every_changes_targets() -> None:
    rng = random.Random(25)
    keys = [bytes([i]) * 32 for i in range(1, 7)]
    for _ in range(40):
        m = Membership(GENESIS, history(rng, rng.randrange(0, 60), keys))
        top = max([c.committed for c in m.changes], default=1) + 2
        for height in range(1, top + 1):
            for key in keys:
                assert m.proof_ids(key, height) == by_targets(m, key, height)


def test_a_chain_of_list_changes_carries_none_of_them() -> None:
    changes = [Change(h, h + 1, h.to_bytes(32, "big"),
                      Action("gov.list.add", {"list": "known", "entries": ["a", "b"]}, 2**63))
               for h in range(1, 300)]
    m = Membership(GENESIS, changes)
    assert m.proof_ids(bytes(32), 400) == []
