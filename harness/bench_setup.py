"""Benchmark setup (:mod:`harness.bench`): the run's options, the clusters and
the signed load.

:class:`Opts` holds what the command line chose; :func:`new_cluster` and
:func:`start_cluster` give a fresh 4-validator :class:`LocalCluster` with the
benchmark's consensus parameters; :class:`Signer` pre-signs payment records
and :func:`post_batch` offers them over HTTP until every one is admitted.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
from rich.progress import Progress

from ledger.crypto import RECORD_DOMAIN, SigningKey
from ledger.keys import load_key_file
from ledger.records import decode_envelope
from node.settings_chain import DEFAULT_BLOCK_RECORDS as DEFAULT_BLOCK_RECORDS  # re-exported

from .localnet import LocalCluster

# The consensus parameters the issue fixes (DEFAULT_PARAMS of node.cluster).
BENCH_PARAMS = {"timeout_propose_ms": 3000, "timeout_prevote_ms": 1000,
                "timeout_precommit_ms": 1000, "timeout_delta_ms": 500}

ORIGINS = [{"account": f"acct-{i:04d}", "country": c, "system": s}
           for i, (c, s) in enumerate((c, s) for c in ("DE", "FR", "NL", "US")
                                      for s in ("pos-terminal", "web-shop", "atm-network"))]


@dataclass
class Opts:
    """The run's options, as the command line chose them."""

    quick: bool
    duration: float
    warmup: float
    rate: float
    low_rate: float
    latency_seconds: float
    proof_seconds: float
    proof_records: int
    catchup_records: int
    block_records: int
    batch: int
    inflight: int
    profile: bool
    out: Path
    etcd_batch: int = 128


# -- signed load ------------------------------------------------------------


class Signer:
    """Pre-signed payment envelopes, built directly in canonical form.

    Maps are written with their keys already in canonical order, so a plain
    ``msgpack.packb`` is canonical; the first envelope is checked with
    :func:`ledger.records.decode_envelope` to be sure.
    """

    def __init__(self, key_path: Path | None, chain: str) -> None:
        # None: a throwaway key, for measuring envelope sizes (envelope_bytes).
        self.key = load_key_file(key_path).key if key_path is not None else SigningKey.generate()
        self.chain = chain
        self.nonce = time.time_ns() // 1000
        self.rng = random.Random(1)
        self.checked = False

    def envelopes(self, n: int) -> list[tuple[bytes, bytes]]:
        """``n`` (record id, envelope bytes) pairs."""
        out = []
        pk, chain, sign, rng = self.key.public_key, self.chain, self.key.sign, self.rng
        packb = msgpack.packb
        for _ in range(n):
            self.nonce += 1
            rec = packb({"body": {"amount": rng.randrange(50, 20_000), "currency": "EUR"},
                         "chain": chain, "kind": "payment", "nonce": self.nonce,
                         "origin": rng.choice(ORIGINS), "parents": [], "submitter": pk,
                         "ts": int(time.time() * 1000), "v": 1}, use_bin_type=True)
            env = packb({"record": rec, "sig": sign(RECORD_DOMAIN, rec)}, use_bin_type=True)
            out.append((hashlib.sha256(rec).digest(), env))
        if not self.checked and out:
            decode_envelope(out[0][1])
            self.checked = True
        return out


def envelope_bytes(n: int = 200) -> int:
    """Mean size of the envelopes the benchmark submits (same shape, a
    throwaway key): the value size of the etcd peer's puts."""
    envs = Signer(None, "bench").envelopes(n)
    return round(sum(len(e) for _, e in envs) / len(envs))


def pack_batches(envs: list[tuple[bytes, bytes]], size: int) -> list[tuple[list[bytes], bytes]]:
    """(ids, MessagePack body) per batch of ``size``."""
    return [([i for i, _ in envs[k:k + size]],
             msgpack.packb([e for _, e in envs[k:k + size]], use_bin_type=True))
            for k in range(0, len(envs), size)]


def sign_with_progress(signer: Signer, n: int, progress: Progress, what: str
                       ) -> list[tuple[bytes, bytes]]:
    task = progress.add_task(f"signing {what}", total=n)
    out: list[tuple[bytes, bytes]] = []
    while len(out) < n:
        out += signer.envelopes(min(5000, n - len(out)))
        progress.update(task, completed=len(out))
    progress.remove_task(task)
    return out


# -- HTTP and clusters ------------------------------------------------------


RESEND_S = 0.05  # a refused batch is sent again after this long


async def post_batch(session: aiohttp.ClientSession, url: str, body: bytes,
                     envs: list[bytes] | None = None, backoff_max: float = RESEND_S) -> int:
    """POST one MessagePack batch until every envelope is admitted; returns
    retries.  A refused batch is sent again after :data:`RESEND_S`, doubling
    per retry up to ``backoff_max`` (by default: every 50 ms, a client that
    does not back off; the SDK doubles up to 2 s)."""
    retries = 0
    while True:
        try:
            async with session.post(url + "/v1/records", data=body,
                                    headers={"Content-Type": "application/msgpack"}) as r:
                if r.status == 202:
                    doc = await r.json(content_type=None)
                    bad = [k for k, x in enumerate(doc["results"]) if "error" in x]
                    if not bad:
                        return retries
                    codes = {doc["results"][k]["error"] for k in bad}
                    if codes - {"rate_limited", "unavailable"}:
                        raise RuntimeError(f"records refused: {sorted(codes)}")
                    if envs is None:
                        envs = msgpack.unpackb(body)
                    envs = [envs[k] for k in bad]
                    body = msgpack.packb(envs, use_bin_type=True)
                else:
                    await r.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(min(RESEND_S * 2 ** min(retries, 16), max(backoff_max, RESEND_S)))
        retries += 1


async def offer_at_ticks(session: aiohttp.ClientSession, urls: list[str],
                         batches: list[tuple[list[bytes], bytes]], tick: float,
                         sent: dict[bytes, float], backoff_max: float = RESEND_S
                         ) -> tuple[float, float, list[asyncio.Task[int]]]:
    """Open-loop load: batch ``k`` (its record ids, its MessagePack body) is
    posted at ``t0 + k * tick`` to ``urls[k % len(urls)]``, whatever the
    answers so far, and its ids' send time noted in ``sent``.  Returns
    ``(t0, seconds offering, the posts' tasks)``: each task's result is its
    retries (:func:`post_batch`, with ``backoff_max``)."""
    t0 = time.perf_counter()
    posts = []
    for k, (ids, body) in enumerate(batches):
        delay = t0 + k * tick - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        for rid in ids:
            sent[rid] = now
        posts.append(asyncio.create_task(post_batch(session, urls[k % len(urls)], body,
                                                    backoff_max=backoff_max)))
    return t0, time.perf_counter() - t0, posts


async def status(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url + "/v1/status") as r:
            return await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return None


# One address (and one key) makes all of a benchmark's load: the per-client
# limits are off, or the proof load from wrk would be answered 429 past the
# default 2,000 requests/s per address (docs/performance.md, 2026-12-07).
NO_CLIENT_LIMITS = [("[http]\n", "[http]\nclient_rate_per_s = 0\nidentity_rate_per_s = 0\n"
                                 "max_requests_per_client = 100000\n"
                                 "max_requests_per_identity = 100000\n")]


def new_cluster(root: Path, name: str, block_records: int) -> LocalCluster:
    params: dict[str, Any] = dict(BENCH_PARAMS, max_block_records=block_records)
    edits = {i: list(NO_CLIENT_LIMITS) for i in range(4)}
    if block_records != DEFAULT_BLOCK_RECORDS:
        for i in range(4):
            edits[i].append((f"max_block_records = {DEFAULT_BLOCK_RECORDS}",
                             f"max_block_records = {block_records}"))
    return LocalCluster(root / name, 4, params=params, toml_edits=edits)


async def start_cluster(c: LocalCluster) -> None:
    for i in range(4):
        c.start(i)
    await c.wait_connected([0, 1, 2, 3], timeout=60)
