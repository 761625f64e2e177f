"""A local cluster of real ``ledger-node`` processes, for tests and scripts.

Each node runs as a child process (its log in ``<dir>/node<i>.log``) that the
kernel SIGTERMs if this process dies.  Every process is addressed by the pid
it was started with: kill, stop, continue and restart never touch anything
else.  Waiting is always polling with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import json as _json
import os
import random
import signal
import ssl
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ledger.crypto import SigningKey
from ledger.genesis import Genesis, load_genesis
from ledger.keys import load_key_file, write_key_file
from ledger.reqsig import RequestSigner

from node.cluster import _die_with_parent, init_cluster, node_command, node_toml
from node.tls_certs import make_ca, make_node_cert

HARNESS_IDENTITY = "harness"  # the key a cluster with auth signs its own requests with
# Fast consensus for tests: a dead proposer costs about a second.
FAST_PARAMS = {"timeout_propose_ms": 1000, "timeout_prevote_ms": 500,
               "timeout_precommit_ms": 500, "timeout_delta_ms": 250}


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_base_port(n: int, lo: int = 10_000, hi: int | None = None) -> int:
    """A base port P such that P..P+n-1 are free on 127.0.0.1 right now.

    The block lies below the ephemeral range: the ports are only checked here
    and bound later by the nodes, and in between any outgoing connection on the
    machine could be given one of them as its local port ("address already in
    use" when the node starts)."""
    if hi is None:
        hi = ephemeral_port_range()[0]
    if hi - n <= lo:
        raise RuntimeError(f"no room for {n} ports in {lo}..{hi}")
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(lo, hi - n)
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports found")


async def until(cond: Callable[[], Awaitable[bool]], timeout: float, what: str,
                interval: float = 0.05) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await cond():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class LocalCluster:
    def __init__(self, directory: Path, n: int = 4, *, params: dict[str, Any] | None = None,
                 toml_edits: dict[int, list[tuple[str, str]]] | None = None,
                 submitters: dict[str, list[str]] | None = None, members: bool = False,
                 tls: bool = False, auth: bool = False, spare: int = 0) -> None:
        """``submitters`` adds genesis submitters (name -> roles) with key files;
        ``members`` writes a member key per node (``keys/member<i>.json``, as
        ``ledger-cluster init`` does) for governance.  With ``tls`` the nodes
        serve HTTPS with certificates from a local CA (``ca_file``); otherwise
        plain HTTP (``tls.insecure_plaintext``).  With ``auth`` every request
        must be signed by a registered key (PROTOCOL §11): the cluster's own
        requests (``get``, ``post``, ``metric``...) are signed with
        ``keys/harness.json``, a genesis submitter with the roles ``audit``
        and ``submit`` (:attr:`harness_key`); otherwise the nodes answer
        anyone (``auth.insecure_open``).  ``spare`` reserves ports for that
        many validators governance adds later (:meth:`add_validator`)."""
        self.dir = directory
        self.n = n
        self.tls = tls
        self.auth = auth
        self.base_port = free_base_port(n + spare)
        doc = init_cluster(directory, n, self.base_port,
                           params=dict(FAST_PARAMS, **(params or {})), members=members,
                           tls=tls, auth=auth)
        if auth:
            submitters = dict(submitters or {}, **{HARNESS_IDENTITY: ["audit", "submit"]})
        for name, roles in (submitters or {}).items():
            key = SigningKey.generate()
            write_key_file(directory / "keys" / f"{name}.json", name, key)
            doc["submitters"].append({"name": name, "pubkey": key.public_key.hex(),
                                      "roles": roles})
        (directory / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n")
        for i, edits in (toml_edits or {}).items():
            path = self.config(i)
            text = path.read_text()
            for old, new in edits:
                if old not in text:
                    raise ValueError(f"node{i}.toml has no {old!r}")
                text = text.replace(old, new, 1)
            path.write_text(text)
        self.genesis: Genesis = load_genesis(directory / "genesis.json")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.session: aiohttp.ClientSession | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self._org_cas: list[Path] = []  # CAs of validators added later (add_validator)
        self._signer = (RequestSigner(load_key_file(self.harness_key).key) if auth else None)

    @property
    def harness_key(self) -> Path:
        """The key file the cluster signs its own requests with (with ``auth``)."""
        return self.dir / "keys" / f"{HARNESS_IDENTITY}.json"

    def signed(self, method: str, url: str, body: bytes | None = None) -> dict[str, str]:
        """Headers signing ``method url`` with the harness key (none without ``auth``)."""
        return self._signer.headers(method, url, body) if self._signer is not None else {}

    def add_validator(self) -> tuple[int, SigningKey, str]:
        """Files for one more node, not in genesis: its key, ``node<n>/node.toml``
        (an empty data directory).  Returns ``(index, key, address)``: a
        ``gov.validator.add`` with that key and address makes it a validator;
        :meth:`start` runs it (it joins by catching up from the others).

        With TLS the new organisation has its own CA (``tls/org<n>/ca.pem``),
        which no other node's ``tls.ca_file`` holds: its certificate
        ``tls/node<n>.pem`` is signed by it, and its own ``ca_file`` is the
        cluster's (it trusts the others).  The cluster's own HTTPS client
        trusts the new CA too."""
        i = self.n
        key = SigningKey.generate()
        write_key_file(self.dir / "keys" / f"node{i}.json", f"node{i}", key)
        node_dir = self.dir / f"node{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            org = make_ca(self.dir / "tls" / f"org{i}", f"organisation {i} CA")
            make_node_cert(org, self.dir / "tls", f"node{i}", ["127.0.0.1", "localhost"])
            self._org_cas.append(self.dir / "tls" / f"org{i}" / "ca.pem")
            if self._client_ssl is not None:
                self._client_ssl.load_verify_locations(cafile=str(self._org_cas[-1]))
        (node_dir / "node.toml").write_text(
            node_toml(i, self.base_port + i, tls=self.tls, auth=self.auth), encoding="utf-8")
        self.n += 1
        return i, key, f"127.0.0.1:{self.base_port + i}"

    def config(self, i: int) -> Path:
        return self.dir / f"node{i}" / "node.toml"

    @property
    def ca_file(self) -> Path | None:
        """The cluster CA's certificate (None without TLS)."""
        return self.dir / "tls" / "ca.pem" if self.tls else None

    def url(self, i: int) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.base_port + i}"

    def log_path(self, i: int) -> Path:
        return self.dir / f"node{i}.log"

    # -- processes ---------------------------------------------------------

    def start(self, i: int, command: list[str] | None = None) -> None:
        """Start node ``i``: ``ledger-node``, or ``command`` (a Byzantine one,
        harness/byzantine.py)."""
        assert i not in self.procs or self.procs[i].poll() is not None, f"node{i} is running"
        parent = os.getpid()
        log = open(self.log_path(i), "ab")
        argv = node_command(self.config(i)) if command is None else command
        self.procs[i] = subprocess.Popen(argv, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=lambda: _die_with_parent(parent))
        log.close()

    async def start_all(self, timeout: float = 30.0) -> list[int]:
        """Start every node and wait until each has a link to every other;
        returns their indexes."""
        everyone = list(range(self.n))
        for i in everyone:
            self.start(i)
        await self.wait_connected(everyone, timeout)
        return everyone

    def signal(self, i: int, sig: signal.Signals) -> None:
        proc = self.procs[i]
        if proc.poll() is None:
            os.kill(proc.pid, sig)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (by its pid) and reap it."""
        self.signal(i, signal.SIGKILL)
        self.procs[i].wait(10)

    async def stop_all(self, grace: float = 10.0) -> None:
        for i, proc in self.procs.items():
            if proc.poll() is None:
                self.signal(i, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                self.signal(i, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if self.session is not None:
            await self.session.close()
            self.session = None

    def tail(self, i: int, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(i).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- HTTP ----------------------------------------------------------------

    def http(self) -> aiohttp.ClientSession:
        if self.session is None:
            if self.ca_file is not None:
                self._client_ssl = ssl.create_default_context(cafile=str(self.ca_file))
                for org in self._org_cas:
                    self._client_ssl.load_verify_locations(cafile=str(org))
            connector = (aiohttp.TCPConnector(ssl=self._client_ssl)
                         if self._client_ssl is not None else None)
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20),
                                                 connector=connector)
        return self.session

    async def get(self, i: int, path: str) -> tuple[int, Any]:
        url = self.url(i) + path
        async with self.http().get(URL(url, encoded=True), headers=self.signed("GET", url)) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("application/json"):
                return resp.status, json.loads(body)
            return resp.status, body

    async def try_get(self, i: int, path: str) -> tuple[int, Any] | None:
        try:
            return await self.get(i, path)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    async def post(self, i: int, path: str, *, data: bytes | None = None, json: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST ``data`` (or ``json``, encoded here so that its digest is signed)."""
        hdrs = dict(headers or {})
        if json is not None:
            data = _json.dumps(json).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = self.url(i) + path
        hdrs.update(self.signed("POST", url, data))
        async with self.http().post(URL(url, encoded=True), data=data, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def status(self, i: int) -> dict[str, Any] | None:
        got = await self.try_get(i, "/v1/status")
        return got[1] if got is not None and got[0] == 200 else None

    async def wait_connected(self, nodes: list[int], timeout: float = 30.0) -> None:
        """Every node in ``nodes`` serves and has a link to every other one of them."""
        async def ok() -> bool:
            for i in nodes:
                st = await self.status(i)
                if st is None:
                    return False
                up = {p["index"] for p in st["peers"] if p["connected"]}
                if not set(nodes) - {i} <= up:
                    return False
            return True

        await until(ok, timeout, f"nodes {nodes} to connect")

    async def wait_height(self, nodes: list[int], height: int, timeout: float = 30.0) -> None:
        async def ok() -> bool:
            for i in nodes:
                st = await self.status(i)
                if st is None or st["height"] < height:
                    return False
            return True

        await until(ok, timeout, f"nodes {nodes} to reach height {height}")

    async def wait_committed(self, nodes: list[int], record_id: str, timeout: float = 30.0) -> None:
        async def ok() -> bool:
            for i in nodes:
                got = await self.try_get(i, f"/v1/records/{record_id}")
                if got is None or got[0] != 200 or got[1]["status"] != "committed":
                    return False
            return True

        await until(ok, timeout, f"record {record_id[:16]} committed on {nodes}")

    async def header_hashes(self, i: int, upto: int) -> list[str]:
        out = []
        for h in range(1, upto + 1):
            status, doc = await self.get(i, f"/v1/blocks/{h}")
            assert status == 200, (i, h, doc)
            out.append(doc["hash"])
        return out

    async def metric(self, i: int, name: str, **labels: str) -> float:
        """A sample from node ``i``'s /metrics (0 when absent)."""
        _, text = await self.get(i, "/metrics")
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                       if labels else "")
        for line in text.decode().splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
