"""Multi-host partitions: every node in its own Linux network namespace.

Layout (created and removed by :class:`NetnsLab`, nothing in the host's own
namespace is touched):

* a hub namespace ``<tag>hub`` holding a bridge ``br0`` with address
  10.213.K.254/24 - the observer (this module's scenario runner) lives here;
* per node a namespace ``<tag>n<i>`` whose ``eth0`` (a veth whose other end
  is enslaved to ``br0``) has 10.213.K.(i+1)/24; the node binds its HTTP
  server there and genesis names those addresses.

Partitions are ``blackhole`` routes to the other side's /32 inside each
node's namespace (packets silently dropped, as on a cut link); healing
deletes them.  The observer keeps reaching every node throughout.

Run as ``python -m harness.netns run --tag T --subnet K --dir D`` inside the
hub namespace (tests and ``scripts/faults partitions`` do this); it prints a
JSON report.  Only addresses in 10.213.K.0/24 inside these namespaces are
ever used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .localnet import LocalCluster

SUBNET_PREFIX = "10.213"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30, stdin=subprocess.DEVNULL)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"alprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetnsLab:
    def __init__(self, n: int, tag: str | None = None, subnet: int | None = None) -> None:
        self.n = n
        self.tag = tag or f"al{os.getpid() % 100_000}"
        self.subnet = subnet if subnet is not None else os.getpid() % 250 + 1
        self.cuts: set[tuple[int, int]] = set()

    @property
    def hub(self) -> str:
        return f"{self.tag}hub"

    def ns(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def addr(self, i: int) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.{i + 1}"

    @property
    def hub_addr(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.254"

    def up(self) -> None:
        try:
            _ip("netns", "add", self.hub)
            _ip("-n", self.hub, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "addr", "add", f"{self.hub_addr}/24", "dev", "br0")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for i in range(self.n):
                ns = self.ns(i)
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", self.hub, "link", "add", f"h{i}", "type", "veth",
                    "peer", "name", "eth0", "netns", ns)
                _ip("-n", self.hub, "link", "set", f"h{i}", "master", "br0")
                _ip("-n", self.hub, "link", "set", f"h{i}", "up")
                _ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except subprocess.CalledProcessError as exc:
            self.down()
            raise RuntimeError(f"netns setup failed: {exc.cmd}: {exc.stderr}") from None

    def down(self) -> None:
        """Remove every namespace this lab made (their veths and bridge go with them)."""
        for name in [self.ns(i) for i in range(self.n)] + [self.hub]:
            _ip("netns", "del", name, check=False)

    # -- partitions -----------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        for x, y in ((a, b), (b, a)):
            if (x, y) not in self.cuts:
                _ip("-n", self.ns(x), "route", "add", "blackhole", f"{self.addr(y)}/32")
                self.cuts.add((x, y))

    def partition(self, *groups: list[int]) -> None:
        for g1, g2 in itertools.combinations(groups, 2):
            for a in g1:
                for b in g2:
                    self.cut(a, b)

    def isolate(self, i: int) -> None:
        self.partition([i], [j for j in range(self.n) if j != i])

    def heal(self) -> None:
        for x, y in sorted(self.cuts):
            _ip("-n", self.ns(x), "route", "del", "blackhole", f"{self.addr(y)}/32", check=False)
        self.cuts.clear()


# -- the scenario runner (inside the hub namespace) ---------------------------------


def _cluster(directory: Path, lab: NetnsLab, secure: bool = False) -> Any:
    """The lab's cluster; ``secure``: TLS (certificates for the lab's
    addresses, from the cluster's CA) and every request signed."""
    from ledger.genesis import load_genesis

    from node.cluster import _die_with_parent, node_command
    from .localnet import LocalCluster

    class NetnsCluster(LocalCluster):
        def url(self, i: int) -> str:
            scheme = "https" if self.tls else "http"
            return f"{scheme}://{lab.addr(i)}:{self.base_port + i}"

        def start(self, i: int, command: list[str] | None = None) -> None:
            assert i not in self.procs or self.procs[i].poll() is not None
            parent = os.getpid()
            log = open(self.log_path(i), "ab")
            argv = node_command(self.config(i)) if command is None else command
            self.procs[i] = subprocess.Popen(
                ["ip", "netns", "exec", lab.ns(i), *argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=lambda: _die_with_parent(parent))
            log.close()

    c = NetnsCluster(directory, lab.n, tls=secure, auth=secure)
    if secure:  # init made certificates for 127.0.0.1; the lab's nodes have their own address
        from node.tls_certs import load_or_make_ca, make_node_cert
        ca = load_or_make_ca(directory / "tls")
        for i in range(lab.n):
            make_node_cert(ca, directory / "tls", f"node{i}", [lab.addr(i), "127.0.0.1"])
    doc = json.loads((directory / "genesis.json").read_text())
    for i, v in enumerate(doc["validators"]):
        v["address"] = f"{lab.addr(i)}:{c.base_port + i}"
    (directory / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n")
    for i in range(lab.n):
        path = c.config(i)
        text = path.read_text().replace('host = "127.0.0.1"', f'host = "{lab.addr(i)}"', 1)
        text = text.replace("heartbeat_ms = 5000", "heartbeat_ms = 500", 1)
        path.write_text(text)
    c.genesis = load_genesis(directory / "genesis.json")
    return c


async def post_envelopes(c: LocalCluster, node: int, envs: list[Any],
                         may_refuse: bool = False) -> bool:
    """POST envelopes to ``node``; with ``may_refuse`` a 503 (the node knows it
    lacks a quorum) is fine and returns False."""
    status, doc = await c.post(node, "/v1/records", json={
        "envelopes": [base64.b64encode(e.envelope_bytes).decode() for e in envs]})
    if status == 503 and may_refuse:
        return False
    if status != 202:
        raise AssertionError(f"submit to node{node}: {status} {doc}")
    return True


async def run_scenarios(directory: Path, lab: NetnsLab, which: list[str],
                        secure: bool = False) -> dict[str, Any]:
    from ledger.records import make_record, sign_record

    from .localnet import until

    c = _cluster(directory, lab, secure)
    everyone = list(range(lab.n))
    report: dict[str, Any] = {"partitions_healed": 0, "forks": 0, "scenarios": {}}
    from ledger.keys import load_key_file

    key = load_key_file(c.dir / "keys" / "demo.json").key
    nonce = [int(time.time() * 1000) * 1000]

    def envelopes(k: int) -> list[Any]:
        out = []
        for _ in range(k):
            nonce[0] += 1
            rec = make_record(chain=c.genesis.chain, submitter=key.public_key, nonce=nonce[0],
                              ts=int(time.time() * 1000), kind="payment",
                              origin={"system": "netns"}, body={"amount": nonce[0] % 1000},
                              parents=[])
            out.append(sign_record(rec, key))
        return out

    async def submit(node: int, envs: list[Any], may_refuse: bool = False) -> bool:
        return await post_envelopes(c, node, envs, may_refuse)

    async def height(i: int) -> int:
        st = await c.status(i)
        return -1 if st is None else int(st["height"])

    async def check_no_fork() -> int:
        top = max([await height(i) for i in everyone])
        await c.wait_height(everyone, top, timeout=60)
        ref = await c.header_hashes(0, top)
        forks = 0
        for i in everyone[1:]:
            if await c.header_hashes(i, top) != ref:
                forks += 1
        return forks

    try:
        for i in everyone:
            c.start(i)
        await c.wait_connected(everyone, timeout=60)
        warm = envelopes(5)
        await submit(0, warm)
        await c.wait_committed(everyone, warm[-1].id.hex())

        if "isolate" in which:
            victim = lab.n - 1
            lab.isolate(victim)
            stuck = await height(victim)
            batch = envelopes(20)
            rest = [i for i in everyone if i != victim]
            await submit(0, batch)
            await c.wait_committed(rest, batch[-1].id.hex(), timeout=60)
            during = await height(victim)
            lab.heal()
            report["partitions_healed"] += 1
            await c.wait_committed(everyone, batch[-1].id.hex(), timeout=60)
            forks = await check_no_fork()
            report["forks"] += forks
            report["scenarios"]["isolate"] = {"victim": victim, "victim_height_before": stuck,
                                              "victim_height_during": during,
                                              "majority_committed": True, "forks": forks}

        if "split" in which:
            half = lab.n // 2
            left, right = everyone[:half], everyone[half:]
            before = [await height(i) for i in everyone]
            lab.partition(left, right)
            a, b = envelopes(10), envelopes(10)
            # Each side may already know it lacks a quorum (503); resubmitted after the heal.
            accepted = [await submit(left[0], a, may_refuse=True),
                        await submit(right[0], b, may_refuse=True)]
            # No side holds a quorum: observe for several consensus timeouts.
            observe_until = time.monotonic() + 6.0
            advanced = False
            while time.monotonic() < observe_until:
                now = [await height(i) for i in everyone]
                if any(x > y for x, y in zip(now, before)):
                    advanced = True
                await asyncio.sleep(0.2)
            lab.heal()
            report["partitions_healed"] += 1
            await c.wait_connected(everyone, timeout=60)
            await submit(left[0], a)  # idempotent if it was accepted during the split
            await submit(right[0], b)
            await c.wait_committed(everyone, a[-1].id.hex(), timeout=90)
            await c.wait_committed(everyone, b[-1].id.hex(), timeout=90)
            forks = await check_no_fork()
            report["forks"] += forks
            report["scenarios"]["split"] = {"groups": [left, right],
                                            "committed_during_split": advanced,
                                            "accepted_during_split": accepted,
                                            "resumed_after_heal": True, "forks": forks}

        if "proposer" in which:
            h = max([await height(i) for i in everyone])
            from consensus import proposer_for

            victim = proposer_for(lab.n, h + 1, 0)
            batch = envelopes(20)
            other = next(i for i in everyone if i != victim)
            await submit(other, batch)
            lab.isolate(victim)  # mid-round: the proposal may or may not have left
            rest = [i for i in everyone if i != victim]
            await c.wait_committed(rest, batch[-1].id.hex(), timeout=60)
            lab.heal()
            report["partitions_healed"] += 1
            await c.wait_committed(everyone, batch[-1].id.hex(), timeout=60)
            forks = await check_no_fork()
            report["forks"] += forks
            report["scenarios"]["proposer"] = {"victim": victim, "height": h + 1,
                                               "majority_committed": True, "forks": forks}

        for i in everyone:
            status, doc = await c.get(i, "/v1/evidence")
            if status != 200 or doc["evidence"]:
                report.setdefault("failures", []).append(f"node{i} evidence: {doc}")

        async def clean() -> bool:
            return not any("Traceback" in c.log_path(i).read_text() for i in everyone)

        await until(clean, 1, "logs free of tracebacks")
        report["ok"] = report["forks"] == 0 and not report.get("failures") and \
            not report["scenarios"].get("split", {}).get("committed_during_split", False)
    finally:
        lab.heal()
        await c.stop_all()
    return report


def run_in_lab(directory: Path, which: list[str], timeout: float = 600,
               module: str = "harness.netns", secure: bool = False) -> dict[str, Any]:
    """Create a lab, run the scenarios (``module``'s ``run``) inside its hub
    namespace, remove the lab."""
    lab = NetnsLab(4)
    lab.up()
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", lab.hub, sys.executable, "-m", module, "run",
             "--tag", lab.tag, "--subnet", str(lab.subnet), "--dir", str(directory),
             *sum((["--scenario", w] for w in which), []), *(["--secure"] if secure else [])],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            cwd=str(Path(__file__).resolve().parent.parent))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"scenario runner failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    finally:
        lab.down()


# (directory, lab, scenarios[, secure=True]) -> report
ScenarioRunner = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def lab_main(prog: str, scenarios: list[str], run: ScenarioRunner,
             argv: list[str] | None = None) -> int:
    """The ``run`` command that the lab launches inside its hub namespace:
    run the named scenarios (default: all) and print the report as JSON."""
    p = argparse.ArgumentParser(prog=prog)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run scenarios (inside the lab's hub namespace)")
    r.add_argument("--tag", required=True)
    r.add_argument("--subnet", type=int, required=True)
    r.add_argument("--dir", type=Path, required=True)
    r.add_argument("--scenario", action="append", choices=scenarios)
    r.add_argument("--secure", action="store_true", help="TLS and signed requests")
    args = p.parse_args(argv)
    lab = NetnsLab(4, tag=args.tag, subnet=args.subnet)
    extra = {"secure": True} if args.secure else {}
    report = asyncio.run(run(args.dir, lab, args.scenario or scenarios, **extra))
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    return lab_main("python -m harness.netns", ["isolate", "split", "proposer"], run_scenarios, argv)


if __name__ == "__main__":
    sys.exit(main())
