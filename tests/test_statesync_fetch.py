"""A joining node's choice of snapshot (node/statesync.py): peers serving a
tampered frontier or certificate are skipped; with none that verifies, the
node falls back to replaying blocks."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgpack
import pytest
from helpers import World, certify, commit_envelopes

from ledger.chain import ChainStore
from ledger.genesis import Validator
from ledger.statesync import Snapshot
from ledger.storage import MemoryStore
from node.statesync import SNAPSHOT_PATH, fetch_snapshot


def snapshot_of(world: World, blocks: int) -> Snapshot:
    chain = ChainStore(MemoryStore(), world.genesis)
    for b in range(blocks):
        commit_envelopes(chain, world.envelopes(b * 40, 40), world.validators)
    tip = chain.tip()
    assert tip is not None
    cert = chain.certificate(tip.height)
    assert cert is not None
    size, tails = chain.log.frontier()
    return Snapshot(tip.header_bytes, cert.to_bytes(), size, tails)


def body(s: Snapshot) -> bytes:
    return msgpack.packb({"header": s.header_bytes, "certificate": s.certificate_bytes,  # type: ignore[no-any-return]
                          "log_size": s.log_size, "tails": list(s.tails)}, use_bin_type=True)


@pytest.fixture
def peers() -> Iterator[tuple[list[bytes], list[Validator], list[list[str]]]]:
    """Three HTTP servers answering SNAPSHOT_PATH with bodies[i]; seen[i]
    lists the paths each was asked."""
    bodies: list[bytes] = [b"", b"", b""]
    seen: list[list[str]] = [[], [], []]
    servers: list[ThreadingHTTPServer] = []
    validators = []
    for i in range(3):
        def handler(i: int = i) -> type[BaseHTTPRequestHandler]:
            class H(BaseHTTPRequestHandler):
                def do_GET(self) -> None:  # noqa: N802
                    seen[i].append(self.path)
                    data = bodies[i]
                    self.send_response(200 if self.path == SNAPSHOT_PATH else 404)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, format: str, *args: Any) -> None:
                    pass
            return H
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler())
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        validators.append(Validator(i, f"node{i}", bytes(32),
                                    f"127.0.0.1:{srv.server_address[1]}"))
    yield bodies, validators, seen
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_highest_verified_snapshot_wins_and_tampered_ones_are_skipped(
        world: World, peers: tuple[list[bytes], list[Validator], list[list[str]]]) -> None:
    bodies, validators, seen = peers
    good = snapshot_of(world, 8)       # 320 leaves: two strata
    higher = snapshot_of(world, 9)
    bad_tail = bytearray(higher.tails[0])
    bad_tail[0] ^= 1
    # Peer 0: higher, but its frontier is tampered.  Peer 1: good.  Peer 2:
    # a higher header with a certificate of too few validators.
    bodies[0] = body(dataclasses.replace(higher, tails=(bytes(bad_tail), *higher.tails[1:])))
    bodies[1] = body(good)
    from ledger.blocks import decode_header
    header = decode_header(higher.header_bytes)
    weak = certify(header, world.validators, world.genesis, signers=[0, 1])
    bodies[2] = body(dataclasses.replace(higher, certificate_bytes=weak.to_bytes()))
    chosen = fetch_snapshot(world.genesis, validators, lambda peer, target: {}, timeout_s=5)
    assert chosen == good
    assert all(s == [SNAPSHOT_PATH] for s in seen)
    # Every peer lying (or not MessagePack): none chosen, the node replays blocks.
    bodies[1] = b"\xc1not msgpack"
    assert fetch_snapshot(world.genesis, validators, lambda peer, target: {}, timeout_s=5) is None


async def test_a_changed_validator_set_makes_the_node_join_by_blocks_at_once(
        peers: tuple[list[bytes], list[Validator], list[list[str]]],
        caplog: pytest.LogCaptureFixture) -> None:
    """Every peer's tip names the set governance made (5 validators): no
    snapshot can be checked against genesis, so the node replays blocks,
    without the rounds of retries a missing snapshot gets, and says why."""
    from test_statesync_governance import set_change_chain

    from ledger.statesync import ValidatorSetChanged
    from node.statesync import join_by_snapshot

    bodies, validators, seen = peers
    genesis, src, _ = set_change_chain()
    header, cert = src.header(5), src.certificate(5)
    assert header is not None and cert is not None
    changed = Snapshot(header.header_bytes, cert.to_bytes(), header.log_size, ())
    for i in range(3):
        bodies[i] = body(changed)
    with pytest.raises(ValidatorSetChanged):
        fetch_snapshot(genesis, validators, lambda peer, target: {}, timeout_s=5)
    bodies[0] = b"\xc1not msgpack"  # one liar among them changes nothing
    store = MemoryStore()
    caplog.set_level("INFO", logger="node.statesync")
    assert await join_by_snapshot(store, genesis, validators, lambda peer, target: {}) == 0
    assert next(iter(store.iterate(b"")), None) is None
    assert [len(s) for s in seen] == [2, 2, 2]  # one round each, not SNAPSHOT_ROUNDS
    assert any("the validator set has changed since genesis" in r.getMessage()
               and "falls back to blocks" in r.getMessage() for r in caplog.records)
