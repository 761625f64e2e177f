"""Version 2 bundles (PROTOCOL §9.6): a record committed after validator-set
changes and key rotations verifies from the first genesis alone, walking the
changes like a light client; tampering fails at the named step."""

from __future__ import annotations

import copy
import json
from typing import Any, Sequence

import pytest
from govhelpers import EXTRA_SEED_BASE, gov_genesis, gov_record
from helpers import certify, make_envelope, make_keys
from memchain import MemChain

from ledger import merkle
from ledger.blocks import ZERO_HASH, Header
from ledger.crypto import SigningKey
from ledger.errors import VerificationError
from ledger.membership import Membership
from ledger.proofs import build_bundle, build_bundle_v2
from ledger.records import Envelope
from ledger.verify import verify_bundle
from ledger.verify_epochs import V2_STEPS, EpochCache, verify_bundle_v2

GENESIS, VKEYS, MKEYS, SKEY = gov_genesis(4, 3)
CHAIN = GENESIS.chain
NEW = make_keys(6, EXTRA_SEED_BASE)
KEYS = {k.public_key: k for k in VKEYS + NEW + MKEYS + [SKEY]}


class EpochChain(MemChain):
    """A MemChain whose headers carry, and whose certificates come from, the
    validator set in force at each height, applying governance as it commits."""

    def __init__(self) -> None:
        super().__init__(GENESIS, VKEYS)
        self.membership = Membership.from_genesis(GENESIS)

    def commit(self, envelopes: Sequence[Envelope], **_: Any) -> Header:  # type: ignore[override]
        height = self.height + 1
        epoch = self.membership.at(height).as_genesis(GENESIS)
        leaves = [e.leaf_hash for e in envelopes]
        for env in envelopes:
            self.locations[env.id] = (height, len(self.envelopes))
            self.envelopes.append(env.envelope_bytes)
        self.log.leaf_hashes.extend(leaves)
        header = Header(
            chain=CHAIN, height=height,
            prev=self.headers[-1].hash if self.headers else ZERO_HASH,
            time=1_700_000_000_000 + height, proposer=(height - 1) % epoch.n,
            tx_count=len(envelopes), tx_root=merkle.root(leaves), log_size=self.log.size,
            log_root=self.log.root(), validators=epoch.validators_hash,
        )
        self.headers.append(header)
        self.certificates.append(certify(header, [KEYS[k] for k in epoch.validator_keys], epoch))
        self.membership = self.membership.apply(height, list(envelopes))
        return header


def gov(nonce: int, kind: str, **body: Any) -> Envelope:
    return gov_record(CHAIN, MKEYS[:2], nonce, kind, body)


def build() -> tuple[EpochChain, dict[str, Envelope]]:
    """4 validators -> 5 (add) -> rotate one key -> 4 (remove); a submitter
    added, the genesis submitter re-keyed."""
    c = EpochChain()
    e: dict[str, Envelope] = {}
    e["early"] = make_envelope(SKEY, CHAIN, 1)
    c.commit([e["early"]])                                                     # 1
    e["add_v"] = gov(1, "gov.validator.add", name="v4", pubkey=NEW[0].public_key,
                     address="10.0.0.4:7700")
    c.commit([e["add_v"]])                                                     # 2 (5 from 4)
    c.commit([make_envelope(SKEY, CHAIN, 2)])                                  # 3
    e["rotate_v"] = gov(2, "gov.validator.rotate", pubkey=VKEYS[1].public_key,
                        new_pubkey=NEW[1].public_key)
    e["add_s"] = gov(3, "gov.submitter.add", name="s2", pubkey=NEW[2].public_key,
                     roles=["submit"])
    c.commit([e["rotate_v"], e["add_s"]])                                      # 4 (rotate from 6)
    e["old_key_before"] = make_envelope(SKEY, CHAIN, 3)
    c.commit([make_envelope(NEW[2], CHAIN, 1), e["old_key_before"]])           # 5
    e["remove_v"] = gov(4, "gov.validator.remove", pubkey=VKEYS[2].public_key)
    e["rotate_s"] = gov(5, "gov.submitter.rotate", pubkey=SKEY.public_key,
                        new_pubkey=NEW[3].public_key)
    c.commit([e["remove_v"], e["rotate_s"]])                                   # 6 (4 from 8)
    c.commit([make_envelope(NEW[3], CHAIN, 1)])                                # 7
    e["target"] = make_envelope(NEW[3], CHAIN, 2, body={"amount": 7})
    e["s2"] = make_envelope(NEW[2], CHAIN, 2)
    e["old_key_after"] = make_envelope(SKEY, CHAIN, 9)  # an honest quorum would refuse it
    c.commit([e["target"], e["s2"], e["old_key_after"]])                       # 8
    return c, e


CHAIN_, ENVS = build()


def bundle_for(name: str) -> dict[str, Any]:
    env = ENVS[name]
    height, _ = CHAIN_.locations[env.id]
    ids = CHAIN_.membership.proof_ids(env.record.submitter, height)
    return json.loads(json.dumps(build_bundle_v2(CHAIN_, env.id, ids)))


def test_the_chain_changed_sets() -> None:
    m = CHAIN_.membership
    sizes = [len(m.at(h).validators) for h in range(1, 9)]
    assert sizes == [4, 4, 4, 5, 5, 5, 5, 4]
    assert len({m.at(h).validators_hash for h in (1, 4, 6, 8)}) == 4


def test_record_after_three_set_changes_verifies_from_the_first_genesis() -> None:
    bundle = bundle_for("target")
    assert bundle["format"] == "auditledger-proof/2"
    # the three validator changes and the two records behind the submitter's key
    carried = [b["record_id"] for b in bundle["governance"]]
    assert carried == [ENVS[n].id.hex() for n in ("add_v", "rotate_v", "remove_v", "rotate_s")]
    verified = verify_bundle(bundle, GENESIS.raw)  # the JSON genesis, as an auditor holds it
    assert verified.record_id == ENVS["target"].id and verified.height == 8
    assert verified.submitter_name == "demo"
    verify_bundle(bundle_for("s2"), GENESIS)
    assert [b["record_id"] for b in bundle_for("s2")["governance"]][-2:] == [
        ENVS["add_s"].id.hex(), ENVS["remove_v"].id.hex()]


def test_version_1_bundles_keep_verifying_in_the_genesis_epoch() -> None:
    verify_bundle(build_bundle(CHAIN_, ENVS["early"].id), GENESIS)
    verify_bundle(bundle_for("early"), GENESIS)  # version 2 with no governance to walk
    assert bundle_for("early")["governance"] == []
    with pytest.raises(VerificationError) as err:  # a later epoch needs version 2
        verify_bundle(build_bundle(CHAIN_, ENVS["old_key_before"].id), GENESIS)
    assert err.value.step == "validators"


def test_governance_records_verify_too() -> None:
    verify_bundle(bundle_for("remove_v"), GENESIS)


def _fails_at(bundle: dict[str, Any], step: str) -> VerificationError:
    with pytest.raises(VerificationError) as err:
        verify_bundle_v2(bundle, GENESIS)
    assert err.value.step == step, err.value
    assert step in V2_STEPS
    return err.value


def test_tampered_epoch_proof() -> None:
    bundle = bundle_for("target")
    path = bundle["governance"][1]["inclusion"]
    path[0] = ("0" if path[0][0] != "0" else "1") + path[0][1:]
    _fails_at(bundle, "epoch_inclusion")


def test_change_certified_by_the_wrong_set() -> None:
    """The removal (block 6, five validators with validator 1 re-keyed) with a
    certificate signed by the genesis keys: validator 1's old key no longer counts."""
    bundle = bundle_for("target")
    entry = bundle["governance"][2]
    assert entry["record_id"] == ENVS["remove_v"].id.hex()
    header = CHAIN_.headers[5]
    epoch5 = CHAIN_.membership.at(6).as_genesis(GENESIS)
    old_keys = [VKEYS[0], VKEYS[1], VKEYS[2], VKEYS[3], NEW[0]]  # index 1 is the rotated-out key
    entry["certificate"] = certify(header, old_keys, epoch5, signers=[0, 1, 2, 3]).to_json()
    err = _fails_at(bundle, "epoch_certificate")
    assert "governance[2]" in str(err)
    # and a certificate of the genesis set of four for it is short of the quorum of five
    entry["certificate"] = certify(header, VKEYS, GENESIS).to_json()
    _fails_at(bundle, "epoch_certificate")


def test_an_omitted_validator_change_is_caught() -> None:
    bundle = bundle_for("target")
    del bundle["governance"][1]  # drop the rotation
    _fails_at(bundle, "epoch_header")


def test_forged_governance_record_fails() -> None:
    bundle = bundle_for("target")
    forged = gov_record(CHAIN, MKEYS[:1], 77, "gov.validator.add",
                        {"name": "x", "pubkey": NEW[5].public_key, "address": ""})
    mini = MemChain(GENESIS, VKEYS)
    mini.commit([forged])  # certified by the genesis set, but signed by one member
    bundle["governance"][0] = json.loads(json.dumps(build_bundle(mini, forged.id)))
    err = _fails_at(bundle, "governance_record")
    assert err.code == "too_few_signatures"


def test_out_of_order_entries() -> None:
    bundle = bundle_for("target")
    bundle["governance"][0], bundle["governance"][1] = (bundle["governance"][1],
                                                        bundle["governance"][0])
    _fails_at(bundle, "epoch_header")  # the rotation's block is not in the genesis epoch
    bundle = bundle_for("target")
    bundle["governance"].insert(1, copy.deepcopy(bundle["governance"][0]))
    _fails_at(bundle, "governance_order")


def test_submitter_after_its_key_rotation() -> None:
    verify_bundle_v2(bundle_for("old_key_before"), GENESIS)  # before the rotation: valid
    err = _fails_at(bundle_for("old_key_after"), "submitter")
    assert err.code == "key_rotated"


def test_record_block_and_shape() -> None:
    bundle = bundle_for("target")
    _fails_at(dict(bundle, leaf_index=bundle["leaf_index"] - 3), "record_block")
    _fails_at(dict(bundle, governance="x"), "bundle")
    _fails_at(dict(bundle, format="auditledger-proof/3"), "format")
    broken = copy.deepcopy(bundle)
    del broken["governance"][0]["certificate"]
    _fails_at(broken, "governance_bundle")


def test_cache_verifies_each_change_once() -> None:
    cache = EpochCache(GENESIS)
    verify_bundle_v2(bundle_for("target"), GENESIS, cache)
    assert len(cache.walks) == 4
    verify_bundle_v2(bundle_for("s2"), GENESIS, cache)  # shares the first two entries
    assert len(cache.walks) == 6


def test_ledger_audit_verify_takes_a_version_2_bundle(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from client.audit.cli import main

    (tmp_path / "b.json").write_text(json.dumps(bundle_for("target")))
    (tmp_path / "g.json").write_text(json.dumps(GENESIS.raw))
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "b.json"), "--genesis",
                                       str(tmp_path / "g.json"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["height"] == 8
    verified = verify_bundle(bundle_for("target"), GENESIS)
    assert verified.epoch is not None and verified.epoch.n == 4
    assert verified.epoch.validator_keys[1] == NEW[1].public_key  # the rotated key's index
    broken = bundle_for("target")
    del broken["governance"][0]
    (tmp_path / "b.json").write_text(json.dumps(broken))
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "b.json"), "--genesis",
                                       str(tmp_path / "g.json"), "--json"])
    assert result.exit_code != 0 and "epoch_header" in result.output
