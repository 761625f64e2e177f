"""Ways a Byzantine proposer breaks a block, each leaving exactly one thing
wrong (roots are recomputed around the defect so the check that must catch
it is the one that does)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable

from ledger.blocks import Header
from ledger.encoding import H, canonical
from ledger.genesis import DEFAULT_RECORD_TS_FUTURE_MS
from ledger.merkle import root
from ledger.records import Envelope

from .app import SimChain
from .workload import MAX_CLOCK_SKEW_MS, READ_ONLY_SUBMITTER, rogue_record

Block = tuple[Header, tuple[Envelope, ...]]
Mutation = Callable[[Header, tuple[Envelope, ...], SimChain, random.Random, int], Block]


def _consistent(chain: SimChain, header: Header, envelopes: tuple[Envelope, ...]) -> Block:
    leaves = [e.leaf_hash for e in envelopes]
    size, log_root = chain.log_preview(leaves)
    return replace(header, tx_count=len(envelopes), tx_root=root(leaves), log_size=size,
                   log_root=log_root, header_bytes=b""), envelopes


def _field(**changes: object) -> Mutation:
    def mutate(h: Header, e: tuple[Envelope, ...], c: SimChain, r: random.Random, n: int) -> Block:
        return replace(h, header_bytes=b"", **changes), e  # type: ignore[arg-type]
    return mutate


def _bad_signature(h: Header, e: tuple[Envelope, ...], c: SimChain, r: random.Random, n: int) -> Block:
    # A record honest nodes already verified in their mempool, with a forged
    # signature: their signature cache must not vouch for it.
    victim = e[0]
    sig = bytes([victim.sig[0] ^ 1]) + victim.sig[1:]
    forged = Envelope(victim.record, sig, canonical({"record": victim.record.record_bytes, "sig": sig}))
    return _consistent(c, h, (forged,) + e[1:])


def _duplicate(h: Header, e: tuple[Envelope, ...], c: SimChain, r: random.Random, n: int) -> Block:
    return _consistent(c, h, e + (e[0],))


def _replay_committed(h: Header, e: tuple[Envelope, ...], c: SimChain, r: random.Random, n: int) -> Block:
    if not c.blocks:
        return _duplicate(h, e, c, r, n)
    return _consistent(c, h, e + (c.blocks[-1][0],))


def _rogue(extra: Callable[[random.Random, int], tuple[Envelope, ...]]) -> Mutation:
    def mutate(h: Header, e: tuple[Envelope, ...], c: SimChain, r: random.Random, n: int) -> Block:
        return _consistent(c, h, e + extra(r, h.time))
    return mutate


def _nonce_reuse(r: random.Random, ts: int) -> tuple[Envelope, ...]:
    nonce = r.randint(10**6, 10**9)
    return rogue_record(nonce, ts), rogue_record(nonce, ts + 1)


def _dangling_parent(r: random.Random, ts: int) -> tuple[Envelope, ...]:
    nonce = r.randint(10**6, 10**9)
    return (rogue_record(nonce, ts, parents=(H(b"never submitted %d" % nonce),)),)


def _parent_after_child(r: random.Random, ts: int) -> tuple[Envelope, ...]:
    parent = rogue_record(r.randint(10**6, 10**9), ts)
    child = rogue_record(r.randint(10**6, 10**9), ts, parents=(parent.id,))
    return child, parent


MUTATIONS: dict[str, Mutation] = {
    "bad-tx-root": _field(tx_root=H(b"bogus tx root")),
    "bad-log-root": _field(log_root=H(b"bogus log root")),
    "wrong-prev": _field(prev=H(b"bogus prev")),
    "wrong-validators": _field(validators=H(b"bogus validators")),
    "wrong-chain": _field(chain="other-chain"),
    "bad-signature": _bad_signature,
    "duplicate-record": _duplicate,
    "replay-committed": _replay_committed,
    "nonce-reuse": _rogue(_nonce_reuse),
    "dangling-parent": _rogue(_dangling_parent),
    "parent-after-child": _rogue(_parent_after_child),
    "forbidden-role": _rogue(lambda r, ts: (rogue_record(r.randint(1, 10**9), ts, name=READ_ONLY_SUBMITTER),)),
    "unknown-submitter": _rogue(lambda r, ts: (rogue_record(r.randint(1, 10**9), ts, name="eve"),)),
    "record-wrong-chain": _rogue(lambda r, ts: (rogue_record(r.randint(1, 10**9), ts, chain="other-chain"),)),
    "empty": lambda h, e, c, r, n: _consistent(c, h, ()),
    # A well-signed record whose ts is 1 ms past the window after the block time.
    "record-ts-future": _rogue(lambda r, ts: (
        rogue_record(r.randint(1, 10**9), ts + DEFAULT_RECORD_TS_FUTURE_MS + 1),)),
}


def mutate(kind: str, header: Header, envelopes: tuple[Envelope, ...], chain: SimChain,
           rng: random.Random, n: int) -> Block:
    """Apply ``kind``; a few need the header itself and are handled here."""
    if kind == "future-time":
        return replace(header, time=header.time + 10 * MAX_CLOCK_SKEW_MS, header_bytes=b""), envelopes
    if kind == "time-before-prev" and chain.tip is not None and chain.tip.time > 0:
        return replace(header, time=chain.tip.time - 1, header_bytes=b""), envelopes
    if kind == "wrong-proposer":
        return replace(header, proposer=(header.proposer + 1) % n, header_bytes=b""), envelopes
    if kind == "tx-count":
        return replace(header, tx_count=header.tx_count + 1, header_bytes=b""), envelopes
    if kind == "wrong-verdicts":  # a verdict root (PROTOCOL §10.6) no honest engine derives
        return replace(header, verdicts=H(b"bogus verdicts"), header_bytes=b""), envelopes
    return MUTATIONS.get(kind, MUTATIONS["bad-tx-root"])(header, envelopes, chain, rng, n)


ALL_KINDS = tuple(MUTATIONS) + ("future-time", "time-before-prev", "wrong-proposer", "tx-count")
# The enumerator's forgers cycle through these (random campaigns keep ALL_KINDS,
# so their seeds replay as before).
FORGE_KINDS = ALL_KINDS + ("wrong-verdicts",)
