"""TEST-ONLY Byzantine behaviour for a real ``ledger-node`` process.

A node equivocates only when BOTH environment variables are set:

    AUDITLEDGER_TEST_ONLY_BYZANTINE=equivocate
    AUDITLEDGER_TEST_ONLY_I_UNDERSTAND=this-node-will-sign-conflicting-messages

Setting the first without the second is refused at start (exit code 2).  The
node then wraps its outgoing consensus messages:

* every proposal it makes is split: the real one goes to even-numbered
  peers, a conflicting one (same round, another header: time + 1) to the
  odd-numbered ones;
* every prevote and precommit is doubled: each peer receives the real vote
  and a conflicting signed vote (nil for a block, a fabricated block hash for
  nil), in an order that differs per peer.

Honest nodes must not fork and must record (and serve) the double votes as
evidence.

``AUDITLEDGER_TEST_ONLY_BYZANTINE=withhold-gossip`` (same confirmation) is
a quieter fault: the node never gossips the records clients give it, so its
proposals name envelopes no peer has.  Honest nodes must fetch them from it
(node/assembly.py) and keep committing.  Nothing here runs in a normal node.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from consensus.messages import (
    Proposal,
    SignedVote,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
)
from ledger.blocks import Vote
from ledger.crypto import SigningKey
from ledger.encoding import H

log = logging.getLogger("node.byzantine")

MODE_VAR = "AUDITLEDGER_TEST_ONLY_BYZANTINE"
CONFIRM_VAR = "AUDITLEDGER_TEST_ONLY_I_UNDERSTAND"
CONFIRM_VALUE = "this-node-will-sign-conflicting-messages"
MODES = ("equivocate", "withhold-gossip")


class ByzantineRefused(Exception):
    """The test-only mode was requested without the explicit confirmation."""


def byzantine_env(mode: str = "equivocate") -> dict[str, str]:
    """The environment that turns a node Byzantine (for tests and scripts)."""
    return {MODE_VAR: mode, CONFIRM_VAR: CONFIRM_VALUE}


def requested_mode(environ: dict[str, str] | None = None) -> str | None:
    """The mode to run in, None for an honest node; raises when not confirmed."""
    env = os.environ if environ is None else environ
    mode = env.get(MODE_VAR)
    if not mode:
        return None
    if mode not in MODES:
        raise ByzantineRefused(f"{MODE_VAR}={mode!r}: unknown test-only mode (known: {MODES})")
    if env.get(CONFIRM_VAR) != CONFIRM_VALUE:
        raise ByzantineRefused(f"{MODE_VAR} is a test-only fault injection; refusing to run "
                               f"without {CONFIRM_VAR}={CONFIRM_VALUE}")
    return mode


Send = Callable[[int | None, bytes], None]


def wrap_send(send: Send, *, key: SigningKey, me: int, n: int, chain: str,
              stats: dict[str, int] | None = None) -> Send:
    """A consensus ``send(peer, message)`` that equivocates (see the module doc)."""
    peers = [i for i in range(n) if i != me]
    counts = stats if stats is not None else {}

    def conflicting_vote(sv: SignedVote) -> bytes:
        block = None if sv.block is not None else H(b"byzantine/" + sv.vote_bytes)
        alt = Vote(sv.type, chain, sv.height, sv.round, block)
        counts["double_votes"] = counts.get("double_votes", 0) + 1
        return encode_message(sign_vote(alt, me, key))

    def conflicting_proposal(p: Proposal) -> bytes:
        header = dataclasses.replace(p.header, time=p.header.time + 1, header_bytes=b"")
        counts["split_proposals"] = counts.get("split_proposals", 0) + 1
        return encode_message(sign_proposal(header, p.envelopes, p.round, p.pol_round, key,
                                            p.pol))

    def byzantine_send(peer: int | None, message: bytes) -> None:
        try:
            msg: Any = decode_message(message)
        except Exception:  # noqa: BLE001 - not ours to judge: pass it on unchanged
            send(peer, message)
            return
        targets = peers if peer is None else [peer]
        if isinstance(msg, Proposal):
            alt = conflicting_proposal(msg)
            for t in targets:
                send(t, message if t % 2 == 0 else alt)
        elif isinstance(msg, SignedVote):
            alt = conflicting_vote(msg)
            for t in targets:
                first, second = (message, alt) if t % 2 == 0 else (alt, message)
                send(t, first)
                send(t, second)
        else:
            send(peer, message)

    log.warning("TEST-ONLY Byzantine mode: validator %d equivocates proposals and votes", me)
    return byzantine_send


def install(node: Any, mode: str = "equivocate") -> dict[str, int]:
    """Make ``node`` (a node.app.Node, before ``start``) misbehave; returns live counters."""
    stats: dict[str, int] = {}
    cfg = node.config
    assert cfg.validator is not None
    if mode == "withhold-gossip":
        def withhold() -> None:
            while batch := node.mempool.take_gossip(1 << 30):
                stats["withheld"] = stats.get("withheld", 0) + len(batch)

        node._flush_gossip = withhold
        log.warning("TEST-ONLY Byzantine mode: validator %d withholds gossip",
                    cfg.validator.index)
        return stats
    node._send_consensus = wrap_send(node._send_consensus, key=cfg.key,
                                     me=cfg.validator.index, n=node.genesis.n,
                                     chain=node.genesis.chain, stats=stats)
    return stats
