"""What a block's verdicts cost per record, in one process (issue 25).

The loop a node runs for each block while verdicts are on (ledger/approvals.py):
``VerdictState.compute`` (the policy's decisions, each record's verdict,
the verdict bytes and their Merkle root) then ``VerdictState.commit``
(the policy state, the held records, the breakers), over ``--records``
signed synthetic payments, transfers and refunds in blocks of ``--block``,
100 ms of block time apart, with the node's collector settings.  Configs:

- ``--config breakers``: circuit breakers on (``breaker_alerts`` 2), no
  policy: every record gets an ``allow`` verdict, version 2 headers;
- ``--config policy``: the 10-rule policy of scripts/bench_policy.py with
  its lists (100,000 known accounts), breakers off.

Prints CPU microseconds per record (process time: the machine may be
shared) for compute and commit, and inside compute the verdict bytes
(``Verdict.to_bytes`` of the block's verdicts, timed again separately).
No timed assertion: docs/performance.md records what it printed.

    scripts/bench-verdicts --config breakers
    scripts/bench-verdicts --config policy --records 20000

The machine's speed moves CPU times by a fifth from run to run; to compare
two versions of the code, count instructions instead (deterministic, with
``PYTHONHASHSEED=0``): ``valgrind --tool=cachegrind --cache-sim=yes python
scripts/bench_verdicts.py --config policy --records 10000``, once more with
``--setup-only``, and subtract (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_policy import COUNTRIES, POLICY  # noqa: E402

from ledger.approvals import VerdictState  # noqa: E402
from ledger.crypto import SigningKey  # noqa: E402
from ledger.genesis import parse_genesis  # noqa: E402
from ledger.membership import Membership  # noqa: E402
from ledger.policy import RecordInput, load_policy_engine, policy_from_json  # noqa: E402
from ledger.records import Envelope, make_record, sign_record  # noqa: E402
from node.gctune import tune_after_start  # noqa: E402

BREAKERS = {"breaker_alerts": 2, "breaker_monitors": 2, "breaker_window_ms": 60_000,
            "breaker_cooldown_ms": 10_000, "breaker_min_score": 500_000}
CHAIN = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["breakers", "policy"], default="breakers")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--block", type=int, default=500)
    ap.add_argument("--list-size", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--setup-only", action="store_true",
                    help="build the records and the state, judge nothing (the baseline "
                         "to subtract from a run's instruction count under valgrind)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    validators = [SigningKey(bytes([0x40 + i]) * 32) for i in range(4)]
    subs = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
    params = BREAKERS if args.config == "breakers" else {}
    genesis = parse_genesis({
        "chain": CHAIN,
        "validators": [{"name": f"node{i}", "pubkey": k.public_key.hex(),
                        "address": f"127.0.0.1:{7700 + i}"} for i, k in enumerate(validators)],
        "submitters": [{"name": f"s{i}", "pubkey": k.public_key.hex(), "roles": ["submit"]}
                       for i, k in enumerate(subs)],
        "params": dict(params)})
    state = Membership.from_genesis(genesis).at(1)
    accounts = [f"acc-{i:06d}" for i in range(args.list_size)]
    if args.config == "policy":
        engine = load_policy_engine()
        gov = [RecordInput(make_record(chain=CHAIN, submitter=subs[0].public_key, nonce=n,
                                       ts=0, kind=kind, origin={}, body=body), frozenset())
               for n, (kind, body) in enumerate([
                   ("gov.policy.set", {"policy": policy_from_json(POLICY).policy_bytes,
                                       "expires_height": 9}),
                   ("gov.list.add", {"list": "known_accounts", "entries": sorted(accounts),
                                     "expires_height": 9}),
                   ("gov.list.add", {"list": "sanctioned_countries", "entries": ["IR", "KP"],
                                     "expires_height": 9}),
                   ("gov.list.add", {"list": "licensed_corridors", "expires_height": 9,
                                     "entries": sorted(f"{a}:DE:FR" for a in accounts[:50_000])}),
               ])]
        engine.commit_block(1, 0, gov, ())
        verdicts = VerdictState(engine)
    else:
        verdicts = VerdictState()
    t0 = 1_700_000_000_000
    blocks: list[list[Envelope]] = []
    n = 0
    while n < args.records:
        block = []
        for _ in range(min(args.block, args.records - n)):
            kind = rng.choices(["payment", "transfer", "refund"], [85, 10, 5])[0]
            body: dict[str, Any] = {"amount": int(10 ** rng.uniform(2, 6.5)),
                                    "currency": rng.choice(["EUR", "EUR", "EUR", "USD"])}
            if kind == "transfer":
                body["to_country"] = rng.choice(["FR", "US"])
            key = rng.choice(subs)
            record = make_record(chain=CHAIN, submitter=key.public_key, nonce=n, ts=t0,
                                 kind=kind, body=body,
                                 parents=[bytes(32)] if kind == "refund" else [],
                                 origin={"account": rng.choice(accounts),
                                         "country": rng.choice(COUNTRIES)})
            block.append(sign_record(record, key))
            n += 1
        blocks.append(block)
    verdicts.commit_breakers(1, t0, [], state.params)  # block 1: the governance above
    tune_after_start()  # what a node does once started (node/gctune.py)
    if args.setup_only:
        return
    compute = commit = encode = 0.0
    leaf = 0
    for h, block in enumerate(blocks, start=2):
        t = t0 + 100 * h
        s = time.process_time()
        out = verdicts.compute(state, h, t, block, leaf)
        m = time.process_time()
        verdicts.commit(h, t, out)
        e = time.process_time()
        for v in out.verdicts:
            v.to_bytes()
        encode += time.process_time() - e
        compute += m - s
        commit += e - m
        leaf += len(block)
    print(json.dumps({
        "config": args.config, "records": n, "block": args.block,
        "compute_us_per_record": round(compute / n * 1e6, 2),
        "commit_us_per_record": round(commit / n * 1e6, 2),
        "verdict_bytes_us_per_record": round(encode / n * 1e6, 2),
        "header_version": out.version,
    }))


if __name__ == "__main__":
    main()
