"""Demo feeder: a stream of signed micro-transactions with lineage.

``python -m harness.feeder --dir .demo [--once]`` signs records with
``keys/demo.json`` and submits them with the client SDK (MessagePack
batches; refusals such as ``rate_limited`` are retried with the same signed
bytes on another node): payments from several origins, settlements whose
parents are payments, refunds pointing at a payment.  It prints a live status line (height, records committed,
records/s), then writes one proof bundle and verifies it with
``ledger-audit verify`` against the genesis file alone.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from client.errors import LedgerClientError, SubmitUnavailable
from client.sdk import LedgerClient
from client.types import StatusDoc
from ledger.genesis import load_genesis
from ledger.records import Envelope

SYSTEMS = ["pos-terminal", "web-shop", "mobile-app", "atm-network", "marketplace"]
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "US"]
CURRENCIES = ["EUR", "EUR", "EUR", "USD"]


class Workload:
    """Deterministic-shaped records: every 10th a settlement of the previous
    payments, every 25th a refund of one of them."""

    def __init__(self, client: LedgerClient, seed: int) -> None:
        # The SDK signs: its nonces never repeat, also across runs (client/nonces.py).
        self.client = client
        self.rng = random.Random(seed)
        self.recent_payments: list[Envelope] = []
        self.counter = 0
        self.settlements: list[Envelope] = []

    def _sign(self, kind: str, origin: dict[str, str], body: dict[str, Any],
              parents: list[bytes]) -> Envelope:
        return self.client.sign(kind=kind, origin=origin, body=body, parents=parents)

    def batch(self, size: int) -> list[Envelope]:
        """``size`` records; parents always precede children within the batch."""
        out: list[Envelope] = []
        self.recent_payments = []
        for _ in range(size):
            self.counter += 1
            rng = self.rng
            if self.counter % 10 == 0 and len(self.recent_payments) >= 2:
                parents = self.recent_payments[-min(len(self.recent_payments), 9):]
                total = sum(int(p.record.body["amount"]) for p in parents)
                env = self._sign("settlement", {"system": "clearing-house", "country": "EU"},
                                 {"amount": total, "currency": "EUR", "batch": self.counter},
                                 [p.id for p in parents])
                self.settlements.append(env)
                self.recent_payments = []
            elif self.counter % 25 == 0 and self.recent_payments:
                paid = rng.choice(self.recent_payments)
                env = self._sign("refund", dict(paid.record.origin),
                                 {"amount": int(paid.record.body["amount"]),
                                  "currency": paid.record.body["currency"],
                                  "reason": "customer-return"}, [paid.id])
            else:
                env = self._sign(
                    "payment",
                    {"system": rng.choice(SYSTEMS), "country": rng.choice(COUNTRIES),
                     "account": f"acct-{rng.randrange(10_000):04d}"},
                    {"amount": rng.randrange(50, 20_000), "currency": rng.choice(CURRENCIES)},
                    [])
                self.recent_payments.append(env)
            out.append(env)
        return out


class Feeder:
    def __init__(self, directory: Path, batch: int, seed: int) -> None:
        self.dir = directory
        self.genesis = load_genesis(directory / "genesis.json")
        # ledger-cluster init makes a local CA unless --insecure-plaintext.
        ca = directory / "tls" / "ca.pem"
        scheme = "https" if ca.is_file() else "http"
        self.urls = [f"{scheme}://{v.address}" for v in self.genesis.validators]
        self.client = LedgerClient(self.urls, directory / "keys" / "demo.json", chain=self.genesis.chain,
                                   request_timeout=30, ca_file=ca if ca.is_file() else None)
        self.work = Workload(self.client, seed)
        self.batch_size = batch
        self.submitted = 0
        self.refused = 0

    async def submit(self, envelopes: list[Envelope]) -> None:
        """Submit one batch until every envelope is accepted or refused for
        good; the SDK retries refusals and failovers with the same bytes."""
        todo = [e.envelope_bytes for e in envelopes]
        while todo:
            try:
                results = await self.client.submit_envelopes(todo)
            except SubmitUnavailable as exc:
                say(f"{len(exc.unaccepted)} records not accepted yet (cluster busy or down); retrying")
                todo = exc.unaccepted
                await asyncio.sleep(1.0)
                continue
            refused = [r for r in results if "error" in r]
            if refused:
                self.refused += len(refused)
                say(f"{len(refused)} records refused: {refused[0]['error']}: {refused[0].get('message', '')}")
            self.submitted += len(results) - len(refused)
            return

    async def status(self) -> StatusDoc | None:
        try:
            return await self.client.status()
        except LedgerClientError:
            return None

    async def wait_ready(self, timeout: float = 60.0) -> StatusDoc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = await self.status()
            if st is not None and sum(p["connected"] for p in st["peers"]) + 1 >= self.genesis.quorum:
                return st
            await asyncio.sleep(0.2)
        raise click.ClickException("the cluster did not come up in time")

    async def prove(self, envelope: Envelope) -> Path:
        """Fetch the bundle of ``envelope`` once committed, write it, verify it offline."""
        rid = envelope.id.hex()
        try:
            await self.client.wait_committed(rid, timeout=60)
            bundle = await self.client.proof(rid)
        except LedgerClientError as exc:
            raise click.ClickException(f"record {rid} has no proof: {exc}") from None
        path = self.dir / "proof.json"
        path.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
        return path


def say(message: str) -> None:
    """A one-line notice on its own line (the live status line uses \\r)."""
    print(f"\n{message}", file=sys.stderr, flush=True)


def verify_offline(bundle: Path, genesis: Path) -> tuple[bool, str]:
    """``ledger-audit verify`` (falls back to ledger.verify if the CLI is absent)."""
    exe = shutil.which("ledger-audit", path=str(Path(sys.executable).parent)) or \
        shutil.which("ledger-audit")
    if exe:
        proc = subprocess.run([exe, "verify", str(bundle), "--genesis", str(genesis)],
                              capture_output=True, text=True, timeout=60)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
    from ledger.verify import verify_bundle

    v = verify_bundle(json.loads(bundle.read_text()), json.loads(genesis.read_text()))
    return True, f"valid (ledger.verify): leaf {v.leaf_index}"


async def run(directory: Path, once: bool, records: int, batch: int, inflight: int,
              seed: int) -> int:
    feeder = Feeder(directory, batch, seed)
    out = sys.stdout
    live = out.isatty()
    async with feeder.client:
        start_status = await feeder.wait_ready()
        await feeder.client.confirm_committed()  # start reading blocks from here
        base_log = start_status["log_size"]
        target = records if once else None
        sem = asyncio.Semaphore(inflight)
        tasks: set[asyncio.Task[None]] = set()
        proof_done = False
        t0 = time.monotonic()
        last_t, last_size = t0, base_log
        committed = 0

        async def one_batch(envs: list[Envelope]) -> None:
            try:
                await feeder.submit(envs)
            except LedgerClientError as exc:  # refused for good, or over the SDK's bound: say so, go on
                say(f"batch of {len(envs)} not submitted: {exc}")
            finally:
                sem.release()

        next_status = t0
        while True:
            if (target is None or feeder.work.counter < target) and \
                    feeder.client.pending_count + (inflight + 1) * batch <= feeder.client.max_pending:
                await sem.acquire()
                n = batch if target is None else min(batch, target - feeder.work.counter)
                task = asyncio.create_task(one_batch(feeder.work.batch(n)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                await asyncio.sleep(0.1)
            now = time.monotonic()
            if now >= next_status:
                next_status = now + 1.0
                st = await feeder.status()
                if feeder.client.pending_count:
                    try:  # release what is committed: the SDK keeps envelopes until then
                        await feeder.client.confirm_committed()
                    except LedgerClientError:
                        pass  # the status line shows the outage; try again next second
                if st is not None:
                    committed = st["log_size"] - base_log
                    rate = (st["log_size"] - last_size) / max(now - last_t, 1e-6)
                    last_t, last_size = now, st["log_size"]
                    line = (f"height {st['height']:>5}  committed {committed:>8}  "
                            f"{rate:>7.0f} records/s  (avg {committed / (now - t0):.0f}/s, "
                            f"mempool {st['mempool']})")
                    out.write(("\r" + line) if live else line + "\n")
                    out.flush()
            if not proof_done and feeder.work.settlements and committed >= min(2000, records):
                proof_done = True
                await prove_and_report(feeder, directory, live)
            if target is not None and committed >= target:
                break
        elapsed = time.monotonic() - t0
        if not proof_done:
            await prove_and_report(feeder, directory, live)
        print(f"\ncommitted {committed} records in {elapsed:.1f}s: "
              f"{committed / elapsed:.0f} records/s end to end")
    return 0


async def prove_and_report(feeder: Feeder, directory: Path, live: bool) -> None:
    settlement = feeder.work.settlements[0]
    path = await feeder.prove(settlement)
    ok, text = verify_offline(path, directory / "genesis.json")
    prefix = "\n" if live else ""
    print(f"{prefix}proof of settlement {settlement.id.hex()[:16]}… "
          f"({len(settlement.record.parents)} parent payments) written to {path}")
    print(f"ledger-audit verify: {'OK' if ok else 'FAILED'}: {text}")
    if not ok:
        raise click.ClickException("the proof bundle did not verify")


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="cluster directory (ledger-cluster init --dir)")
@click.option("--once", is_flag=True, help="submit --records records, prove one, and exit")
@click.option("--records", default=5000, show_default=True)
@click.option("--batch", default=500, show_default=True)
@click.option("--inflight", default=4, show_default=True, help="batches in flight")
@click.option("--seed", default=7, show_default=True)
def main(directory: Path, once: bool, records: int, batch: int, inflight: int,
         seed: int) -> None:
    """Feed sample micro-transactions with lineage to a local cluster."""
    try:
        sys.exit(asyncio.run(run(directory, once, records, batch, inflight, seed)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
