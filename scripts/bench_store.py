"""Proof rate and resident memory of a node's store against
``storage.max_open_files``.

LevelDB memory-maps the table files it keeps open, and the pages that reads
of a mapped table touch count in the process's RSS as ``RssFile`` (clean
page cache the kernel reclaims), apart from its own ``RssAnon``.  This builds a chain store of
``--records`` signed records (blocks of ``--block`` records, each certified
by a quorum, committed with ``ChainStore.commit_block`` exactly as a node
does), then for each ``--max-open-files`` value reopens it and builds
``--proofs`` inclusion bundles for random record ids (fixed seed), reporting
bundles/s and ``RssAnon``/``RssFile`` before and after.  The store is kept
in ``--dir`` and reused when it already holds the requested records.

    scripts/bench-store                                   1,000,000 records
    scripts/bench-store --records 200000 --max-open-files 1000,74
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.proofs import build_bundle
from ledger.storage import LevelDBStore

# harness/ is not installed: import it from this source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.bench_chain import bench_genesis, bench_record, build_store  # noqa: E402
from harness.bench_measure import memory_mb  # noqa: E402

LABEL = "bench-store"


def setup() -> tuple[Genesis, list[SigningKey], SigningKey]:
    return bench_genesis(LABEL)


def record_ids(records: int, count: int, rnd: random.Random) -> list[bytes]:
    """``count`` random committed record ids, rebuilt rather than read (so
    choosing them touches no page of the store)."""
    _, _, submitter = setup()
    return [bench_record(submitter, rnd.randrange(records)).id for _ in range(count)]


def measure(path: Path, max_open_files: int, proofs: int,
            verify_checksums: bool = True, bundles_digest: bool = False) -> dict[str, Any]:
    genesis, _, _ = setup()
    chain = ChainStore(LevelDBStore(str(path), create=False, max_open_files=max_open_files,
                                    verify_checksums=verify_checksums),
                       genesis, check=False)
    ids = record_ids(chain.log.size, proofs, random.Random(1))
    before = memory_mb(os.getpid())
    digest = hashlib.sha256()
    started, cpu = time.perf_counter(), time.process_time()
    if bundles_digest:  # the bundles' bytes, to compare two versions of the code
        for record_id in ids:
            digest.update(json.dumps(build_bundle(chain, record_id), sort_keys=True).encode())
    else:
        for record_id in ids:
            build_bundle(chain, record_id)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = memory_mb(os.getpid())
    chain.close()
    # CPU per bundle: on a machine shared with other work the wall-clock
    # rate measures the share of the cores the process got.
    return {"max_open_files": max_open_files, "verify_checksums": verify_checksums,
            "proofs": proofs,
            "proofs_per_s": round(proofs / seconds),
            "cpu_us_per_proof": round(cpu / proofs * 1e6, 1),
            **({"bundles_sha256": digest.hexdigest()} if bundles_digest else {}),
            "memory_before_mb": before, "memory_after_mb": after,
            "tables": sum(1 for p in path.iterdir() if p.suffix == ".ldb")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--block", type=int, default=4000)
    ap.add_argument("--proofs", type=int, default=40_000)
    ap.add_argument("--max-open-files", default="1000,140,110,74",
                    help="comma-separated values to measure (LevelDB raises < 74 to 74)")
    ap.add_argument("--verify-checksums", choices=("on", "off", "both"), default="on",
                    help="LevelDB block checksums on reads (nodes: on); 'both' measures "
                         "each value of --max-open-files off then on, to price the check")
    ap.add_argument("--digest", action="store_true",
                    help="also report the SHA-256 of the bundles (each JSON with sorted keys, "
                         "in order): equal before and after a change = the same bytes served")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/auditledger-bench-store"))
    ap.add_argument("--out", type=Path, default=Path("bench-store.json"))
    args = ap.parse_args()
    path = args.dir / f"chain-{args.records}"
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"store {path}: building up to {args.records:,} records", file=sys.stderr)
    build_store(path, args.records, args.block, LABEL)
    results = []
    checks = {"on": [True], "off": [False], "both": [False, True]}[args.verify_checksums]
    for value, check in ((int(v), c) for v in args.max_open_files.split(",") for c in checks):
        r = measure(path, value, args.proofs, check, args.digest)
        results.append(r)
        print(f"max_open_files={value:>5} verify_checksums={'on' if check else 'off'}: "
              f"{r['proofs_per_s']:>6,} proofs/s ({r['cpu_us_per_proof']} µs CPU each), "
              f"RssFile {r['memory_before_mb']['RssFile']} -> "
              f"{r['memory_after_mb']['RssFile']} MB, "
              f"RssAnon {r['memory_after_mb']['RssAnon']} MB ({r['tables']} tables)")
    args.out.write_text(json.dumps({"records": args.records, "results": results}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
