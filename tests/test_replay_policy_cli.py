"""``ledger-audit replay-policy`` (client/audit/replay_cmd.py) over the block
route's answers (GET /v1/blocks/{h}?envelopes=1 with the verdict entries of
version 2 blocks): agreement, and the first disagreement named with exit 1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from policy_fakes import LimitPolicy
from test_verdicts import Keys, _chain, _commit, _genesis, _pay

from client.audit import replay_cmd
from client.audit.cli import main
from node.api_chain import ChainRoutes


class FakeClient:
    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.routes = ChainRoutes(self)  # type: ignore[arg-type]

    async def block(self, height: int | str, envelopes: bool = False) -> dict[str, Any]:
        h = self.chain.height if height == "latest" else int(height)
        return self.routes._block(h, envelopes)


@pytest.fixture
def chain_and_genesis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    keys = Keys()
    chain = _chain(keys, LimitPolicy())
    _commit(chain, keys, [_pay(keys.subs[0], 1, 50), _pay(keys.subs[0], 2, 50_000)])
    _commit(chain, keys, [_pay(keys.subs[4], 3, 5, "blocked")])
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(_genesis(keys).raw))
    fake = FakeClient(chain)
    monkeypatch.setattr(replay_cmd, "_run",
                        lambda nodes, as_json, work: asyncio.run(work(fake)))
    return chain, path


def test_replay_agrees_with_the_committed_verdicts(
        chain_and_genesis: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, genesis = chain_and_genesis
    monkeypatch.setattr(replay_cmd, "load_policy_engine", lambda: LimitPolicy())
    out = CliRunner().invoke(main, ["replay-policy", "--genesis", str(genesis), "--node",
                                    "http://x", "--from", "1", "--to", "2", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["agree"] and doc["records_compared"] == 3 and doc["policy_version"] == 1


def test_replay_names_the_first_disagreement(
        chain_and_genesis: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    chain, genesis = chain_and_genesis
    monkeypatch.setattr(replay_cmd, "load_policy_engine",
                        lambda: LimitPolicy(deny_kind="nothing"))
    out = CliRunner().invoke(main, ["replay-policy", "--genesis", str(genesis), "--node",
                                    "http://x"])
    assert out.exit_code != 0
    blocked = chain.block_record_ids(2)[0].hex()
    assert "block 2, entry 0" in out.output and blocked in out.output.replace("\n", "")


class RecordClient(FakeClient):
    """Also ``GET /v1/records/{id}``'s envelope (what the replay fetches for
    the records alerts flag); ``lie`` serves another record instead."""

    def __init__(self, chain: Any, lie: bool = False) -> None:
        super().__init__(chain)
        self.lie = lie
        self.fetched: list[str] = []

    async def record(self, record_id: str) -> dict[str, Any]:
        from ledger.encoding import to_b64
        self.fetched.append(record_id)
        raw = self.chain.envelope_at(0) if self.lie else self.chain.envelope(
            bytes.fromhex(record_id))
        return {"id": record_id, "envelope": to_b64(raw)}


@pytest.mark.parametrize("lie", [False, True])
def test_replay_derives_breaker_reviews_fetching_the_flagged_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: bool) -> None:
    from test_breaker_verdicts import MON_A, MON_B, PAYER, SHOP, _alert, _env
    from test_breaker_verdicts import _chain as breaker_chain
    from test_breaker_verdicts import _commit as breaker_commit

    from ledger.policy import PolicyEngine
    chain = breaker_chain()
    first = _env(SHOP, account="other")
    flagged = _env(SHOP, account="mule")
    breaker_commit(chain, [first, flagged])
    breaker_commit(chain, [_alert(MON_A, flagged), _alert(MON_B, flagged)])
    held = _env(PAYER, "transfer", account="mule")
    breaker_commit(chain, [held])
    assert chain.record_verdict(held.id).verdict.rule == "breaker:account:mule"  # type: ignore[union-attr]
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(chain.genesis.raw))
    fake = RecordClient(chain, lie)
    monkeypatch.setattr(replay_cmd, "_run", lambda nodes, as_json, work: asyncio.run(work(fake)))
    monkeypatch.setattr(replay_cmd, "load_policy_engine", PolicyEngine)
    out = CliRunner().invoke(main, ["replay-policy", "--genesis", str(path), "--node",
                                    "http://x", "--json"])
    assert fake.fetched == [flagged.id.hex()]  # once, for both alerts
    if lie:
        assert out.exit_code == 1 and "another record" in out.output
    else:
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["records_compared"] == 5
