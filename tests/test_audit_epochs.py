"""``ledger-audit audit``, ``trace`` and ``checkpoint`` on a chain whose
validator set changed (4 -> 5 -> one key rotated -> 4), from the original
genesis alone (issue 23 item 6); checkpoints keyed by the genesis digest, so
two chains sharing a chain id never collide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fakenode import FakeNode
from helpers import genesis_doc, make_envelope, make_keys
from memchain import MemChain
from test_verify_epochs import GENESIS, NEW, SKEY, VKEYS, EpochChain, gov

from client.audit.cli import main
from ledger.audit import ChainAuditor
from ledger.checkpoint import genesis_digest
from ledger.errors import KeyRotated, VerificationError
from ledger.genesis import parse_genesis
from ledger.proofs import build_bundle_v2

CHAIN = GENESIS.chain


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


class EpochNode(FakeNode):
    """The fake node, plus what a governed node serves: version 2 proofs
    and traces, and ``GET /v1/membership?height=H`` (PROTOCOL §9)."""

    chain: EpochChain

    def v2(self, rid: bytes) -> dict[str, Any]:
        location = self.chain.record_location(rid)
        if location is None:
            raise LookupError(rid.hex())
        height = location[0]
        submitter = next(e.record.submitter for e in self._envelopes() if e.id == rid)
        return build_bundle_v2(self.chain, rid, self.chain.membership.proof_ids(submitter, height))

    def _envelopes(self) -> list[Any]:
        from ledger.records import decode_envelope

        return [decode_envelope(r, cosigs=True) for r in self.chain.envelopes]

    def answer(self, path: str, query: dict[str, list[str]]) -> Any:
        parts = path.strip("/").split("/")
        if parts == ["v1", "membership"]:
            height = int(query["height"][0]) if "height" in query else self.chain.height
            return dict(self.chain.membership.at(height).to_json(), height=height)
        if parts[:2] == ["v1", "records"] and len(parts) == 4 and parts[3] == "proof":
            return self.v2(bytes.fromhex(parts[2]))
        doc = super().answer(path, query)
        if parts[:2] == ["v1", "records"] and len(parts) == 4 and parts[3] == "trace":
            doc["bundles"] = [self.v2(bytes.fromhex(b["record_id"])) for b in doc["bundles"]]
        return doc


def build(upto: int = 9) -> tuple[EpochChain, dict[str, Any]]:
    """4 validators -> 5 (added at 2, in force from 4) -> one key rotated (at
    4, from 6) -> 4 (removed at 6, from 8); records in every epoch, the last
    one's parents reaching back to block 1."""
    c = EpochChain()
    e: dict[str, Any] = {}
    steps: list[list[Any]] = []
    e["early"] = make_envelope(SKEY, CHAIN, 1)
    steps.append([e["early"]])                                                         # 1
    steps.append([gov(1, "gov.validator.add", name="v4", pubkey=NEW[0].public_key,
                      address="10.0.0.4:7700")])                                        # 2
    steps.append([make_envelope(SKEY, CHAIN, 2)])                                      # 3
    steps.append([gov(2, "gov.validator.rotate", pubkey=VKEYS[1].public_key,
                      new_pubkey=NEW[1].public_key),
                  gov(3, "gov.submitter.add", name="s2", pubkey=NEW[2].public_key,
                      roles=["submit"])])                                               # 4
    e["mid"] = make_envelope(NEW[2], CHAIN, 1, parents=[e["early"].id])
    steps.append([e["mid"]])                                                           # 5
    steps.append([gov(4, "gov.validator.remove", pubkey=VKEYS[2].public_key)])          # 6
    steps.append([make_envelope(SKEY, CHAIN, 3)])                                      # 7
    e["late"] = make_envelope(NEW[2], CHAIN, 2, parents=[e["mid"].id])
    steps.append([e["late"]])                                                          # 8
    steps.append([make_envelope(SKEY, CHAIN, 4)])                                      # 9
    for block in steps[:upto]:
        c.commit(block)
    return c, e


def raw_at(chain: MemChain, height: int) -> list[bytes]:
    """The envelope bytes of block ``height``."""
    header = chain.header(height)
    assert header is not None
    first = header.log_size - header.tx_count
    return [chain.envelope_at(i) for i in range(first, header.log_size)]


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(GENESIS.raw))
    return path


def test_the_chain_changes_its_validator_set() -> None:
    chain, _ = build()
    sizes = [len(chain.membership.at(h).validators) for h in range(1, 10)]
    assert sizes == [4, 4, 4, 5, 5, 5, 5, 4, 4]


def test_audit_walks_every_epoch_from_the_first_genesis(genesis_file: Path, tmp_path: Path) -> None:
    chain, _ = build()
    with EpochNode(chain) as node:
        res = run("audit", "--node", node.url, "--genesis", genesis_file, "--json",
                  "--checkpoint-file", tmp_path / "cp.json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["valid"] is True and doc["height"] == 9 and doc["governance_records"] == 4
    assert [e["from_height"] for e in doc["validator_sets"]] == [1, 4, 6, 8]
    assert doc["by_submitter"] == {"demo": 4, "s2": 2, "org0": 4}
    # the checkpoint the audit left is at the last epoch, with its proof
    stored = json.loads((tmp_path / "cp.json").read_text())
    entry = stored[f"genesis:{genesis_digest(GENESIS)}"]
    assert entry["height"] == 9 and len(entry["epoch_proof"]) == 3


def test_audit_refuses_a_record_of_a_key_rotated_out() -> None:
    """Judged against the membership in force: the genesis submitter's key,
    rotated out at 6 (from 7), signs nothing that counts at 8."""
    chain, _ = build(7)
    chain.commit([gov(5, "gov.submitter.rotate", pubkey=SKEY.public_key,
                      new_pubkey=NEW[3].public_key)])                                   # 8
    chain.commit([make_envelope(SKEY, CHAIN, 9)])                                      # 9
    auditor = ChainAuditor(GENESIS)
    for h in range(1, 9):
        auditor.check_block(chain.header(h).header_bytes, chain.certificate(h),  # type: ignore[union-attr]
                            raw_at(chain, h))
    with pytest.raises(KeyRotated):
        auditor.check_block(chain.header(9).header_bytes, chain.certificate(9),  # type: ignore[union-attr]
                            raw_at(chain, 9))
    assert auditor.height == 8


def test_trace_across_epochs_labels_validators_of_each_epoch(genesis_file: Path) -> None:
    chain, e = build()
    with EpochNode(chain) as node:
        res = run("trace", e["late"].id.hex(), "--node", node.url, "--genesis", genesis_file)
        doc = json.loads(run("trace", e["late"].id.hex(), "--node", node.url, "--genesis",
                             genesis_file, "--json").output)
    assert res.exit_code == 0, res.output
    assert "VALID 3 records verified" in res.output
    assert {h["height"] for h in doc["hops"]} == {1, 5, 8}
    # indexes refer to the set in force at each block: at 8, after node2's
    # removal, #2 is node3 (a genesis-only label would have said node2)
    fp = VKEYS[3].public_key[:8].hex()
    assert f"#2 (key {fp})" in res.output and f"validator #2 (key {fp}): node3" in res.output
    rotated = NEW[1].public_key[:8].hex()
    assert f"validator #1 (key {rotated}): node1 (key from a governance record)" in res.output
    assert "s2 (named by a governance record)" in res.output
    with EpochNode(chain) as node:
        dot = run("trace", e["late"].id.hex(), "--node", node.url, "--genesis", genesis_file,
                  "--format", "dot")
    assert dot.exit_code == 0 and "certified by #0 #1 #2 #3" in dot.output  # block 5: 5 validators


def test_checkpoint_across_validator_changes(genesis_file: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    chain, _ = build(3)
    with EpochNode(chain) as node:
        first = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp)
        assert first.exit_code == 0 and "TRUSTED first checkpoint: height 3" in first.output
        full, _ = build()
        for h in range(4, 10):
            chain.commit(_envelopes(full, h))
        second = run("checkpoint", "--node", node.url, "--genesis", genesis_file,
                     "--checkpoint-file", cp, "--json")
        assert second.exit_code == 0, second.output
        doc = json.loads(second.output)
        assert doc["height"] == 9 and doc["previous_height"] == 3
        assert doc["epoch_proof_records"] == 3
        # signers are indexes into the set in force at 9: node0, node1's new
        # key, node3, v4 (node2 removed)
        at9 = [v.pubkey for v in chain.membership.at(9).validators]
        assert at9 == [VKEYS[0].public_key, NEW[1].public_key, VKEYS[3].public_key, NEW[0].public_key]
        assert [bytes.fromhex(v["pubkey"]) for v in doc["certified_by_validators"]] == \
            [at9[v["index"]] for v in doc["certified_by_validators"]]
        assert NEW[1].public_key.hex() in {v["pubkey"] for v in doc["certified_by_validators"]}
        # consistency between blocks of two epochs, from the genesis file
        cons = run("consistency", "2", "9", "--node", node.url, "--genesis", genesis_file)
        assert cons.exit_code == 0 and "CONSISTENT block 2" in cons.output, cons.output
        # the stored later-epoch head is re-checked from genesis on the next run
        third = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp)
        assert third.exit_code == 0 and "CONSISTENT height 9 → 9" in third.output
        # a node that hides the last validator change cannot pass a later head off
        node.override["/v1/membership"] = (200, json.dumps(
            dict(chain.membership.at(5).to_json())).encode())
        cp2 = tmp_path / "cp2.json"
        hidden = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp2)
        assert hidden.exit_code == 1 and "INVALID" in hidden.output
        assert not cp2.exists()


def _envelopes(chain: EpochChain, height: int) -> list[Any]:
    from ledger.records import decode_envelope

    return [decode_envelope(r, cosigs=True) for r in raw_at(chain, height)]


def test_stored_head_that_no_longer_verifies_is_an_unusable_file(genesis_file: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    chain, _ = build()
    with EpochNode(chain) as node:
        assert run("checkpoint", "--node", node.url, "--genesis", genesis_file,
                   "--checkpoint-file", cp).exit_code == 0
        doc = json.loads(cp.read_text())
        key = f"genesis:{genesis_digest(GENESIS)}"
        doc[key]["epoch_proof"] = doc[key]["epoch_proof"][:1]  # a changed proof
        cp.write_text(json.dumps(doc))
        res = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp)
    assert res.exit_code == 2 and "no longer verifies" in res.output


# --------------------------------------------------------------------------
# Two chains, one chain id
# --------------------------------------------------------------------------

OTHER_VALIDATORS = make_keys(4, 5_000_000)
OTHER_SUBMITTER = make_keys(1, 5_100_000)[0]
OTHER_DOC = genesis_doc(OTHER_VALIDATORS, [OTHER_SUBMITTER], CHAIN)  # same chain id "test"
OTHER = parse_genesis(OTHER_DOC)


def other_chain() -> MemChain:
    chain = MemChain(OTHER, OTHER_VALIDATORS)
    chain.commit([make_envelope(OTHER_SUBMITTER, CHAIN, n) for n in range(3)])
    chain.commit([make_envelope(OTHER_SUBMITTER, CHAIN, 3)])
    return chain


def test_two_chains_with_one_chain_id_do_not_collide(genesis_file: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(OTHER_DOC))
    chain, _ = build(5)
    with EpochNode(chain) as a, FakeNode(other_chain()) as b:
        ra = run("checkpoint", "--node", a.url, "--genesis", genesis_file, "--checkpoint-file", cp)
        rb = run("checkpoint", "--node", b.url, "--genesis", other_file, "--checkpoint-file", cp)
        assert ra.exit_code == 0 and rb.exit_code == 0, (ra.output, rb.output)
        assert "FORK" not in rb.output and "TRUSTED first checkpoint" in rb.output
        assert set(json.loads(cp.read_text())) == {f"genesis:{genesis_digest(GENESIS)}",
                                                    f"genesis:{genesis_digest(OTHER)}"}
        assert "CONSISTENT" in run("checkpoint", "--node", a.url, "--genesis", genesis_file,
                                   "--checkpoint-file", cp).output


def test_old_checkpoint_files_keyed_by_chain_id(genesis_file: Path, tmp_path: Path) -> None:
    """An entry an older ledger-audit kept under the chain id: moved when this
    genesis certifies it, ignored (with a notice, no FORK) when it does not."""
    chain, _ = build(3)
    with EpochNode(chain) as a, FakeNode(other_chain()) as b:
        old_style = {CHAIN: b.answer("/v1/blocks/latest", {}) | {"chain": CHAIN}}
        cp = tmp_path / "old.json"
        cp.write_text(json.dumps(old_style))
        res = run("checkpoint", "--node", a.url, "--genesis", genesis_file, "--checkpoint-file", cp)
        assert res.exit_code == 0, res.output
        assert "FORK" not in res.output and "TRUSTED" in res.output
        assert "ignored the checkpoint kept under chain id" in res.output
        assert CHAIN in json.loads(cp.read_text())  # left alone: it is another chain's
        mine = tmp_path / "mine.json"
        mine.write_text(json.dumps({CHAIN: a.answer("/v1/blocks/2", {})}))
        res = run("checkpoint", "--node", a.url, "--genesis", genesis_file, "--checkpoint-file", mine)
        assert res.exit_code == 0 and "CONSISTENT height 2 → 3" in res.output, res.output
        assert "moved the checkpoint" in res.output
        assert set(json.loads(mine.read_text())) == {f"genesis:{genesis_digest(GENESIS)}"}


def test_audit_refuses_a_block_with_an_invalid_governance_record() -> None:
    """One member's signature where the threshold is 2: the block is invalid
    (a quorum signed it, yet honest validators would not have)."""
    from govhelpers import gov_record
    from test_verify_epochs import MKEYS

    from ledger.errors import TooFewSignatures

    chain = MemChain(GENESIS, VKEYS)
    chain.commit([make_envelope(SKEY, CHAIN, 1)])
    chain.commit([gov_record(CHAIN, MKEYS[:1], 1, "gov.validator.add",
                             {"name": "v4", "pubkey": NEW[0].public_key, "address": "x:1"})])
    auditor = ChainAuditor(GENESIS)
    auditor.check_block(chain.header(1).header_bytes, chain.certificate(1),  # type: ignore[union-attr]
                        raw_at(chain, 1))
    with pytest.raises(TooFewSignatures):
        auditor.check_block(chain.header(2).header_bytes, chain.certificate(2),  # type: ignore[union-attr]
                            raw_at(chain, 2))
    assert auditor.height == 1 and auditor.membership.changes == ()
