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
