"""Fault campaigns against real ``ledger-node`` processes (Jepsen-style).

Each campaign returns a report of plain figures; ``scripts/faults`` runs the
long versions and prints them as a table, tests run short versions and
assert on the same figures:

* ``killloop``   - SIGKILL a random validator every few seconds under steady
  SDK load, restart it; in the end no committed record is lost, every
  resubmitted record is in the chain exactly once, every node serves a valid
  proof of every record the SDK saw committed, all header hashes agree.
  ``--rolling`` restarts each node in turn with SIGTERM instead, as an
  upgrade does, with the same checks.
* ``acks``       - SIGKILL validators the moment they answer 202, under load;
  every record any node acknowledged must commit (harness/faults_acks.py).
* ``fuzz``       - schemathesis against /openapi.json of a live node.
* ``corrupt``    - flip bytes in a stopped node's LevelDB; the node must notice.
* ``gzipbomb``, ``greedy`` - compressed bodies and clients that never read
  (harness/faults_http.py).

Only 127.0.0.1 is targeted; every process is addressed by its own pid.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ledger.records import decode_envelope
from ledger.verify import verify_bundle

from .localnet import LocalCluster, until

# -- schemathesis --------------------------------------------------------------

SCHEMATHESIS_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_schema_conformance")


@dataclass
class FuzzReport:
    cases: int
    server_errors: int
    statuses: dict[int, int]
    exit_code: int
    output: str = field(repr=False)


def run_schemathesis(base_url: str, workdir: Path, examples: int, seed: int, *,
                     ca_file: Path | None = None,
                     signing_key: Path | None = None) -> FuzzReport:
    """Run the schemathesis CLI (from this interpreter's venv) against a live node.

    ``ca_file``: trust roots of an https node; ``signing_key``: a key file
    every request is signed with (harness/schemathesis_signing.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / "events.ndjson"
    exe = str(Path(sys.executable).parent / "schemathesis")
    spec = base_url + "/openapi.json"
    if signing_key is not None:  # the description is a signed route too
        from .schemathesis_signing import fetch_spec  # late: imports schemathesis
        fetch_spec(spec, signing_key, ca_file, workdir / "openapi.json")
        spec = str(workdir / "openapi.json")
    cmd = [exe, "run", spec, "--url", base_url, "-n", str(examples), "--seed", str(seed),
           "--checks", SCHEMATHESIS_CHECKS, "--request-timeout", "20",
           "--report", "ndjson", "--report-ndjson-path", str(events),
           "--no-color",
           # The block stream answers for as long as the client reads: a
           # request would only run into the request timeout.
           "--exclude-path", "/v1/stream"]
    if ca_file is not None:
        cmd += ["--tls-verify", str(ca_file)]
    env = dict(os.environ)
    if signing_key is not None:
        root = str(Path(__file__).resolve().parent.parent)  # harness/ is not installed
        env.update(SCHEMATHESIS_HOOKS="harness.schemathesis_signing",
                   LEDGER_FUZZ_SIGNING_KEY=str(signing_key),
                   PYTHONPATH=os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          stdin=subprocess.DEVNULL, env=env)
    output = proc.stdout + proc.stderr
    statuses: Counter[int] = Counter()
    if events.exists():
        for hit in re.finditer(r'"status_code":\s*(\d+)', events.read_text(errors="replace")):
            statuses[int(hit.group(1))] += 1
    m = re.search(r"(\d+) generated", output)
    cases = int(m.group(1)) if m else sum(statuses.values())
    return FuzzReport(cases=cases, server_errors=sum(n for s, n in statuses.items() if s >= 500),
                      statuses=dict(sorted(statuses.items())), exit_code=proc.returncode,
                      output=output)


# -- kill loop -------------------------------------------------------------------


@dataclass
class KillLoopReport:
    duration_s: float = 0.0
    kills: int = 0
    restarts_caught_up: int = 0
    submitted: int = 0
    seen_committed: int = 0
    resubmitted: int = 0
    committed_in_chain: int = 0
    records_lost: int = 0
    duplicates_in_chain: int = 0
    proofs_verified: int = 0
    height: int = 0
    forks: int = 0
    evidence: int = 0
    failures: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return (not self.failures and self.records_lost == 0 and self.forks == 0
                and self.duplicates_in_chain == 0)


async def _stop_gracefully(c: LocalCluster, i: int, report: KillLoopReport) -> None:
    """SIGTERM node ``i`` and wait for it to exit; a non-zero exit is a failure."""
    c.signal(i, signal.SIGTERM)
    proc = c.procs[i]
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if proc.poll() is None:
        report.failures.append(f"node{i} did not stop within 30 s of SIGTERM")
        c.kill(i)
    elif proc.returncode != 0:
        report.failures.append(f"node{i} exited {proc.returncode} on SIGTERM")


async def _chain_ids(c: LocalCluster, i: int, height: int) -> list[str]:
    """Every record id in node ``i``'s blocks 1..height, in chain order."""
    ids: list[str] = []
    for h in range(1, height + 1):
        status, doc = await c.get(i, f"/v1/blocks/{h}?envelopes=true")
        if status != 200:
            raise RuntimeError(f"node{i} block {h}: HTTP {status} {doc}")
        ids += [decode_envelope(base64.b64decode(e)).id.hex() for e in doc["envelopes"]]
    return ids


async def kill_loop(directory: Path, *, duration: float, every: tuple[float, float] = (2.0, 5.0),
                    seed: int = 1, n: int = 4, batch: int = 25,
                    progress: Any = None, rolling: bool = False,
                    secure: bool = False) -> KillLoopReport:
    """Run the kill loop for ``duration`` seconds of load; see the module doc.

    ``rolling``: a rolling restart instead, as for an upgrade - each node in
    turn (0, 1, ...) is stopped with SIGTERM (it must exit 0), started again
    and waited for, once each; ``duration`` is then unused.  ``secure``: the
    cluster runs with TLS and request authentication (PROTOCOL §11), the
    load signs its requests with its submitter key."""
    from client.sdk import LedgerClient  # late: node code does not otherwise need the SDK

    rng = random.Random(seed)
    report = KillLoopReport()
    c = LocalCluster(directory, n, tls=secure, auth=secure)
    everyone = list(range(n))
    envelopes: dict[str, bytes] = {}  # every envelope ever sent (even if the request failed)
    seen: set[str] = set()
    stop = asyncio.Event()
    say = progress or (lambda msg: None)

    async def load(worker: int) -> None:
        async with LedgerClient([c.url(i) for i in everyone], c.dir / "keys" / "demo.json",
                                nonce_file=c.dir / f"nonce{worker}", request_timeout=10,
                                retries=8, ca_file=c.ca_file) as lc:
            while not stop.is_set():
                envs = [lc.sign(kind="payment", origin={"system": "faults"},
                                body={"amount": rng.randrange(10_000), "w": worker})
                        for _ in range(batch)]
                for e in envs:
                    envelopes[e.id.hex()] = e.envelope_bytes
                try:
                    results = await lc.submit_envelopes([e.envelope_bytes for e in envs])
                except Exception as exc:  # noqa: BLE001 - every failure is resubmitted later
                    say(f"load{worker}: submit failed ({type(exc).__name__}); resubmitted at the end")
                    continue
                bad = [r for r in results if "error" in r]
                if bad:
                    report.failures.append(f"submit refused: {bad[:2]}")
                last = envs[-1].id.hex()
                try:
                    await lc.wait_committed(last, timeout=20)
                    seen.add(last)
                except Exception:  # noqa: BLE001 - not seen committed: nothing is claimed
                    pass

    try:
        await c.start_all(timeout=60)
        started = time.monotonic()  # the load's duration, not the start's (TLS starts are slower)
        workers = [asyncio.create_task(load(w)) for w in range(2)]
        while (report.kills < n) if rolling else (time.monotonic() - started < duration):
            await asyncio.sleep(rng.uniform(*every))  # picks the moment; decides nothing
            victim = report.kills if rolling else rng.randrange(n)
            if rolling:
                await _stop_gracefully(c, victim, report)
            else:
                c.kill(victim)
            report.kills += 1
            say(f"{'restart' if rolling else 'kill'} #{report.kills}: node{victim}")
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            c.start(victim)
            await c.wait_connected(everyone, timeout=60)
            report.restarts_caught_up += 1
        stop.set()
        for w in workers:
            await w
        report.duration_s = round(time.monotonic() - started, 1)
        report.submitted = len(envelopes)
        report.seen_committed = len(seen)

        # Resubmit everything (idempotent) and wait for every record everywhere.
        say(f"resubmitting {len(envelopes)} records")
        async with LedgerClient([c.url(0)], request_timeout=30, ca_file=c.ca_file,
                                auth_key_file=c.harness_key if secure else None) as lc:
            all_bytes = list(envelopes.values())
            for start in range(0, len(all_bytes), 500):
                results = await lc.submit_envelopes(all_bytes[start:start + 500])
                for r in results:
                    if "error" in r:
                        report.failures.append(f"resubmission refused: {r}")
        report.resubmitted = len(envelopes)
        if envelopes:
            last_ids = list(envelopes)[-1:]
            for rid in last_ids:
                await c.wait_committed(everyone, rid, timeout=120)

        async def all_committed() -> bool:
            st = await c.status(0)
            if st is None:
                return False
            return st.get("mempool") == 0

        await until(all_committed, 120, "node0's mempool to drain", interval=0.2)
        heights = []
        for i in everyone:
            st = await c.status(i)
            assert st is not None
            heights.append(st["height"])
        height = min(heights)
        await c.wait_height(everyone, max(heights), timeout=60)
        height = max(heights)
        report.height = height
        reference = await c.header_hashes(0, height)
        for i in everyone[1:]:
            if await c.header_hashes(i, height) != reference:
                report.forks += 1
                report.failures.append(f"node{i} header hashes differ from node0's")
        ids = await _chain_ids(c, 0, height)
        counts = Counter(ids)
        report.committed_in_chain = len(counts)
        report.duplicates_in_chain = sum(1 for k, v in counts.items() if v > 1)
        lost = [rid for rid in envelopes if rid not in counts]
        report.records_lost = len(lost)
        if lost:
            report.failures.append(f"{len(lost)} records missing, e.g. {lost[:3]}")
        for rid in sorted(seen):
            for i in everyone:
                status, bundle = await c.get(i, f"/v1/records/{rid}/proof")
                if status != 200:
                    report.failures.append(f"node{i}: no proof of {rid[:16]} (HTTP {status})")
                    continue
                verify_bundle(bundle, c.genesis.raw)
                report.proofs_verified += 1
        for i in everyone:
            status, doc = await c.get(i, "/v1/evidence")
            report.evidence += len(doc.get("evidence", [])) if status == 200 else 0
        for i in everyone:
            if "Traceback" in c.log_path(i).read_text(errors="replace"):
                report.failures.append(f"node{i} logged a traceback")
    finally:
        stop.set()
        await c.stop_all()
    return report


# -- command line ----------------------------------------------------------------


def _table(title: str, rows: list[tuple[str, Any]], ok: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: {'PASS' if ok else 'FAIL'}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="campaign", required=True)
    k = sub.add_parser("killloop", help="SIGKILL a random validator every few seconds under load")
    k.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    k.add_argument("--min-every", type=float, default=2.0)
    k.add_argument("--max-every", type=float, default=5.0)
    k.add_argument("--seed", type=int, default=1)
    k.add_argument("--rolling", action="store_true",
                   help="a rolling restart instead: SIGTERM each node in turn, once "
                        "(as an upgrade does); --duration is unused")
    k.add_argument("--secure", action="store_true",
                   help="TLS on every link and every request signed (PROTOCOL §11)")
    a = sub.add_parser("acks", help="SIGKILL validators right after their 202s under load; "
                                    "count acknowledged records that never commit")
    a.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    a.add_argument("--min-every", type=float, default=1.0)
    a.add_argument("--max-every", type=float, default=3.0)
    a.add_argument("--seed", type=int, default=1)
    f = sub.add_parser("fuzz", help="schemathesis against a live 4-node cluster")
    f.add_argument("--examples", type=int, default=1000, help="cases per operation and phase")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--secure", action="store_true",
                   help="TLS on every link and every request signed (PROTOCOL §11)")
    pt = sub.add_parser("partitions", help="netns partitions (root): isolate, 2|2 split, "
                                           "proposer mid-round, repeated")
    pt.add_argument("--rounds", type=int, default=5)
    d = sub.add_parser("decoders", help="hypothesis fuzzing of the decoders (long)")
    d.add_argument("--examples", type=int, default=20_000, help="cases per property")
    df = sub.add_parser("diskfull", help="node3's data on a small tmpfs (root): it must exit "
                                         "naming ENOSPC, then restart and catch up, nothing lost")
    df.add_argument("--size-mb", type=int, default=40, help="node3's tmpfs (default 40)")
    df.add_argument("--grow-mb", type=int, default=512, help="its size after the stop")
    gb = sub.add_parser("gzipbomb", help="gzip bombs at two nodes under load: answers, "
                                         "status latency, commit pause")
    gb.add_argument("--per-node", type=int, default=10, help="bombs per node (default 10)")
    gb.add_argument("--inflated-mib", type=int, default=1024, help="what one bomb inflates to")
    gb.add_argument("--window", type=float, default=40.0, help="seconds watched (default 40)")
    gr = sub.add_parser("greedy", help="clients pipelining block sync requests, never reading: "
                                       "node RSS before/during/after")
    gr.add_argument("--connections", type=int, default=100)
    gr.add_argument("--pipelined", type=int, default=5)
    gr.add_argument("--fill-mb", type=float, default=8.0, help="MB of records committed first")
    gr.add_argument("--watch", type=float, default=10.0, help="seconds RSS is sampled")
    gr.add_argument("--write-timeout-ms", type=int, default=5000,
                    help="http.write_timeout_ms of the nodes (0: leave node.toml as written)")
    gr.add_argument("--signed", action="store_true",
                    help="sign the requests as a validator (the streamed answer path)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="faults-"))
    print(f"work directory: {workdir}", file=sys.stderr)

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.campaign == "killloop":
        rep = asyncio.run(kill_loop(workdir / "cluster", duration=args.duration,
                                    every=(args.min_every, args.max_every), seed=args.seed,
                                    progress=say, rolling=args.rolling,
                                    secure=args.secure))
        doc = asdict(rep)
        ok = rep.ok()
    elif args.campaign == "acks":
        from .faults_acks import ack_kill_loop

        ack = asyncio.run(ack_kill_loop(workdir / "cluster", duration=args.duration,
                                        every=(args.min_every, args.max_every), seed=args.seed,
                                        progress=say))
        doc = asdict(ack)
        ok = ack.ok()
    elif args.campaign in ("gzipbomb", "greedy"):
        from . import faults_http

        if args.campaign == "gzipbomb":
            doc = asdict(asyncio.run(faults_http.gzip_bombs(
                workdir / "cluster", per_node=args.per_node, inflated_mib=args.inflated_mib,
                window_s=args.window, progress=say)))
        else:
            doc = asdict(asyncio.run(faults_http.greedy_clients(
                workdir / "cluster", connections=args.connections, pipelined=args.pipelined,
                fill_mb=args.fill_mb, watch_s=args.watch, write_timeout_ms=args.write_timeout_ms,
                signed=args.signed, progress=say)))
        ok = True  # figures to compare, before and after
    elif args.campaign == "partitions":
        doc, ok = _partitions(workdir, args.rounds, say)
    elif args.campaign == "decoders":
        doc, ok = _decoders(args.examples, say)
    elif args.campaign == "diskfull":
        from .faults_disk import disk_full

        dr = asyncio.run(disk_full(workdir / "cluster", size_mb=args.size_mb,
                                   grow_mb=args.grow_mb, progress=say))
        doc = asdict(dr)
        ok = dr.ok
    else:
        fr = asyncio.run(_fuzz_cluster(workdir, args.examples, args.seed, secure=args.secure))
        doc = {"cases": fr.cases, "server_errors": fr.server_errors,
               "statuses": fr.statuses, "exit_code": fr.exit_code}
        ok = fr.exit_code == 0 and fr.server_errors == 0 and fr.cases > 0
        if not ok:
            print(fr.output[-6000:], file=sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _table(args.campaign, [(k, v) for k, v in doc.items() if k != "failures"]
               + [("failures", "; ".join(doc.get("failures", [])) or "none")], ok)
    return 0 if ok else 1


def _partitions(workdir: Path, rounds: int, say: Any) -> tuple[dict[str, Any], bool]:
    from .netns import run_in_lab, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        return {"skipped": reason}, False
    doc: dict[str, Any] = {"rounds": 0, "partitions_healed": 0, "forks": 0,
                           "commits_during_split": 0, "failures": []}
    for r in range(rounds):
        rep = run_in_lab(workdir / f"round{r}", ["isolate", "split", "proposer"])
        doc["rounds"] += 1
        doc["partitions_healed"] += rep["partitions_healed"]
        doc["forks"] += rep["forks"]
        doc["commits_during_split"] += int(rep["scenarios"]["split"]["committed_during_split"])
        doc["failures"] += rep.get("failures", [])
        say(f"round {r + 1}/{rounds}: {rep['partitions_healed']} partitions healed, "
            f"{rep['forks']} forks")
    ok = doc["forks"] == 0 and doc["commits_during_split"] == 0 and not doc["failures"]
    return doc, ok


def _decoders(examples: int, say: Any) -> tuple[dict[str, Any], bool]:
    import os

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, FUZZ_EXAMPLES=str(examples), FUZZ_RANDOM="1")
    say(f"hypothesis: {examples} cases per property")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(root / "tests" / "test_fuzz_decoders.py")],
                          cwd=root, env=env, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    properties = 6  # @given tests in tests/test_fuzz_decoders.py
    doc = {"cases_per_property": examples, "properties": properties,
           "cases": examples * properties, "pytest": tail, "failures": [] if
           proc.returncode == 0 else [proc.stdout[-3000:]]}
    return doc, proc.returncode == 0


async def _fuzz_cluster(workdir: Path, examples: int, seed: int, *,
                        secure: bool = False) -> FuzzReport:
    """``secure``: the cluster runs TLS and authenticates requests, and
    schemathesis signs every request with the harness's key (role admin)."""
    c = LocalCluster(workdir / "cluster", 4, tls=secure, auth=secure)
    try:
        for i in range(4):
            c.start(i)
        await c.wait_connected(list(range(4)), timeout=60)
        return await asyncio.to_thread(run_schemathesis, c.url(0), workdir / "schemathesis",
                                       examples, seed, ca_file=c.ca_file,
                                       signing_key=c.harness_key if secure else None)
    finally:
        await c.stop_all()


if __name__ == "__main__":
    sys.exit(main())
