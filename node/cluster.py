"""``ledger-cluster``: write a local cluster's files (PROTOCOL §7) and run it.

``init`` writes ``genesis.json``, ``keys/<name>.json`` (0600),
``node<i>/node.toml`` and (unless ``--insecure-plaintext``) a local CA and
per-node certificates under ``tls/``; ``up`` runs every node as a child process in the
foreground, prefixes their log lines, and stops them all on SIGINT/SIGTERM.
Children ask the kernel to SIGTERM them when the runner dies
(PR_SET_PDEATHSIG), so even a SIGKILLed runner leaves no orphan.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ledger.crypto import SigningKey
from ledger.genesis import DEFAULT_RECORD_TS_FUTURE_MS, DEFAULT_RECORD_TS_PAST_MS
from ledger.keys import write_key_file

from .settings_chain import DEFAULT_BLOCK_RECORDS
from .tls_certs import make_ca, make_node_cert

DEFAULT_BASE_PORT = 7700
DEFAULT_CHAIN = "demo"
DEMO_SUBMITTER = "demo"
DEMO_ROLES = ["read", "submit"]  # submits records and reads them back (PROTOCOL §11.4)
MEMBER_PREFIX = "member"
PR_SET_PDEATHSIG = 1

# Written into genesis params: what every validator must agree on.
DEFAULT_PARAMS: dict[str, int] = {
    "timeout_propose_ms": 3000,
    "timeout_prevote_ms": 1000,
    "timeout_precommit_ms": 1000,
    "timeout_delta_ms": 500,
    "max_block_records": DEFAULT_BLOCK_RECORDS,
    "max_clock_skew_ms": 10000,
    # The record ts window (ledger/genesis.py says why these values).
    "record_ts_past_ms": DEFAULT_RECORD_TS_PAST_MS,
    "record_ts_future_ms": DEFAULT_RECORD_TS_FUTURE_MS,
}


def tls_toml(index: int | None) -> str:
    """The ``[tls]`` table: node ``index``'s certificate from ``tls/``, or
    plaintext (``index`` None) for a local demo without TLS."""
    if index is None:
        return "[tls]\n# Plain HTTP and WebSocket: local demos only.\ninsecure_plaintext = true\n"
    return (f'[tls]\ncert_file = "../tls/node{index}.pem"\nkey_file = "../tls/node{index}.key"\n'
            'ca_file = "../tls/ca.pem"\n')


def auth_toml(auth: bool) -> str:
    """The ``[auth]`` table: signed requests (PROTOCOL §11), or none at all."""
    if not auth:
        return ("[auth]\n# No request authentication: every route answers anyone. Local demos "
                "and tests only.\ninsecure_open = true\n")
    return ("[auth]\n# Every request but /health is signed by a registered key (PROTOCOL §11).\n"
            "window_ms = 60000\n")


def node_toml(index: int, port: int, host: str = "127.0.0.1", tls: bool = True,
              auth: bool = True) -> str:
    """The TOML of node ``index``; paths are relative to the file itself."""
    return f"""# node{index} of a local auditledger cluster (PROTOCOL §7).
# Every key is optional except node.name, node.key_file and http.port;
# see node/config.py for the full list and defaults.

[node]
name = "node{index}"
genesis = "../genesis.json"
key_file = "../keys/node{index}.json"
data_dir = "data"

[http]
host = "{host}"
port = {port}
max_body_bytes = 16777216

[limits]
max_mempool = 20000
max_request_envelopes = 5000
max_block_records = {DEFAULT_BLOCK_RECORDS}

[gossip]
batch = 500
interval_ms = 20

[peers]
queue_size = 4096
queue_bytes = 16777216
max_age_ms = 5000
reconnect_initial_ms = 100
reconnect_max_ms = 3000
heartbeat_ms = 5000

[sync]
batch_blocks = 64

""" + tls_toml(index if tls else None) + "\n" + auth_toml(auth) + """
[log]
level = "info"
"""


def init_cluster(
    directory: Path,
    nodes: int,
    base_port: int = DEFAULT_BASE_PORT,
    chain: str = DEFAULT_CHAIN,
    params: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    containers: bool = False,
    members: bool = False,
    tls: bool = True,
    auth: bool = True,
) -> dict[str, Any]:
    """Write the cluster files into ``directory``; return the genesis document.

    With ``containers`` each node runs in a container of its own, named
    ``node<i>`` (deploy/compose.yaml): validator i's address is
    ``node<i>:<base_port>`` and every node listens on ``0.0.0.0:<base_port>``
    inside its container.  With ``members`` it also writes one member
    (administrator) key per node, ``keys/member<i>.json``, listed in genesis
    ``members`` (PROTOCOL §9.1), so the demo can run governance.  With
    ``tls`` (the default) it makes a local CA (``tls/ca.pem``, ``tls/ca.key``)
    and a certificate per node (``tls/node<i>.pem``, ``.key``) for the node's
    address host, ``localhost`` and 127.0.0.1; without it the nodes serve
    plaintext (``tls.insecure_plaintext``).  With ``auth`` (the default) every
    request must be signed by a registered key (PROTOCOL §11); the ``demo``
    submitter may submit and read; without it the nodes answer anyone
    (``auth.insecure_open``)."""
    if nodes < 1:
        raise ValueError("a cluster needs at least one node")
    if not 1 <= base_port <= 65535 - (0 if containers else nodes):
        raise ValueError("base port out of range")
    directory.mkdir(parents=True, exist_ok=True)
    keys_dir = directory / "keys"
    tls_dir = directory / "tls"
    ca = make_ca(tls_dir) if tls else None
    validators = []
    for i in range(nodes):
        key = SigningKey.generate()
        write_key_file(keys_dir / f"node{i}.json", f"node{i}", key)
        port = base_port if containers else base_port + i
        address = f"node{i}:{port}" if containers else f"{host}:{port}"
        validators.append({"name": f"node{i}", "pubkey": key.public_key.hex(), "address": address})
        node_dir = directory / f"node{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        listen = "0.0.0.0" if containers else host
        (node_dir / "node.toml").write_text(node_toml(i, port, listen, tls, auth),
                                            encoding="utf-8")
        if ca is not None:
            make_node_cert(ca, tls_dir, f"node{i}",
                           [address.rpartition(":")[0], "localhost", "127.0.0.1"])
    demo = SigningKey.generate()
    write_key_file(keys_dir / f"{DEMO_SUBMITTER}.json", DEMO_SUBMITTER, demo)
    genesis = {
        "chain": chain,
        "validators": validators,
        "submitters": [
            {"name": DEMO_SUBMITTER, "pubkey": demo.public_key.hex(), "roles": DEMO_ROLES}
        ],
        "params": dict(DEFAULT_PARAMS, **(params or {})),
    }
    if members:
        member_docs = []
        for i in range(nodes):
            key = SigningKey.generate()
            write_key_file(keys_dir / f"{MEMBER_PREFIX}{i}.json", f"{MEMBER_PREFIX}{i}", key)
            member_docs.append({"name": f"{MEMBER_PREFIX}{i}", "pubkey": key.public_key.hex()})
        genesis["members"] = member_docs
    (directory / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n", encoding="utf-8")
    return genesis


# --------------------------------------------------------------------------
# Running nodes as children
# --------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: SIGTERM this child when the runner dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass  # not Linux: Ctrl-C/SIGTERM handling below still stops the children
    if os.getppid() != parent_pid:
        # The parent died between fork and prctl: the signal will never come.
        os._exit(1)


def node_command(config: Path) -> list[str]:
    """``ledger-node --config ...``, from the same venv as this process."""
    exe = shutil.which("ledger-node", path=str(Path(sys.executable).parent))
    if exe:
        return [exe, "--config", str(config)]
    return [sys.executable, "-m", "node.main", "--config", str(config)]


def spawn_node(config: Path, **kwargs: Any) -> asyncio.Future[asyncio.subprocess.Process]:
    parent = os.getpid()
    return asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *node_command(config),
            preexec_fn=lambda: _die_with_parent(parent),
            **kwargs,
        )
    )


async def _pump(name: str, stream: asyncio.StreamReader, width: int) -> None:
    prefix = f"{name:<{width}} | "
    while True:
        line = await stream.readline()
        if not line:
            return
        sys.stdout.write(prefix + line.decode("utf-8", "replace").rstrip("\n") + "\n")
        sys.stdout.flush()


async def run_cluster(directory: Path, grace_s: float = 10.0) -> int:
    """Run every ``node*/node.toml`` under ``directory`` until SIGINT/SIGTERM."""
    configs = sorted(directory.glob("node*/node.toml"), key=lambda p: int(p.parent.name[4:] or 0))
    if not configs:
        click.echo(f"no node*/node.toml under {directory}; run `ledger-cluster init` first", err=True)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    width = max(len(c.parent.name) for c in configs)
    procs: list[tuple[str, asyncio.subprocess.Process]] = []
    pumps = []
    for cfg in configs:
        proc = await spawn_node(
            cfg, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert proc.stdout is not None
        procs.append((cfg.parent.name, proc))
        pumps.append(asyncio.ensure_future(_pump(cfg.parent.name, proc.stdout, width)))
    click.echo(f"cluster up: {len(procs)} nodes (pids {', '.join(str(p.pid) for _, p in procs)})",
               err=True)
    waiters = [asyncio.ensure_future(p.wait()) for _, p in procs]
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper not in done:
        for name, proc in procs:
            if proc.returncode is not None:
                click.echo(f"{name} exited with {proc.returncode}; stopping the cluster", err=True)
        code = 1
    await stop_processes([p for _, p in procs], grace_s)
    await asyncio.gather(*pumps, return_exceptions=True)
    stopper.cancel()
    return code


async def stop_processes(procs: Sequence[asyncio.subprocess.Process], grace_s: float) -> None:
    """SIGTERM each still-running child (by its pid), SIGKILL after ``grace_s``."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace_s)
    except TimeoutError:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*(p.wait() for p in procs))


@click.group()
@click.version_option(package_name="auditledger", prog_name="ledger-cluster")
def main() -> None:
    """Create and run a local auditledger cluster."""


@main.command()
@click.option("--nodes", "-n", type=click.IntRange(1, 100), default=4, show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--base-port", type=click.IntRange(1, 65000), default=DEFAULT_BASE_PORT, show_default=True)
@click.option("--chain", default=None,
              help="the chain id; default: demo- and 16 random hex digits, fresh each time")
@click.option("--force", is_flag=True, help="overwrite an existing cluster directory")
@click.option("--containers", is_flag=True,
              help="one container per node, named node<i> (deploy/compose.yaml): addresses "
                   "node<i>:<base-port>, every node listening on 0.0.0.0:<base-port>")
@click.option("--insecure-plaintext", is_flag=True,
              help="no TLS: plain HTTP and WebSocket (tls.insecure_plaintext), for local demos; "
                   "by default init makes a local CA and a certificate per node under tls/")
@click.option("--insecure-open", is_flag=True,
              help="no request authentication (auth.insecure_open), for local demos; by default"
                   " every request but /health must be signed by a registered key")
@click.option("--public-read", is_flag=True,
              help="genesis param public_read = 1: the read routes answer callers without a "
                   "registered key (a public demo's explorer)")
def init(nodes: int, directory: Path, base_port: int, chain: str | None, force: bool,
         containers: bool, insecure_plaintext: bool, insecure_open: bool,
         public_read: bool) -> None:
    """Write genesis.json, keys/ and node<i>/node.toml (PROTOCOL §7)."""
    if (directory / "genesis.json").exists() and not force:
        raise click.UsageError(f"{directory} already holds a cluster (use --force or a new --dir)")
    if chain is None:
        # A fresh id per demo: two unrelated demo clusters are never one chain
        # to an auditor's checkpoint (issue 23).
        chain = f"demo-{secrets.token_hex(8)}"
    init_cluster(directory, nodes, base_port, chain, containers=containers, members=True,
                 tls=not insecure_plaintext, auth=not insecure_open,
                 params={"public_read": 1} if public_read else None)
    scheme = "HTTP" if insecure_plaintext else "HTTPS (CA: tls/ca.pem)"
    where = (f"node0..node{nodes - 1} on port {base_port}" if containers
             else f"{scheme} on 127.0.0.1:{base_port}..{base_port + nodes - 1}")
    click.echo(f"wrote a {nodes}-node cluster for chain {chain!r} to {directory} ({where})")


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True)
def up(directory: Path) -> None:
    """Run every node of the cluster until Ctrl-C or SIGTERM."""
    sys.exit(asyncio.run(run_cluster(directory)))


from node.cluster_keys import genesis_command, keygen_command  # noqa: E402 (they import this)

main.add_command(keygen_command)
main.add_command(genesis_command)


if __name__ == "__main__":
    main()
