"""Decisions travel compact between validators (node/app_peers.py,
node/assembly.py): a laggard rebuilds one from its mempool, drops one for a
block it has committed, and its sender answers a fetch from the block it
decided last."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from consensus import CommittedBlock, Decision, encode_message
from helpers import certify, commit_envelopes, make_world

from ledger.chain import ChainStore
from ledger.storage import MemoryStore
from node import peer_messages
from node.app_peers import PeerRouting
from node.assembly import ProposalAssembler, compact_proposal
from node.driver import now_ms
from node.mempool_links import AdmittedLeaves
from node.metrics import Metrics
from node.peer_messages import CompactProposal, Fetched, Want


class Routing(PeerRouting):
    """PeerRouting over stand-ins: a mempool of ``pending`` envelopes, a
    chain at ``committed``, a driver that decided ``last``."""

    def __init__(self, pending: dict[bytes, Any], committed: int, last: Decision | None) -> None:
        self.fed: list[Any] = []
        self.sent: list[tuple[int, bytes]] = []
        self.mempool = SimpleNamespace(by_leaf=pending.get)  # type: ignore[assignment]
        self.driver = SimpleNamespace(  # type: ignore[assignment]
            machine=SimpleNamespace(last_decision=last, height=committed + 1),
            feed_peer=self.fed.append)
        self.transport = SimpleNamespace(  # type: ignore[assignment]
            send=lambda peer, body: self.sent.append((peer, body)))
        self.metrics = Metrics()
        self.assembler = ProposalAssembler(pending.get, fetch_after_ms=200, refetch_ms=500)
        self._admitted_leaves = AdmittedLeaves()
        self._assembly_wake = asyncio.Event()
        self.chain = SimpleNamespace(height=committed)  # type: ignore[misc]


def decided(height: int) -> tuple[Decision, bytes]:
    """The decision of block ``height`` of a chain of 5-record blocks, and
    its compact peer message."""
    world = make_world()
    chain = ChainStore(MemoryStore(), world.genesis)
    for h in range(1, height + 1):
        envs = world.envelopes(10 * h, 5)
        if h < height:
            commit_envelopes(chain, envs, world.validators)
    header = chain.next_header(envs, time=1_700_000_000_000 + height, proposer=0)
    decision = Decision(header, tuple(envs), certify(header, world.validators, world.genesis))
    compact = compact_proposal(encode_message(decision))
    assert compact is not None
    return decision, peer_messages.encode(CompactProposal(*compact))


def test_a_laggard_rebuilds_a_compact_decision_from_its_mempool() -> None:
    decision, body = decided(2)
    node = Routing({e.leaf_hash: e for e in decision.envelopes}, committed=1, last=None)
    node._on_frame(1, body)
    assert len(node.fed) == 1
    event = node.fed[0]
    assert isinstance(event, CommittedBlock) and event.envelopes == decision.envelopes
    assert event.header == decision.header and event.certificate == decision.certificate


def test_a_compact_decision_for_a_committed_block_is_dropped() -> None:
    decision, body = decided(2)
    for committed in (2, 3):
        node = Routing({}, committed=committed, last=None)
        node._on_frame(1, body)
        assert node.fed == [] and len(node.assembler) == 0


def test_missing_envelopes_park_it_and_the_sender_serves_them_from_its_last_decision() -> None:
    decision, body = decided(2)
    envs = decision.envelopes
    laggard = Routing({e.leaf_hash: e for e in envs[2:]}, committed=1, last=None)
    laggard._on_frame(1, body)
    assert laggard.fed == [] and len(laggard.assembler) == 1
    _, fetches = laggard.assembler.poll(now_ms() + 1_000, 2)  # _on_frame parks at now_ms()
    assert [sorted(f.leaves) for f in fetches] == [sorted(e.leaf_hash for e in envs[:2])]
    # the sender committed the block: its mempool holds none of them any more
    sender = Routing({}, committed=2, last=decision)
    sender._on_frame(0, peer_messages.encode(Want(b"".join(fetches[0].leaves))))
    (peer, answer), = sender.sent
    fetched = peer_messages.decode(answer)
    assert peer == 0 and isinstance(fetched, Fetched)
    assert sorted(fetched.envelopes) == sorted(e.envelope_bytes for e in envs[:2])
    assert laggard.assembler.deliver(fetched.envelopes) == 2
    ready, _ = laggard.assembler.poll(now_ms() + 1_001, 2)
    assert [encode_message(m) for m in ready] == [encode_message(decision)]
    # a leaf neither pending nor in the last decision is not answered
    sender.sent.clear()
    sender._on_frame(0, peer_messages.encode(Want(bytes(32))))
    (_, answer), = sender.sent
    assert peer_messages.decode(answer) == Fetched(())
