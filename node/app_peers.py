"""Routing peer frames: consensus messages, compact proposals and decisions, gossip and
checkpoint signatures between the transport and the node's components.

A mixin of :class:`node.app.Node` (kept apart to keep that module short);
the attributes below are the Node's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from consensus import Decision, received
from ledger.chain import ChainStore
from ledger.errors import LedgerError
from ledger.records import Envelope

from . import peer_messages
from .assembly import ProposalAssembler, compact_proposal, decode_compact, split_leaves
from .checkpoints import Checkpoints
from .config import NodeConfig
from .driver import Driver, now_ms
from .mempool import Mempool
from .mempool_links import AdmittedLeaves, PeerBacklog
from .metrics import Metrics
from .peer_messages import (CompactProposal, ConsensusMessage, Cosign, Fetched, Records, Sigs,
                            Status, Want, WantSigs)
from .transport import PeerTransport
from .validator_set import ValidatorLinks
from .wire import decode_consensus

log = logging.getLogger("node.app")


class PeerRouting:
    config: NodeConfig
    metrics: Metrics
    mempool: Mempool
    assembler: ProposalAssembler
    transport: PeerTransport | None
    driver: Driver | None
    links: ValidatorLinks | None
    _checkpoints: Checkpoints | None
    _gossip_in: asyncio.Queue[list[bytes]]
    _assembly_wake: asyncio.Event
    _admitted_leaves: AdmittedLeaves
    _peer_backlog: PeerBacklog

    if TYPE_CHECKING:  # the Node's
        @property
        def chain(self) -> ChainStore: ...

        def _publish_assembly(self) -> None: ...

    # -- peer messages -----------------------------------------------------

    def _send_consensus(self, peer_key: bytes | None, message: bytes) -> None:
        assert self.transport is not None and self.links is not None
        peer = None if peer_key is None else self.links.book.peer_id(peer_key)
        if peer_key is not None and peer is None:
            return  # not a validator we link with (any more)
        compact = compact_proposal(message)
        if compact is None:
            body = peer_messages.encode(ConsensusMessage(message))
        else:
            # Proposals name their envelopes by leaf hash (node/assembly.py).
            # Flush gossip first: frames to a peer stay in order, so the
            # records of the block reach it before the proposal does.
            self._flush_gossip()
            body = peer_messages.encode(CompactProposal(*compact))
        if peer is None:
            self.transport.broadcast(body)
        else:
            self.transport.send(peer, body)

    def _on_frame(self, peer: int, body: bytes) -> None:
        assert self.driver is not None and self.transport is not None
        try:
            msg = peer_messages.decode(body)
            if isinstance(msg, CompactProposal):
                proposal, leaves = decode_compact(msg.message, msg.leaves)
                if isinstance(proposal, Decision) and proposal.height <= self.chain.height:
                    return  # a decision for a block committed here (node/wire.py)
                whole = self.assembler.offer(peer, proposal, leaves, now_ms())
                if whole is not None:
                    self.driver.feed_peer(received(whole, now_ms()))
                else:
                    self._admitted_leaves.start()
                    self._assembly_wake.set()
            elif isinstance(msg, ConsensusMessage):
                decoded = decode_consensus(msg.message, self.mempool.by_leaf, self.chain.height)
                if decoded is not None:  # None: a decision for a block committed here
                    self.driver.feed_peer(received(decoded, now_ms()))
            elif isinstance(msg, Records):
                envs = list(msg.envelopes)
                try:
                    self._gossip_in.put_nowait(envs)
                    self._peer_backlog.queued(len(envs))
                except asyncio.QueueFull:
                    self.metrics.frames_dropped.labels(reason="gossip_backlog").inc()
            elif isinstance(msg, Want):
                have = self._wanted(split_leaves(msg.leaves))
                self.metrics.envelopes_fetch_served.inc(len(have))
                self.transport.send(peer, peer_messages.encode(Fetched(tuple(have))))
            elif isinstance(msg, Fetched):
                self.assembler.deliver(msg.envelopes)
                self._assembly_wake.set()
            elif isinstance(msg, Cosign):
                signer = self.links.book.key_of(peer) if self.links is not None else None
                if self._checkpoints is not None and signer is not None:
                    self._checkpoints.offer_from(signer, msg.height, msg.signature)
            elif isinstance(msg, WantSigs):
                if self._checkpoints is not None:
                    held = self._checkpoints.held(msg.heights)
                    if held:
                        self.transport.send(peer, peer_messages.encode(Sigs(tuple(held))))
            elif isinstance(msg, Sigs):
                if self._checkpoints is not None and self._checkpoints.relayed(msg.sigs):
                    self.metrics.frames_dropped.labels(reason="bad_message").inc()
            else:
                self.driver.peer_height(peer, msg.height)
        except (LedgerError, ValueError, TypeError, KeyError) as exc:
            # BadPeerMessage (a LedgerError) for the peer layer; the
            # consensus and envelope decoders raise their own.
            self.metrics.frames_dropped.labels(reason="bad_message").inc()
            log.info("dropped a bad message from validator %d: %s", peer, exc)

    def _wanted(self, leaves: list[bytes]) -> list[bytes]:
        """The envelopes with these leaf hashes this node can send: pending
        here, or in the block it decided last (a compact decision's
        receiver asks for those, node/assembly.py)."""
        assert self.driver is not None
        decided: dict[bytes, Envelope] | None = None
        have = []
        for leaf in leaves:
            env = self.mempool.by_leaf(leaf)
            if env is None:
                if decided is None:
                    last = self.driver.machine.last_decision
                    decided = {} if last is None else {e.leaf_hash: e for e in last.envelopes}
                env = decided.get(leaf)
            if env is not None:
                have.append(env.envelope_bytes)
        return have

    def _send_cosign(self, height: int, sig: bytes) -> None:
        if self.transport is not None:
            self.transport.broadcast(peer_messages.encode(Cosign(height, sig)))

    def _on_peer_up(self, peer: int) -> None:
        assert self.transport is not None
        self.transport.send(peer, peer_messages.encode(Status(self.chain.height)))

    def _flush_gossip(self) -> None:
        assert self.transport is not None
        limit = self.config.settings.gossip.batch
        while batch := self.mempool.take_gossip(limit):
            self.transport.broadcast(peer_messages.encode(Records(tuple(batch))))

    async def _gossip_out(self) -> None:
        # A client's records go to the peers as soon as they are admitted
        # (the next proposer may be a peer: waiting for a tick was up to a
        # tick of latency on every record), and then not again for
        # interval_ms, so that under load a frame carries many records.
        interval_s = self.config.settings.gossip.interval_ms / 1000
        ready = self.mempool.gossip_ready
        while True:
            await ready.wait()
            self._flush_gossip()
            await asyncio.sleep(interval_s)

    async def _gossip_admit(self) -> None:
        while True:
            envs = await self._gossip_in.get()
            try:
                if self.chain.history_gap:
                    continue  # nonces unknown until back-fill ends (node/statesync.py)
                await self.mempool.admit(envs, "gossip")
            finally:
                self._peer_backlog.admitted(len(envs))
            if len(self.assembler):
                self._assembly_wake.set()

    async def _assemble(self) -> None:
        """Complete parked proposals as their envelopes arrive; fetch the
        ones that do not arrive in time (node/assembly.py)."""
        assert self.driver is not None and self.transport is not None
        while True:
            due = self.assembler.next_due_ms(admission_busy=self._peer_backlog.busy)
            # A timer that sets the wake event, rather than wait_for: this
            # loop wakes for every admitted gossip batch while a proposal is
            # parked, and wait_for costs a task and a cancellation each time.
            timer = None if due is None else asyncio.get_running_loop().call_later(
                max(0, due - now_ms()) / 1000, self._assembly_wake.set)
            await self._assembly_wake.wait()
            if timer is not None:
                timer.cancel()
            self._assembly_wake.clear()
            if leaves := self._admitted_leaves.take():
                self.assembler.admitted(leaves)
            ready, fetches = self.assembler.poll(now_ms(), self.driver.machine.height,
                                                 admission_busy=self._peer_backlog.busy)
            for proposal in ready:
                self.driver.feed_peer(received(proposal, now_ms()))
            for fetch in fetches:
                log.info("asking validator %d for %d envelopes of a proposal at height %d",
                         fetch.peer, len(fetch.leaves), self.driver.machine.height)
                self.transport.send(fetch.peer, peer_messages.encode(Want(b"".join(fetch.leaves))))
            if not len(self.assembler):
                self._admitted_leaves.stop()
            if ready or fetches:
                self._publish_assembly()

