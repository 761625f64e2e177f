"""Policy evaluation cost per record, in one process (issue 25's figure).

A 10-rule policy with three velocity windows (per account, per account
over an hour, per submitter) and lookups in a 100,000-entry list of known
accounts (``--list-size``), judged over ``--records`` seeded synthetic
payments, transfers and refunds in blocks of ``--block``, 100 ms of block
time apart: ``evaluate_block`` then ``commit_block`` per block, as a node
does.  Prints CPU microseconds per record (process time: the machine may
be shared) for each and the memo's miss rate;
``--no-memo`` sends every record to CEL.  No timed assertion anywhere:
docs/performance.md records what it printed.

    scripts/bench-policy                         100,000 records, blocks of 500
    scripts/bench-policy --no-memo --records 20000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

# harness/ is not installed: import it from this source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.bench_policy_setup import COUNTRIES as COUNTRIES  # noqa: E402 (re-exported)
from harness.bench_policy_setup import POLICY as POLICY  # noqa: E402 (re-exported)
from ledger.crypto import SigningKey  # noqa: E402
from ledger.policy import RecordInput, load_policy_engine, policy_from_json  # noqa: E402
from ledger.records import make_record  # noqa: E402
from node.gctune import tune_after_start  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--block", type=int, default=500)
    ap.add_argument("--list-size", type=int, default=100_000)
    ap.add_argument("--no-memo", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--default-gc", action="store_true",
                    help="keep CPython's collector thresholds (a node tunes them: node/gctune.py)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    subs = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
    accounts = [f"acc-{i:06d}" for i in range(args.list_size)]
    engine = load_policy_engine()
    gov = [RecordInput(make_record(chain="bench", submitter=subs[0].public_key, nonce=n, ts=0,
                                   kind=kind, origin={}, body=body), frozenset())
           for n, (kind, body) in enumerate([
               ("gov.policy.set", {"policy": policy_from_json(POLICY).policy_bytes,
                                   "expires_height": 9}),
               ("gov.list.add", {"list": "known_accounts", "entries": sorted(accounts),
                                 "expires_height": 9}),
               ("gov.list.add", {"list": "sanctioned_accounts",
                                 "entries": sorted(rng.sample(accounts, 100)), "expires_height": 9}),
               ("gov.list.add", {"list": "sanctioned_countries", "entries": ["IR", "KP"],
                                 "expires_height": 9}),
               ("gov.list.add", {"list": "licensed_corridors", "expires_height": 9,
                                 "entries": sorted(f"{a}:DE:FR" for a in accounts[:50_000])}),
           ])]
    t0 = 1_700_000_000_000
    engine.commit_block(1, t0, gov, ())
    compiled = engine._compiled
    assert compiled is not None
    if args.no_memo:
        compiled.memo_size = 0
    blocks: list[list[RecordInput]] = []
    n = 0
    while n < args.records:
        block = []
        for _ in range(min(args.block, args.records - n)):
            kind = rng.choices(["payment", "transfer", "refund"], [85, 10, 5])[0]
            account = rng.choice(accounts) if rng.random() < 0.9 else f"new-{rng.randrange(10**6)}"
            body: dict[str, Any] = {"amount": int(10 ** rng.uniform(2, 6.5)),
                                    "currency": rng.choice(["EUR", "EUR", "EUR", "USD"])}
            if kind == "transfer":
                body["to_country"] = rng.choice(["FR", "US"])
            parents = [bytes(32)] if kind == "refund" and rng.random() < 0.9 else []
            record = make_record(chain="bench", submitter=rng.choice(subs).public_key, nonce=n,
                                 ts=t0, kind=kind, body=body, parents=parents,
                                 origin={"account": account, "country": rng.choice(COUNTRIES)})
            block.append(RecordInput(record, frozenset({"submit"})))
            n += 1
        blocks.append(block)
    if not args.default_gc:
        tune_after_start()  # what a node does once started (node/gctune.py)
    evaluate = commit = 0.0
    outcomes: dict[str, int] = {}
    for h, block in enumerate(blocks, start=2):
        t = t0 + 100 * h
        s = time.process_time()
        verdicts = engine.evaluate_block(h, t, block)
        m = time.process_time()
        engine.commit_block(h, t, block, verdicts)
        evaluate += m - s
        commit += time.process_time() - m
        for v in verdicts:
            outcomes[v.outcome.value] = outcomes.get(v.outcome.value, 0) + 1
    print(json.dumps({
        "records": n, "block": args.block, "list_size": args.list_size, "rules": 10,
        "memo": not args.no_memo, "gc": "default" if args.default_gc else "node",
        "evaluate_us_per_record": round(evaluate / n * 1e6, 2),
        "commit_us_per_record": round(commit / n * 1e6, 2),
        "cel_calls_per_record": round(compiled.misses / n, 4),
        "outcomes": outcomes,
    }))


if __name__ == "__main__":
    main()
