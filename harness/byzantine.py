"""TEST-ONLY Byzantine validator: a real node process that misbehaves.

``python -m harness.byzantine --config node.toml --mode equivocate`` runs
the runtime node (``node.main.run``) built by ``make_node`` below, which
wraps it before it starts; the production ``ledger-node`` has no such mode.
:func:`byzantine_command` gives the argv for tests and scripts
(``LocalCluster.start(i, command=...)``).  Run it from the source tree: the
harness package is not installed.

``--mode equivocate`` wraps the node's outgoing consensus messages:

* every proposal it makes is split: the real one goes to even-numbered
  peers, a conflicting one (same round, another header: time + 1) to the
  odd-numbered ones;
* every prevote and precommit is doubled: each peer receives the real vote
  and a conflicting signed vote (nil for a block, a fabricated block hash for
  nil), in an order that differs per peer.

Honest nodes must not fork and must record (and serve) the double votes as
evidence.

``--mode withhold-gossip`` is a quieter fault: the node never gossips the
records clients give it, so its proposals name envelopes no peer has.
Honest nodes must fetch them from it (node/assembly.py) and keep committing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

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
from node.app import Node
from node.config import ConfigError, NodeConfig, load_config
from node.startup import startup_checks
from node.config_env import env_overrides
from node.logs import LogContext
from node.main import run

log = logging.getLogger("harness.byzantine")

MODES = ("equivocate", "withhold-gossip")


Send = Callable[[bytes | None, bytes], None]  # (a peer's validator key or None, message)


def wrap_send(send: Send, *, key: SigningKey, me: int, peers: list[bytes], chain: str,
              stats: dict[str, int] | None = None) -> Send:
    """A consensus ``send(peer, message)`` that equivocates (see the module doc):
    ``peers`` are the other validators' keys, in genesis order."""
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

    def byzantine_send(peer: bytes | None, message: bytes) -> None:
        try:
            msg: Any = decode_message(message)
        except Exception:  # noqa: BLE001 - not ours to judge: pass it on unchanged
            send(peer, message)
            return
        targets = peers if peer is None else [peer]
        half = {p for i, p in enumerate(peers) if i % 2 == 1}
        if isinstance(msg, Proposal):
            alt = conflicting_proposal(msg)
            for t in targets:
                send(t, message if t not in half else alt)
        elif isinstance(msg, SignedVote):
            alt = conflicting_vote(msg)
            for t in targets:
                first, second = (message, alt) if t not in half else (alt, message)
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
    node._send_consensus = wrap_send(
        node._send_consensus, key=cfg.key, me=cfg.validator.index,
        peers=[v.pubkey for v in node.genesis.validators if v.index != cfg.validator.index],
        chain=node.genesis.chain, stats=stats)
    return stats


def byzantine_command(config: Path, mode: str = "equivocate") -> list[str]:
    """The argv that runs a Byzantine validator on ``config`` (from the source tree)."""
    if mode not in MODES:
        raise ValueError(f"unknown test-only mode {mode!r} (known: {MODES})")
    return [sys.executable, "-m", "harness.byzantine", "--config", str(config), "--mode", mode]


@click.command()
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="the node's TOML file")
@click.option("--mode", type=click.Choice(MODES), default="equivocate", show_default=True,
              help="how the node misbehaves (see the module doc)")
def main(config_path: Path, mode: str) -> None:
    """TEST-ONLY: run one validator that misbehaves as --mode says."""

    def make_node(config: NodeConfig, ctx: LogContext) -> Node:
        node = Node(config, ctx)
        install(node, mode)
        return node

    try:
        config = load_config(config_path, env_overrides(os.environ))
        # The same checks and TLS material as ledger-node (a TLS cluster too).
        code = run(dataclasses.replace(config, tls=startup_checks(config)), make_node)
    except ConfigError as exc:
        click.echo(f"harness.byzantine: configuration error: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()
