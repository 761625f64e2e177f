"""TLS and request authentication on against off (issue 24, "Done when"):
committed throughput, submit-to-commit latency and proof rate of a fresh
4-validator cluster, in alternating pairs in one invocation so that both
see the same machine.  "off" is plain HTTP and open routes
(``tls.insecure_plaintext``, ``auth.insecure_open``); "on" is TLS on every
link and every request signed (PROTOCOL §11) with the cluster's harness key.
The per-client rate limits are off in both (one address and one key make
all the load); everything else is the node's defaults.

    python -m harness.bench_secure --pairs 1 --duration 15

With ``--policy`` the pairs compare instead a cluster without a policy and
one with the 10-rule policy of scripts/bench-policy installed by
governance before the load (harness/bench_policy_setup.py: the policy, a
100,000-entry list of known accounts and the others, co-signed by a quorum
of members), TLS and authentication off in both, the same kind of load in
both (payments, transfers and refunds from the listed accounts).

    python -m harness.bench_secure --policy --pairs 1 --duration 15

Odd pairs run their second arm first (off on, on off, off on, ...), so a
drift of the machine's speed over a series does not favour one arm; with
more than one pair the last line gives the pooled ratio and the standard
error of the pairs' ratios.

``--concurrent`` (with ``--policy``) loads the two clusters of a pair at the
same time instead, each on about half the machine, so that the machine's
changes of speed meet both arms alike; it measures throughput and CPU only.

    python -m harness.bench_secure --policy --concurrent --pairs 4
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import msgpack

from ledger.keys import load_key_file
from ledger.records import decode_envelope

from .bench_batches import signed_load
from .bench_measure import Profiler, cpu_seconds
from .bench_policy_setup import governance_bodies, governance_envelopes, policy_load
from .bench_setup import BENCH_PARAMS, NO_CLIENT_LIMITS
from .localnet import LocalCluster, until



def _cluster(root: Path, name: str, secure: bool, members: bool = False) -> LocalCluster:
    return LocalCluster(root / name, 4, params=dict(BENCH_PARAMS), tls=secure, auth=secure,
                        toml_edits={i: NO_CLIENT_LIMITS for i in range(4)}, members=members)


async def _install_policy(c: LocalCluster, list_size: int, corridors: int) -> int:
    """The policy and its lists by governance; returns how many records that took."""
    members = [load_key_file(c.dir / "keys" / f"member{i}.json").key for i in range(c.n)]
    quorum = members[:c.genesis.governance_threshold]
    bodies = governance_bodies(list_size, corridors)
    nonce = time.time_ns() // 1000
    wave = 20  # signed just before they are sent: a record's ts must stay in the window
    for k in range(0, len(bodies), wave):
        envs = governance_envelopes(c.genesis.chain, quorum, bodies[k:k + wave], nonce + k)
        body = msgpack.packb([e.envelope_bytes for e in envs], use_bin_type=True)
        status, doc = await c.post(0, "/v1/records", data=body,
                                   headers={"Content-Type": "application/msgpack"})
        assert status == 202 and not any("error" in r for r in doc["results"]), doc
        await c.wait_committed(list(range(c.n)), envs[-1].id.hex(), timeout=120)
    return len(bodies)


async def _admission_counts(c: LocalCluster) -> dict[str, float]:
    """Over the four nodes: records admitted from clients and from peers,
    refusals for want of room (a record refused so, or a request refused
    unread), seconds in the cyclic collector by generation, and what slows
    consensus down: rounds after round 0 (a proposer failed) and proposals
    parked for envelopes a node lacked, summed over the nodes."""
    out = {"admitted_api": 0.0, "admitted_gossip": 0.0, "refused_rate_limited": 0.0,
           "round_changes": 0.0, "proposals_parked": 0.0, "proposals_dropped": 0.0,
           **{f"gc_s_gen{g}": 0.0 for g in range(3)}}
    for i in range(c.n):
        out["round_changes"] += await c.metric(i, "ledger_consensus_round_changes_total")
        for outcome in ("parked", "dropped"):
            out[f"proposals_{outcome}"] += await c.metric(
                i, "ledger_proposal_assembly_total", outcome=outcome)
        for g in range(3):
            out[f"gc_s_gen{g}"] += await c.metric(i, "ledger_gc_seconds_total",
                                                  generation=str(g))
        out["admitted_api"] += await c.metric(i, "ledger_records_admitted_total", source="api")
        out["admitted_gossip"] += await c.metric(i, "ledger_records_admitted_total",
                                                 source="gossip")
        out["refused_rate_limited"] += await c.metric(i, "ledger_inputs_rejected_total",
                                                      code="rate_limited")
    return out


async def _throughput(c: LocalCluster, envs: list[bytes], duration: float, warmup: float,
                      request: int, inflight: int) -> dict[str, Any]:
    """Records/s committed in the steady window; the nodes' CPU per record
    from the load's start until every record admitted is committed (less
    dependent on the machine's other load than records/s), the harness's
    own, what was admitted and refused, how often requests were resent."""
    bodies = [msgpack.packb(envs[k:k + request], use_bin_type=True)
              for k in range(0, len(envs), request)]
    first = await c.status(0)
    assert first is not None
    base, base_height = first["log_size"], first["height"]
    pids = [c.procs[i].pid for i in range(c.n)]
    counts0 = await _admission_counts(c)
    threads0 = _thread_cpu(pids)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    own0 = sum(os.times()[:2])
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    t0 = time.perf_counter()

    async def sample() -> None:
        while not stop.is_set():
            st = await c.status(0)
            if st is not None:
                samples.append((time.perf_counter() - t0, st["log_size"] - base))
            await asyncio.sleep(0.5)

    queue = list(enumerate(bodies))
    posts = {"posts": 0, "posts_partly_refused": 0, "posts_refused": 0}

    async def feeder() -> None:
        while queue and time.perf_counter() - t0 < duration + warmup:
            k, body = queue.pop(0)
            while True:  # until every envelope of the request is admitted
                status, doc = await c.post(k % 4, "/v1/records", data=body,
                                           headers={"Content-Type": "application/msgpack"})
                posts["posts"] += 1
                if status == 202 and not any("error" in r for r in doc["results"]):
                    break
                posts["posts_partly_refused" if status == 202 else "posts_refused"] += 1
                await asyncio.sleep(0.05)  # rate_limited (mempool full): resend the same bytes

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(feeder() for _ in range(inflight)))
    t_end = time.perf_counter() - t0
    stop.set()
    await sampler
    # Every admitted record committed: the CPU counted is all the work for
    # the records counted (with the mempool filling during the load, CPU
    # over the records committed by its end would count work for others).
    await until(_drained(c), 120, "the throughput load to commit", interval=0.2)
    t_drained = time.perf_counter() - t0
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    threads = _thread_cpu(pids)
    own = sum(os.times()[:2]) - own0
    last = await c.status(0)
    assert last is not None
    steady = [s for s in samples if warmup <= s[0] <= t_end]
    committed = last["log_size"] - base
    # A load offered within the warm-up has no steady window: its rate is
    # over the whole run, until drained.
    rate = ((steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
            if len(steady) >= 2 else committed / t_drained)
    counts = {k: v - counts0[k] for k, v in (await _admission_counts(c)).items()}
    gc_s = [counts.pop(f"gc_s_gen{g}") for g in range(3)]
    return {**counts, **posts, "records_per_s": round(rate), "offered_all": not queue,
            "committed": committed,
            # wall time in the collector (node/gctune.py), per record and node
            "gc_us_per_record_per_node": [round(s / max(committed, 1) / c.n * 1e6, 1)
                                          for s in gc_s],
            "cpu_us_per_record_per_node": round(cpu / max(committed, 1) / c.n * 1e6, 1),
            "harness_cpu_us_per_record": round(own / max(committed, 1) * 1e6, 1),
            "records_per_block": round(committed / max(last["height"] - base_height, 1)),
            # records/s between node 0's status samples (about 0.5 s apart):
            # a slow run slow throughout, or one with stalls
            "rates_per_s": [round((b[1] - a[1]) / max(b[0] - a[0], 1e-9))
                            for a, b in zip(steady, steady[1:])],
            # the nodes' CPU by thread name (main: the event loop; LevelDB's
            # compaction; executors), per record and node
            "threads_us_per_record_per_node": {
                name: round((t - threads0.get(name, 0.0)) / max(committed, 1) / c.n * 1e6, 1)
                for name, t in sorted(threads.items())}}


def _thread_cpu(pids: list[int]) -> dict[str, float]:
    """utime + stime of the processes' threads, summed by thread name."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                text = (task / "stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rpartition(")")[2].split()
            main = task.name == str(pid)
            key = "main" if main else name
            out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def _latency(c: LocalCluster, envs: list[bytes], probes: int) -> dict[str, Any]:
    """Submit one record at a time, on an idle cluster (the throughput load
    has committed), and poll it until committed (10 ms polls)."""
    spans = []
    for env in envs[:probes]:
        rid = decode_envelope(env).id.hex()
        t = time.perf_counter()
        status, _ = await c.post(0, "/v1/records", data=msgpack.packb([env], use_bin_type=True),
                                 headers={"Content-Type": "application/msgpack"})
        assert status == 202, status
        while True:
            st, doc = await c.get(0, f"/v1/records/{rid}")
            if st == 200 and doc.get("status") == "committed":
                break
            await asyncio.sleep(0.01)
        spans.append((time.perf_counter() - t) * 1000)
    spans.sort()
    return {"latency_p50_ms": round(statistics.median(spans), 1),
            "latency_p99_ms": round(spans[min(len(spans) - 1, int(len(spans) * 0.99))], 1)}


async def _proofs(c: LocalCluster, ids: list[str], seconds: float, clients: int
                  ) -> dict[str, Any]:
    done, errors = 0, 0
    pid = c.procs[0].pid
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()

    async def client(k: int) -> None:
        nonlocal done, errors
        j = k
        while time.perf_counter() - t0 < seconds:
            st, _ = await c.get(0, f"/v1/records/{ids[j % len(ids)]}/proof")
            if st == 200:
                done += 1
            else:
                errors += 1
            j += clients

    await asyncio.gather(*(client(k) for k in range(clients)))
    cpu = cpu_seconds(pid) - cpu0
    return {"proofs_per_s": round(done / (time.perf_counter() - t0)), "proof_errors": errors,
            "proof_cpu_us": round(cpu / max(done, 1) * 1e6, 1)}


def _is_on(result: dict[str, Any]) -> bool:
    """The arm of a run: the policy (``--policy``) or TLS and auth on."""
    return bool(result["policy"] if "policy" in result else result["tls_and_auth"])


def summary(arms: list[list[dict[str, Any]]], on_name: str, off_name: str) -> str:
    """Over the pairs (each ``[off, on]``): the pooled throughput ratio
    (records/s summed per arm, on over off), the mean of the pairs' ratios
    with its standard error, and the pooled ratio of CPU per record, off
    over on (below 1: a record costs the on arm more)."""
    ratios = [on["records_per_s"] / max(off["records_per_s"], 1) for off, on in arms]
    pooled = (sum(on["records_per_s"] for _, on in arms)
              / max(sum(off["records_per_s"] for off, _ in arms), 1))
    cpu = (sum(off["cpu_us_per_record_per_node"] for off, _ in arms)
           / max(sum(on["cpu_us_per_record_per_node"] for _, on in arms), 1e-9))
    se = statistics.stdev(ratios) / len(ratios) ** 0.5
    return (f"{len(arms)} pairs: throughput {on_name}/{off_name} pooled {pooled:.3f}, mean of "
            f"pairs {statistics.mean(ratios):.3f} (standard error {se:.3f}, pairs "
            f"{min(ratios):.2f}-{max(ratios):.2f}); CPU per record {off_name}/{on_name} "
            f"pooled {cpu:.3f}")


def _drained(c: LocalCluster) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        st = await c.status(0)
        return st is not None and st.get("mempool") == 0
    return check


async def one_run(root: Path, name: str, secure: bool, *, records: int, duration: float,
                  warmup: float, request: int, inflight: int, probes: int,
                  proof_seconds: float, proof_clients: int, policy: bool | None = None,
                  list_size: int = 100_000, profile: Path | None = None) -> dict[str, Any]:
    """One fresh cluster measured; ``policy`` None: the TLS and auth
    comparison's load; True/False: the policy comparison's, with or without
    the policy installed.  With ``profile`` (a directory), py-spy samples
    node 0 during the load and during the proofs (raw stacks kept there)."""
    c = _cluster(root, name, secure, members=policy is not None)
    try:
        await c.start_all(timeout=90)
        out: dict[str, Any] = {"run": name, "tls_and_auth": secure}
        if policy is None:
            envs = signed_load(c.dir / "keys" / "demo.json", c.genesis.chain, records + probes,
                               64)
        else:
            key = load_key_file(c.dir / "keys" / "demo.json").key
            envs = policy_load(key, c.genesis.chain, records + probes, list_size)
            out["policy"] = policy
            if policy:
                out["governance_records"] = await _install_policy(c, list_size, 10_000)
        load0 = os.getloadavg()
        spy = (Profiler(c.procs[0].pid, int(duration + warmup), profile / f"{name}-load.txt")
               if profile is not None else None)
        out |= await _throughput(c, envs[:records], duration, warmup, request, inflight)
        if spy is not None:
            out["profile_load"] = spy.finish()
        out |= await _latency(c, envs[records:], probes)
        if policy is not None:  # the last probe's verdict: the policy was (not) in force
            st, doc = await c.get(0, f"/v1/records/{decode_envelope(envs[-1]).id.hex()}")
            out["probe_verdict"] = doc.get("verdict") if st == 200 else st
        # The proof load: the records of the load's first three blocks (with
        # the policy, the blocks before them hold its governance records).
        st, doc = await c.get(0, f"/v1/records/{decode_envelope(envs[0]).id.hex()}")
        first = doc["height"] if st == 200 else 1
        committed = []
        for h in range(first, first + 3):
            st, doc = await c.get(0, f"/v1/blocks/{h}")
            if st == 200:
                committed += doc["records"]
        spy = (Profiler(c.procs[0].pid, int(proof_seconds), profile / f"{name}-proofs.txt")
               if profile is not None else None)
        out |= await _proofs(c, committed or ["00" * 32], proof_seconds, proof_clients)
        if spy is not None:
            out["profile_proofs"] = spy.finish()
        out["load_start"], out["load_end"] = load0, os.getloadavg()
        return out
    finally:
        await c.stop_all()


async def concurrent_pair(root: Path, name: str, *, records: int, duration: float,
                          warmup: float, request: int, inflight: int, list_size: int
                          ) -> list[dict[str, Any]]:
    """``--concurrent``: a cluster without the policy and one with it, loaded
    at the same time on the same machine, so that a change in the machine's
    speed meets both arms alike (one after the other, single pairs moved by
    a quarter).  Their CPU per record and node is the figure to compare:
    the cores are not shared equally (a cluster whose blocks take longer to
    judge leaves them to the other in between), so the ratio of their
    records/s is lower than that of their CPU (docs/performance.md).
    Throughput and CPU only."""
    arms = [(False, _cluster(root, f"{name}-off", False, members=True)),
            (True, _cluster(root, f"{name}-on", False, members=True))]
    try:
        for _, c in arms:  # one after the other: the second picks its ports once
            await c.start_all(timeout=90)  # the first's are bound
        loads = [policy_load(load_key_file(c.dir / "keys" / "demo.json").key, c.genesis.chain,
                             records, list_size) for _, c in arms]
        governance = await _install_policy(arms[1][1], list_size, 10_000)
        load0 = os.getloadavg()
        results = await asyncio.gather(*(
            _throughput(c, envs, duration, warmup, request, inflight)
            for (_, c), envs in zip(arms, loads)))
        out = []
        for (policy, _), result in zip(arms, results):
            doc: dict[str, Any] = {"run": f"{name}-{'on' if policy else 'off'}",
                                   "tls_and_auth": False, "policy": policy, "concurrent": True}
            if policy:
                doc["governance_records"] = governance
            out.append(doc | result | {"load_start": load0, "load_end": os.getloadavg()})
        return out
    finally:
        for _, c in arms:
            await c.stop_all()


@click.command()
@click.option("--pairs", default=1, show_default=True,
              help="off/on pairs; odd pairs run on first (ABBA)")
@click.option("--records", default=200_000, show_default=True, help="pre-signed per run")
@click.option("--duration", default=15.0, show_default=True, help="measured window, s")
@click.option("--warmup", default=5.0, show_default=True)
@click.option("--request", default=2000, show_default=True, help="envelopes per POST")
@click.option("--inflight", default=4, show_default=True)
@click.option("--probes", default=40, show_default=True, help="latency probes (one at a time)")
@click.option("--proof-seconds", default=8.0, show_default=True)
@click.option("--proof-clients", default=16, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-secure.json"),
              show_default=True)
@click.option("--policy", "compare_policy", is_flag=True,
              help="compare no policy with the 10-rule policy (TLS and auth off in both)")
@click.option("--list-size", default=100_000, show_default=True,
              help="--policy: entries of the known-accounts list")
@click.option("--profile", type=click.Path(path_type=Path), default=None,
              help="a directory: py-spy on node 0 during the load and the proofs")
@click.option("--concurrent", is_flag=True,
              help="--policy: load both clusters of a pair at the same time (throughput only)")
def main(pairs: int, records: int, duration: float, warmup: float, request: int, inflight: int,
         probes: int, proof_seconds: float, proof_clients: int, out: Path,
         compare_policy: bool, list_size: int, profile: Path | None, concurrent: bool) -> None:
    """TLS and authentication off and on, ``pairs`` times; the ratio of on to off
    (with ``--policy``: no policy and the policy), per pair and pooled."""

    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    if concurrent and not compare_policy:
        raise click.UsageError("--concurrent compares the policy arms: add --policy")

    async def run() -> list[dict[str, Any]]:
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-secure-") as tmp:
            for p in range(pairs):
                if concurrent:
                    both = await concurrent_pair(Path(tmp), f"pair{p}", records=records,
                                                 duration=duration, warmup=warmup,
                                                 request=request, inflight=inflight,
                                                 list_size=list_size)
                    for r in both:
                        click.echo(json.dumps(r))
                    results += both
                    continue
                # Odd pairs run their second arm first (ABBA): a machine
                # that speeds up or slows down over the series meets both
                # arms alike, not always the second one.
                for on in (False, True) if p % 2 == 0 else (True, False):
                    r = await one_run(Path(tmp), f"pair{p}-{'on' if on else 'off'}",
                                      on and not compare_policy,
                                      records=records, duration=duration, warmup=warmup,
                                      request=request, inflight=inflight, probes=probes,
                                      proof_seconds=proof_seconds, proof_clients=proof_clients,
                                      policy=on if compare_policy else None,
                                      list_size=list_size, profile=profile)
                    click.echo(json.dumps(r))
                    results.append(r)
        return results

    results = asyncio.run(run())
    arms = [sorted(results[k:k + 2], key=_is_on) for k in range(0, len(results) - 1, 2)]
    for k, (off, on) in enumerate(arms):
        if concurrent:  # no proofs measured; the CPU ratio is the figure
            cpu = off["cpu_us_per_record_per_node"] / max(on["cpu_us_per_record_per_node"], 1e-9)
            extra = f", CPU per record none/policy {cpu:.3f}"
        else:
            extra = f", proofs on/off {on['proofs_per_s'] / max(off['proofs_per_s'], 1):.2f}"
        click.echo(f"pair {k}: throughput {'policy/none' if compare_policy else 'on/off'} "
                   f"{on['records_per_s'] / max(off['records_per_s'], 1):.2f}{extra}")
    if len(arms) > 1:
        click.echo(summary(arms, *(("policy", "none") if compare_policy else ("on", "off"))))
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
