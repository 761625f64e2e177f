"""Signed batches against one signature per record (issue 28 item 1): the
committed throughput of a fresh 4-validator cluster under each kind of
load, run as alternating pairs in one invocation so that both see the same
machine.  Harness code, like :mod:`harness.bench`: nothing in the runtime
imports it.

    python -m harness.bench_batches --pairs 2 --sign-batch 64 --duration 20
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import msgpack

from ledger.batch import BATCH_DOMAIN, batch_message, batch_tree
from ledger.crypto import RECORD_DOMAIN
from ledger.keys import load_key_file
from ledger.records import decode_envelope, verify_signatures

from .bench_measure import cpu_seconds, gc_seconds, node_counters
from .bench_setup import ORIGINS, new_cluster, post_batch, start_cluster, status


def signed_load(key_path: Path, chain: str, n: int, sign_batch: int) -> list[bytes]:
    """``n`` envelopes, canonical by construction (keys written in order):
    one signature per record (``sign_batch`` 1) or per ``sign_batch`` records."""
    key = load_key_file(key_path).key
    pk, packb, rng = key.public_key, msgpack.packb, random.Random(1)
    nonce = time.time_ns() // 1000
    records = []
    for _ in range(n):
        nonce += 1
        records.append(packb({"body": {"amount": rng.randrange(50, 20_000), "currency": "EUR"},
                              "chain": chain, "kind": "payment", "nonce": nonce,
                              "origin": rng.choice(ORIGINS), "parents": [], "submitter": pk,
                              "ts": int(time.time() * 1000), "v": 1}, use_bin_type=True))
    if sign_batch == 1:
        out = [packb({"record": r, "sig": key.sign(RECORD_DOMAIN, r)}, use_bin_type=True)
               for r in records]
    else:
        out = []
        for lo in range(0, n, sign_batch):
            chunk = records[lo:lo + sign_batch]
            if len(chunk) < 2:
                out += [packb({"record": r, "sig": key.sign(RECORD_DOMAIN, r)},
                              use_bin_type=True) for r in chunk]
                continue
            root, positions = batch_tree([hashlib.sha256(r).digest() for r in chunk])
            sig = key.sign(BATCH_DOMAIN, batch_message(len(chunk), root))
            out += [packb({"batch": p.to_map(), "record": r, "sig": sig}, use_bin_type=True)
                    for r, p in zip(chunk, positions)]
    verify_signatures(decode_envelope(out[-1]))  # canonical and valid, or this fails
    return out


async def one_run(root: Path, name: str, sign_batch: int, n: int, duration: float,
                  warmup: float, request: int, inflight: int) -> dict[str, Any]:
    c = new_cluster(root, name, 4000)
    try:
        await start_cluster(c)
        t_sign = time.perf_counter()
        envs = signed_load(c.dir / "keys" / "demo.json", c.genesis.chain, n, sign_batch)
        sign_s = time.perf_counter() - t_sign
        bodies = [msgpack.packb(envs[k:k + request], use_bin_type=True)
                  for k in range(0, len(envs), request)]
        session = c.http()
        first = await c.status(0)
        if first is None:
            raise RuntimeError("node0 does not answer /v1/status")
        base = first["log_size"]
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        t0 = time.perf_counter()

        async def sample() -> None:
            while not stop.is_set():
                st = await status(session, c.url(0))
                if st is not None:
                    samples.append((time.perf_counter() - t0, st["log_size"] - base))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        queue = list(enumerate(bodies))

        async def feeder() -> None:
            while queue and time.perf_counter() - t0 < duration + warmup:
                k, body = queue.pop(0)
                try:
                    await post_batch(session, c.url(k % 4), body)
                except RuntimeError:
                    # say which envelopes were refused, and why
                    async with session.post(c.url(k % 4) + "/v1/records", data=body, headers={
                            "Content-Type": "application/msgpack"}) as r:
                        doc = await r.json(content_type=None)
                    bad = [(i, x) for i, x in enumerate(doc.get("results", [])) if "error" in x]
                    raise RuntimeError(f"request {k}: {len(bad)} refused, e.g. {bad[:3]}") from None

        load0 = os.getloadavg()
        pids = [c.procs[i].pid for i in range(4)]
        gc0 = gc_seconds(await node_counters(c))
        cpu0 = sum(cpu_seconds(p) for p in pids)
        await asyncio.gather(*(feeder() for _ in range(inflight)))
        t_end = time.perf_counter() - t0
        stop.set()
        await sampler
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        collector = gc_seconds(await node_counters(c)) - gc0
        steady = [s for s in samples if warmup <= s[0] <= t_end]
        rate = ((steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
                if len(steady) >= 2 else float("nan"))
        done = max(samples[-1][1] if samples else 0, 1)
        return {"run": name, "sign_batch": sign_batch, "records_per_s_steady": round(rate),
                "committed": samples[-1][1] if samples else 0,
                # CPU of the four nodes per committed record and node: less
                # dependent on the machine's other load than records/s.
                "cpu_us_per_record_per_node": round(cpu / done / 4 * 1e6, 1),
                # Of it, the cyclic collector's (wall time in the nodes' collections).
                "gc_us_per_record_per_node": round(collector / done / 4 * 1e6, 1),
                "offered_all": not queue, "seconds": round(t_end, 1),
                "signing_s": round(sign_s, 1), "load_start": load0, "load_end": os.getloadavg()}
    finally:
        await c.stop_all()


@click.command()
@click.option("--pairs", default=2, show_default=True, help="alternating pairs of runs")
@click.option("--sign-batch", default=64, show_default=True, help="records per batch signature")
@click.option("--records", default=400_000, show_default=True, help="pre-signed per run")
@click.option("--duration", default=20.0, show_default=True, help="measured window, s")
@click.option("--warmup", default=5.0, show_default=True)
@click.option("--request", default=2000, show_default=True, help="envelopes per POST")
@click.option("--inflight", default=4, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-batches.json"),
              show_default=True)
def main(pairs: int, sign_batch: int, records: int, duration: float, warmup: float,
         request: int, inflight: int, out: Path) -> None:
    """Committed records/s: per-record signatures, then batches, ``pairs`` times."""

    async def run() -> list[dict[str, Any]]:
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-batches-") as tmp:
            for p in range(pairs):
                for sb in (1, sign_batch):
                    r = await one_run(Path(tmp), f"pair{p}-sb{sb}", sb, records, duration,
                                      warmup, request, inflight)
                    click.echo(json.dumps(r))
                    results.append(r)
        return results

    results = asyncio.run(run())
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
