"""Gathering the validators' signatures over C2SP checkpoints (PROTOCOL §6.1).

After each commit the node signs its block's checkpoint text
(ledger/note.py), keeps the signature and broadcasts it in a ``cosign``
peer message.  Signatures from peers are verified against the validator set
in force at that height (PROTOCOL §9.9: a validator's key name is its index
in that set) and kept in the store; a signature for a height the node has
not committed yet waits (a few heights ahead at most) until it has.
A node that missed signatures (down, restarting, catching up by block sync)
asks its peers for those of recent blocks still short of a quorum
(``want sigs``), and relays what it holds when asked (``sigs``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ledger import note, witness
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.errors import BadSignature, NotFound
from ledger.genesis import Genesis, quorum
from ledger.blocks import Header

log = logging.getLogger("node.checkpoints")

# Signatures for heights up to this far above the tip wait for the commit.
AHEAD = 16
# How far below the tip /checkpoint looks for one with a quorum after a restart,
# and how far below the tip a node asks its peers for missing signatures.
LOOK_BACK = 256
# Heights asked for in one want sigs (peer_messages.MAX_WANT_SIGS).
WANT_PER_ASK = 64


def validator_keys_at(chain: ChainStore, height: int) -> list[bytes]:
    """The public keys of the validators in force at ``height`` (PROTOCOL §9.9),
    in their order there: a checkpoint's key names count in that set."""
    return [v.pubkey for v in chain.membership.at(height).validators]


def note_blob_id(blob_b64: str) -> bytes:
    """The key id at the front of a signature line's base64 blob."""
    import base64
    return base64.b64decode(blob_b64)[:4]


class Checkpoints:
    def __init__(self, genesis: Genesis, chain: ChainStore, keys: Sequence[SigningKey],
                 broadcast: Callable[[int, bytes], None],
                 witnesses: Sequence[witness.Witness] = ()) -> None:
        """``keys``: this node's validator keys; it signs a block's checkpoint
        with the one in the set in force at the block's height, if any."""
        self.genesis = genesis
        self.witnesses = list(witnesses)
        self.chain = chain
        self.keys = {k.public_key: k for k in keys}
        self.origin = note.origin(genesis.chain)
        self._broadcast = broadcast
        self._waiting: dict[tuple[int, bytes], bytes] = {}  # (height, signer key) -> sig
        self._latest = 0  # highest height known to carry a quorum (0: none yet)
        self._scanned = False

    def verifiers(self, height: int) -> list[note.Verifier]:
        return note.verifiers(self.origin, validator_keys_at(self.chain, height))

    def quorum(self, height: int) -> int:
        return quorum(len(self.chain.membership.at(height).validators))

    def _text(self, header: Header) -> bytes:
        return note.checkpoint_text(self.origin, header.log_size, header.log_root)

    def committed(self, header: Header) -> None:
        """Sign our block's checkpoint (with our key in force at its height:
        a node outside that set signs nothing), keep it, send it to every
        validator; then check the signatures that waited for this block."""
        keys = validator_keys_at(self.chain, header.height)
        for index, pubkey in enumerate(keys):
            if pubkey in self.keys:
                sig = note.sign_text(self.keys[pubkey], self._text(header))
                self._keep(header.height, index, sig)
                self._broadcast(header.height, sig)
                break
        for (height, signer) in [k for k in self._waiting if k[0] <= header.height]:
            waiting = self._waiting.pop((height, signer))
            if height == header.height:
                self.offer_from(signer, height, waiting)

    def offer_from(self, signer: bytes, height: int, sig: bytes) -> None:
        """A peer's own signature (``cosign``), named by the key its frames
        are signed with; BadSignature if it does not verify.  A key outside
        the set in force at ``height`` counts for nothing."""
        if height > self.chain.height:
            if height <= self.chain.height + AHEAD and \
                    len(self._waiting) < AHEAD * len(validator_keys_at(self.chain,
                                                                       self.chain.height + 1)):
                self._waiting[(height, signer)] = sig
            return
        keys = validator_keys_at(self.chain, height)
        if signer in keys:
            self.offer(keys.index(signer), height, sig)

    def offer(self, validator: int, height: int, sig: bytes) -> None:
        """The signature of validator ``validator`` (its index in the set in
        force at ``height``) over that block's checkpoint, for a committed
        block; BadSignature if it does not verify."""
        if height > self.chain.height:
            return
        header = self.chain.header(height)
        keys = self.verifiers(height)
        if header is None or not 0 <= validator < len(keys):
            return
        try:
            note.verify_one(keys[validator], self._text(header), sig)
        except BadSignature:
            raise BadSignature(f"validator {validator}'s checkpoint signature at height "
                               f"{height} does not verify") from None
        self._keep(height, validator, sig)

    def _keep(self, height: int, validator: int, sig: bytes) -> None:
        self.chain.add_checkpoint_signature(height, validator, sig)
        if height > self._latest and \
                len(self.chain.checkpoint_signatures(height)) >= self.quorum(height):
            self._latest = height

    def short_of_quorum(self) -> list[int]:
        """Recent committed heights holding fewer than a quorum of
        signatures here, newest first, at most :data:`WANT_PER_ASK` (the tip
        too: a chain may commit nothing more for a while)."""
        tip = self.chain.height
        out: list[int] = []
        for h in range(tip, max(0, tip - LOOK_BACK), -1):
            if len(self.chain.checkpoint_signatures(h)) < self.quorum(h):
                out.append(h)
                if len(out) == WANT_PER_ASK:
                    break
        return out

    def held(self, heights: Sequence[int]) -> list[tuple[int, int, bytes]]:
        """Every signature kept for ``heights``, as a ``sigs`` answer lists them."""
        return [(h, v, sig) for h in heights if h <= self.chain.height
                for v, sig in sorted(self.chain.checkpoint_signatures(h).items())]

    def relayed(self, sigs: Sequence[tuple[int, int, bytes]]) -> int:
        """Signatures a peer relayed: each verified against its validator's
        key and kept; the number that did not verify (the caller counts them)."""
        bad = 0
        for height, validator, sig in sigs:
            if height > self.chain.height:
                continue  # not for a block we hold; asked for committed ones only
            try:
                self.offer(validator, height, sig)
            except BadSignature:
                bad += 1
        return bad

    def latest_height(self) -> int:
        if not self._scanned:
            self._scanned = True
            tip = self.chain.height
            for h in range(tip, max(0, tip - LOOK_BACK), -1):
                if h <= self._latest:
                    break
                if len(self.chain.checkpoint_signatures(h)) >= self.quorum(h):
                    self._latest = h
                    break
        return self._latest

    def note_at(self, height: int) -> bytes:
        """The signed note of block ``height``; NotFound unless a quorum signed."""
        header = self.chain.header(height)
        if header is None:
            raise NotFound(f"no block at height {height} (tip is {self.chain.height})")
        sigs = self.chain.checkpoint_signatures(height)
        if len(sigs) < self.quorum(height):
            raise NotFound(f"the checkpoint of block {height} has {len(sigs)} validator "
                           f"signatures here; {self.quorum(height)} are needed")
        signed = note.format_note(self._text(header), sigs, self.verifiers(height))
        return signed + b"".join(line + b"\n" for line in self._witnessed(height))

    def _witnessed(self, height: int) -> list[bytes]:
        """Kept cosignature lines of witnesses still trusted, in key id order."""
        trusted = {(w.name, w.key_id) for w in self.witnesses}
        out = []
        for line in self.chain.witness_cosignatures(height):
            name, blob = line.decode()[len(witness.SIG_PREFIX):].split(" ")
            if (name, note_blob_id(blob)) in trusted:
                out.append(line)
        return out

    def witness_cosign(self, height: int, body: bytes) -> witness.Cosignature:
        """A witness's cosignature of block ``height``'s checkpoint (one
        signature line), verified against the trusted witnesses and kept.
        NotFound without the block; NoteError or BadSignature if refused."""
        header = self.chain.header(height)
        if header is None:
            raise NotFound(f"no block at height {height} (tip is {self.chain.height})")
        try:
            line = body.decode("utf-8").removesuffix("\n")
        except UnicodeDecodeError:
            raise note.NoteError("a cosignature is UTF-8 text") from None
        cosig = witness.verify_line(line, self.witnesses, self._text(header))
        self.chain.add_witness_cosignature(height, cosig.witness.key_id, line.encode())
        return cosig

    def latest(self) -> tuple[int, bytes]:
        height = self.latest_height()
        if height < 1:
            raise NotFound("no checkpoint carries a quorum of signatures yet")
        return height, self.note_at(height)
