"""What applying certified blocks costs one node, in process: the commit
side of a validator and the catch-up (block sync) path, stage by stage.

Builds ``--blocks`` blocks of ``--block`` payment records (signed in
batches of ``--sign-batch``, as ``harness.bench_batches`` loads a cluster;
1: one signature per record) on a first chain store, certified by a quorum
of the bench validators, then applies them to a second, empty store the
way a node catching up does: the served block packed as the sync answer
carries it, decoded as the fetching thread decodes it (header, certificate,
``decode_committed_envelope``), the certificate verified, the block
validated as certified (``NodeApplication.validate``, with the node's
policy engine installed, no policy in force), then
``ChainStore.commit_block`` in one synced batch and ``Mempool.committed``.
Reports CPU µs per record for each stage (this thread's; ``gc_us``: the
part of them spent in the cyclic collector) and records/s of the whole apply
(one core; no network, no consensus messages).  ``--profile F`` writes a
cProfile of the apply loop.  ``--source DIR`` applies the blocks of a store
that scripts/bench-store or scripts/bench-statesync built instead, and
``--measure N`` counts only the last N blocks (the store grown before them).
``--gc-census`` counts, at each collection, the objects the collector scans,
by type, and the items of the containers among them (what it traverses),
and prints the most per record measured (slow: only to compare; the
collector's time it reports then includes the census's own).

``--compare-policy`` applies, in two arms, blocks of the load of
``python -m harness.bench_secure --policy`` (payments, transfers and refunds
from 100,000 accounts, one signature per record, 100 ms of block time
apart) on a genesis with members: without a policy, then after the blocks
that install the 10-rule policy and its lists by governance (not measured).
What the policy costs a validator per record is the difference, stage by
stage (issue 25).

    python scripts/bench_apply.py --blocks 50 --block 2000
    python scripts/bench_apply.py --compare-policy --blocks 30 --block 1000
    python scripts/bench_apply.py --source /tmp/auditledger-bench-statesync/chain-400000 \
        --label bench-store --measure 20
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus import proposer_for  # noqa: E402
from ledger.batch import BATCH_DOMAIN, batch_message, batch_tree  # noqa: E402
from ledger.blocks import certificate_from_bytes, decode_header, verify_certificate  # noqa: E402
from ledger.chain import ChainStore  # noqa: E402
from ledger.crypto import RECORD_DOMAIN, SigningKey  # noqa: E402
from ledger.records import decode_committed_envelope, decode_envelope  # noqa: E402
from ledger.storage import LevelDBStore  # noqa: E402
from node.chainapp import NodeApplication  # noqa: E402
from node.mempool import Mempool  # noqa: E402
from node.gctune import GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD, tune_after_start  # noqa: E402,E501
from node.metrics import Metrics  # noqa: E402
from node.policy_runtime import install_policy_engine  # noqa: E402
from node.sync import _packed_block  # noqa: E402
from harness.bench_chain import (  # noqa: E402
    CHAIN,
    FIXED_TS,
    bench_genesis,
    bench_key,
    bench_record,
    certify,
)
from ledger.records import Envelope  # noqa: E402
from harness.bench_policy_setup import (  # noqa: E402
    governance_bodies,
    governance_envelopes,
    policy_load,
)
from ledger.genesis import Genesis  # noqa: E402

LABEL = "bench-apply"


def envelopes_for(submitter: SigningKey, lo: int, hi: int, sign_batch: int) -> list[bytes]:
    records = [bench_record(submitter, n).record_bytes for n in range(lo, hi)]
    if sign_batch <= 1:
        return [msgpack.packb({"record": r, "sig": submitter.sign(RECORD_DOMAIN, r)},
                              use_bin_type=True) for r in records]
    out = []
    for k in range(0, len(records), sign_batch):
        chunk = records[k:k + sign_batch]
        root, positions = batch_tree([hashlib.sha256(r).digest() for r in chunk])
        sig = submitter.sign(BATCH_DOMAIN, batch_message(len(chunk), root))
        out += [msgpack.packb({"batch": p.to_map(), "record": r, "sig": sig}, use_bin_type=True)
                for r, p in zip(chunk, positions)]
    return out


def build(path: Path, blocks: int, block: int, sign_batch: int) -> list[bytes]:
    """The blocks as a sync answer carries them (one packed value each)."""
    genesis, validators, submitter = bench_genesis(LABEL)
    chain = ChainStore(LevelDBStore(str(path)), genesis)
    packed = []
    for b in range(blocks):
        raw = envelopes_for(submitter, b * block, (b + 1) * block, sign_batch)
        packed.append(commit_packed(chain, validators, [decode_envelope(e) for e in raw],
                                    FIXED_TS + 1000 * (b + 1)))
    chain.close()
    return packed


def commit_packed(chain: ChainStore, validators: list[SigningKey], envelopes: list[Envelope],
                  time_ms: int) -> bytes:
    """Commit the next block of ``envelopes`` at ``time_ms``, certified by a
    quorum; the block as a sync answer carries it."""
    height = chain.height + 1
    genesis = chain.genesis
    header = chain.next_header(envelopes, time=time_ms,
                               proposer=proposer_for(genesis.n, height, 0))
    cert = certify(genesis, validators, header)
    chain.commit_block(header, envelopes, cert)
    packed: bytes = msgpack.packb({"header": header.header_bytes, "certificate": cert.to_bytes(),
                                   "envelopes": chain.block_envelopes(height)}, use_bin_type=True)
    return packed


def policy_arm(path: Path, blocks: int, block: int, policy: bool) -> tuple[Genesis, list[bytes]]:
    """A genesis with three members and the blocks of one ``--compare-policy``
    arm: with ``policy``, first the governance records of the policy and its
    lists (50 a block), then ``blocks`` blocks of the policy load."""
    members = [bench_key(LABEL, 200 + i) for i in range(3)]
    genesis, validators, submitter = bench_genesis(LABEL, members)
    batches = []
    if policy:
        gov = governance_envelopes(CHAIN, members[:genesis.governance_threshold],
                                   governance_bodies(100_000, 10_000), 1)
        batches += [gov[k:k + 50] for k in range(0, len(gov), 50)]
    load = [decode_envelope(e) for e in policy_load(submitter, CHAIN, blocks * block, 100_000)]
    batches += [load[k:k + block] for k in range(0, len(load), block)]
    chain = ChainStore(LevelDBStore(str(path)), genesis)
    install_policy_engine(chain)
    start = load[0].record.ts
    packed = [commit_packed(chain, validators, envelopes, start + 100 * height)
              for height, envelopes in enumerate(batches, start=1)]
    chain.close()
    return genesis, packed


def read_source(path: Path, label: str) -> list[bytes]:
    """The blocks of an existing bench store, packed as a sync answer carries them."""
    genesis, _, _ = bench_genesis(label)
    chain = ChainStore(LevelDBStore(str(path)), genesis)
    try:
        return [_packed_block(chain, height) for height in range(1, chain.height + 1)]
    finally:
        chain.close()


def census_callback(seen: Counter[str], traversed: Counter[str]
                    ) -> Callable[[str, dict[str, int]], None]:
    """A collector callback counting, at each collection's start, the objects
    it is about to scan (those of the generations it collects) by type; a
    list or tuple also by its items' types ("tuple(int,int)").  What the
    collector scans per record is what makes it run more often and longer.
    ``traversed``: the items of each container of 8 or more it scans, by
    type and its first item's type ("list[str]"), which it traverses too."""
    def shape(o: object) -> str:
        name = type(o).__name__
        if isinstance(o, (list, tuple)) and type(o) in (list, tuple):
            items = ",".join(type(x).__name__ for x in o[:4])
            name += f"({items}{',...' if len(o) > 4 else ''})"
        return name

    def container(o: Any) -> None:
        n = len(o)
        if n >= 8:
            first = next(iter(o))
            inner = (f"{type(first).__name__}->{type(o[first]).__name__}"
                     if type(o) is dict else type(first).__name__)
            traversed[f"{type(o).__name__}[{inner}]"] += n

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            for gen in range(info["generation"] + 1):
                objects = gc.get_objects(generation=gen)
                seen.update(shape(o) for o in objects)
                for o in objects:
                    if type(o) in (list, tuple, dict, set, frozenset):
                        container(o)
    return on_gc


def apply(path: Path, packed: list[bytes], profile: Path | None, genesis: Genesis,
          measure: int = 0, census: Counter[str] | None = None) -> dict[str, float]:
    chain = ChainStore(LevelDBStore(str(path)), genesis)
    install_policy_engine(chain)  # the node's own engine, as node/app.py installs it
    mempool = Mempool(genesis, chain, Metrics(), max_size=100_000)
    app = NodeApplication(genesis, chain, mempool, max_block_records=100_000,
                          max_clock_skew_ms=10_000)
    stages = dict.fromkeys(("decode", "certificate", "validate", "commit", "mempool"), 0.0)
    records = 0
    # Stages in this thread's CPU time: the machine's other load moves wall
    # time, and LevelDB's compaction thread is not the apply's.
    clock = time.thread_time
    prof = cProfile.Profile(clock) if profile is not None else None
    gc_time = [0.0, 0.0, 0]  # CPU in the cyclic collector while measuring, its start, runs

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.thread_time()
        else:
            gc_time[0] += time.thread_time() - gc_time[1]
            gc_time[2] += 1

    warm = len(packed) - measure if measure else 0
    for blob in packed[:warm]:  # grows the store, not measured
        raw = msgpack.unpackb(blob, raw=False)
        header = decode_header(raw["header"])
        envelopes = tuple(decode_committed_envelope(e) for e in raw["envelopes"])
        app.validate(header, envelopes, now_ms=header.time, certified=True)
        chain.commit_block(header, envelopes, certificate_from_bytes(raw["certificate"]),
                           verify_certificate=False, validated=True)
        mempool.committed(envelopes)
    cpu0, t0 = time.process_time(), time.perf_counter()
    gc.callbacks.append(on_gc)
    traversed: Counter[str] = Counter()
    counting = census_callback(census, traversed) if census is not None else None
    if counting is not None:
        gc.callbacks.append(counting)
    if prof is not None:
        prof.enable()
    for blob in packed[warm:]:
        a = clock()
        raw = msgpack.unpackb(blob, raw=False)
        header = decode_header(raw["header"])
        envelopes = tuple(decode_committed_envelope(e) for e in raw["envelopes"])
        cert = certificate_from_bytes(raw["certificate"])
        b = clock()
        verify_certificate(cert, header, chain.epoch_genesis(header.height))
        c = clock()
        app.validate(header, envelopes, now_ms=header.time, certified=True)
        d = clock()
        done = mempool.take_durable(envelopes)
        chain.commit_block(header, envelopes, cert, verify_certificate=False, validated=True,
                           pending_done=done)
        e = clock()
        mempool.committed(envelopes)
        f = clock()
        for name, dt in zip(stages, (b - a, c - b, d - c, e - d, f - e)):
            stages[name] += dt
        records += len(envelopes)
    gc.callbacks.remove(on_gc)
    if counting is not None:
        gc.callbacks.remove(counting)
    if prof is not None:
        prof.disable()
        prof.dump_stats(str(profile))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    chain.close()
    out = {f"{k}_us": round(v / records * 1e6, 2) for k, v in stages.items()}
    out.update(gc_us=round(gc_time[0] / records * 1e6, 2), gc_runs=gc_time[2])
    if census is not None:  # objects scanned per record measured, the most first
        out["census_per_record"] = {k: round(n / records, 2)  # type: ignore[assignment]
                                    for k, n in census.most_common(12)}
        out["census_items_per_record"] = {  # type: ignore[assignment]
            k: round(n / records, 2) for k, n in traversed.most_common(12)}
    out.update(records=records, records_per_s=round(records / wall),
               process_cpu_us_per_record=round(cpu / records * 1e6, 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--block", type=int, default=2000, help="records per block")
    ap.add_argument("--sign-batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="applies into fresh stores")
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--source", type=Path, default=None,
                    help="apply this bench store's blocks instead of building some")
    ap.add_argument("--label", default=LABEL, help="the keys the --source store was built with")
    ap.add_argument("--measure", type=int, default=0, help="measure only the last N blocks")
    ap.add_argument("--compare-policy", action="store_true",
                    help="the policy load without, then with the 10-rule policy")
    ap.add_argument("--gc-census", action="store_true",
                    help="count what the collector scans per record, by type (slow)")
    ap.add_argument("--gen0", type=int, default=GEN0_THRESHOLD,
                    help="the collector's young-generation threshold (a node's by default)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    try:
        if a.compare_policy:
            arms = [(name, *policy_arm(tmp / f"source-{name}", a.blocks, a.block, on))
                    for name, on in (("none", False), ("policy", True))]
        elif a.source is not None:
            arms = [("", bench_genesis(a.label)[0], read_source(a.source, a.label))]
        else:
            arms = [("", bench_genesis(LABEL)[0],
                     build(tmp / "source", a.blocks, a.block, a.sign_batch))]
        # The collector as a started node sets it (node/gctune.py).
        tune_after_start()
        gc.set_threshold(a.gen0, GEN1_THRESHOLD, GEN2_THRESHOLD)
        measure = a.blocks if a.compare_policy else a.measure
        for r in range(a.rounds):
            for name, genesis, packed in arms:
                out: dict[str, object] = {"arm": name} if name else {}
                profile = a.profile if r == a.rounds - 1 else None
                if profile is not None and name:  # one profile per arm
                    profile = profile.with_name(f"{profile.stem}-{name}{profile.suffix}")
                census: Counter[str] | None = Counter() if a.gc_census else None
                out.update(apply(tmp / f"dest{r}", packed, profile, genesis, measure, census))
                print(json.dumps(out), flush=True)
                shutil.rmtree(tmp / f"dest{r}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
