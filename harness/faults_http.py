"""Hostile HTTP clients against real ``ledger-node`` processes (issue 21).

* ``gzipbomb`` - gzip bodies of ~1 MB that inflate to 1 GiB, posted to two
  nodes at once while a steady load commits through another: how the bombs
  are answered, how long other clients wait for ``/v1/status`` on a bombed
  node, the longest pause between commits, the fewest peer links a bombed
  node kept.
* ``greedy`` - connections that each pipeline requests for block sync
  answers and never read: the node's resident memory before, at its peak
  during and after, other clients' status latency, and how many connections
  the node cut for the write timeout.

Both print figures; ``scripts/faults`` runs them long, the tests short.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.crypto import SigningKey
from ledger.keys import load_key_file
from ledger.records import make_record, sign_record

from .localnet import LocalCluster
from node.syncauth import sign_request


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS) in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip member of ``inflated_mib`` MiB of zeros (about a thousandth of it)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    return b"".join(c.compress(chunk) for _ in range(inflated_mib)) + c.flush()


class _Load:
    """Steady records through one node, and the commit times seen on it."""

    def __init__(self, c: LocalCluster, node: int, pad: int = 0) -> None:
        self.c = c
        self.node = node
        self.key: SigningKey = load_key_file(c.dir / "keys" / "demo.json").key
        self.nonce = int(time.time() * 1000) * 1000
        self.pad = pad

    def envelopes(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            self.nonce += 1
            body: dict[str, Any] = {"amount": self.nonce % 10_000}
            if self.pad:
                body["pad"] = "x" * self.pad
            record = make_record(chain=self.c.genesis.chain, submitter=self.key.public_key,
                                 nonce=self.nonce, ts=int(time.time() * 1000), kind="payment",
                                 origin={"system": "faults"}, body=body, parents=[])
            out.append(base64.b64encode(sign_record(record, self.key).envelope_bytes).decode())
        return out

    async def post(self, n: int) -> None:
        status, doc = await self.c.post(self.node, "/v1/records",
                                        json={"envelopes": self.envelopes(n)})
        if status != 202:
            raise RuntimeError(f"submission refused: {status} {doc}")


async def _probe_status(c: LocalCluster, node: int, stop: asyncio.Event,
                        latencies: list[float], peers_seen: list[int]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        got = await c.try_get(node, "/v1/status")
        latencies.append(time.monotonic() - started)
        if got is not None and got[0] == 200:
            peers_seen.append(sum(1 for p in got[1]["peers"] if p["connected"]))
        else:
            peers_seen.append(-1)
        await asyncio.sleep(0.1)


async def _commit_gaps(c: LocalCluster, node: int, stop: asyncio.Event, gaps: list[float]) -> None:
    """The longest time between two height increases seen on ``node``."""
    last_height, last_change = -1, time.monotonic()
    while not stop.is_set():
        st = await c.status(node)
        now = time.monotonic()
        if st is not None and st["height"] > last_height:
            if last_height >= 0:
                gaps.append(now - last_change)
            last_height, last_change = st["height"], now
        await asyncio.sleep(0.05)
    gaps.append(time.monotonic() - last_change)


# -- gzip bombs ------------------------------------------------------------------


@dataclass
class BombReport:
    bombs: int = 0
    bomb_wire_bytes: int = 0
    bomb_inflates_to_bytes: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    slowest_answer_s: float = 0.0
    status_max_ms_before: float = 0.0  # bombed nodes, in a window of load without bombs
    longest_commit_pause_s_before: float = 0.0
    status_max_ms_bombed: float = 0.0
    status_max_ms_other: float = 0.0
    longest_commit_pause_s: float = 0.0
    fewest_peer_links_bombed: int = 0
    height_before: int = 0
    height_after: int = 0


async def _one_bomb(port: int, bomb: bytes) -> tuple[str, float]:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return f"connect failed ({type(exc).__name__})", 0.0
    try:
        writer.write(b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(bomb))
        writer.write(bomb)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        line = await asyncio.wait_for(reader.readline(), 120)
        answer = line.decode("latin-1").split(" ", 2)[1] if line else "closed"
    except (TimeoutError, ConnectionError, IndexError) as exc:
        answer = type(exc).__name__
    finally:
        writer.close()
    return answer, time.monotonic() - started


async def gzip_bombs(directory: Path, *, per_node: int = 10, bombed: tuple[int, ...] = (1, 2),
                     inflated_mib: int = 1024, window_s: float = 30.0,
                     baseline_s: float = 15.0, progress: Any = None) -> BombReport:
    say = progress or (lambda msg: None)
    rep = BombReport()
    c = LocalCluster(directory, 4)
    bomb = gzip_bomb(inflated_mib)
    rep.bomb_wire_bytes, rep.bomb_inflates_to_bytes = len(bomb), inflated_mib << 20
    other = next(i for i in range(4) if i not in bombed)
    try:
        await c.start_all(timeout=60)
        load = _Load(c, other)
        stop = asyncio.Event()

        async def loading() -> None:
            while not stop.is_set():
                await load.post(20)
                await asyncio.sleep(0.1)

        loader = asyncio.create_task(loading())
        await asyncio.sleep(3)  # commits under way
        calm = asyncio.Event()
        lat_calm: list[float] = []
        gaps_calm: list[float] = []
        baseline = [asyncio.create_task(_probe_status(c, i, calm, lat_calm, []))
                    for i in bombed]
        baseline.append(asyncio.create_task(_commit_gaps(c, other, calm, gaps_calm)))
        say(f"baseline: {baseline_s:g} s of load without bombs")
        await asyncio.sleep(baseline_s)
        calm.set()
        await asyncio.gather(*baseline)
        rep.status_max_ms_before = round(max(lat_calm, default=0) * 1000, 1)
        rep.longest_commit_pause_s_before = round(max(gaps_calm, default=0), 2)
        rep.height_before = (await c.status(other) or {}).get("height", 0)
        lat_bombed: list[float] = []
        lat_other: list[float] = []
        peers: list[int] = []
        gaps: list[float] = []
        probes = [asyncio.create_task(_probe_status(c, i, stop, lat_bombed, peers))
                  for i in bombed]
        probes.append(asyncio.create_task(_probe_status(c, other, stop, lat_other, [])))
        probes.append(asyncio.create_task(_commit_gaps(c, other, stop, gaps)))
        say(f"{per_node} gzip bombs ({len(bomb)} bytes -> {inflated_mib} MiB) to nodes {bombed}")
        started = time.monotonic()
        results = await asyncio.gather(*(_one_bomb(c.base_port + i, bomb)
                                         for i in bombed for _ in range(per_node)))
        rep.bombs = len(results)
        rep.answers = dict(Counter(a for a, _ in results))
        rep.slowest_answer_s = round(max(s for _, s in results), 2)
        say(f"answers {rep.answers}, slowest {rep.slowest_answer_s} s; watching "
            f"{window_s:g} s from the first bomb")
        await asyncio.sleep(max(0.0, window_s - (time.monotonic() - started)))
        stop.set()
        await asyncio.gather(*probes, loader, return_exceptions=True)
        rep.status_max_ms_bombed = round(max(lat_bombed, default=0) * 1000, 1)
        rep.status_max_ms_other = round(max(lat_other, default=0) * 1000, 1)
        rep.longest_commit_pause_s = round(max(gaps, default=0), 2)
        rep.fewest_peer_links_bombed = min(peers, default=-1)
        rep.height_after = (await c.status(other) or {}).get("height", 0)
    finally:
        await c.stop_all()
    return rep


# -- clients that do not read ----------------------------------------------------


@dataclass
class GreedyReport:
    connections: int = 0
    pipelined: int = 0
    signed: bool = False
    answer_bytes: int = 0
    chain_height: int = 0
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    status_max_ms: float = 0.0
    cut_for_write_timeout: int = 0
    refused_per_client: int = 0


GREEDY_TOML = ("max_body_bytes = 16777216", "max_body_bytes = 16777216\n"
               "write_timeout_ms = {write_ms}")


async def _fill(c: LocalCluster, node: int, megabytes: float) -> None:
    """Commit about ``megabytes`` of records of ~7.5 KB each."""
    load = _Load(c, node, pad=7000)
    for _ in range(max(1, int(megabytes * 1024 * 1024 / 7500 / 50))):
        await load.post(50)
    last = load.envelopes(1)
    status, doc = await c.post(node, "/v1/records", json={"envelopes": last})
    assert status == 202, doc
    running = [i for i, proc in c.procs.items() if proc.poll() is None]
    await c.wait_committed(running, doc["results"][0]["id"], timeout=120)


def _greedy_request(c: LocalCluster, target_node: int, signed: bool) -> bytes:
    target = "/v1/sync/blocks?from=1"
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if signed:  # as validator (target_node + 1) % n, whose key the cluster directory holds
        me = (target_node + 1) % c.n
        key = load_key_file(c.dir / "keys" / f"node{me}.json").key
        server = c.genesis.validators[target_node].pubkey
        for name, value in sign_request(c.genesis, key, me, server, target,
                                        int(time.time() * 1000)).items():
            head += f"{name}: {value}\r\n"
    return (head + "\r\n").encode()


async def greedy_clients(directory: Path, *, connections: int = 100, pipelined: int = 5,
                         fill_mb: float = 8.0, watch_s: float = 10.0, write_timeout_ms: int = 5000,
                         signed: bool = False, node: int = 1, cluster: LocalCluster | None = None,
                         progress: Any = None) -> GreedyReport:
    """``connections`` sockets to ``node`` that each send ``pipelined`` block
    sync requests and never read; RSS sampled for ``watch_s`` seconds, then
    the sockets are closed and RSS read again two seconds later."""
    say = progress or (lambda msg: None)
    rep = GreedyReport(connections=connections, pipelined=pipelined, signed=signed)
    own = cluster is None
    # (write_timeout_ms 0: node.toml as written, for nodes that predate the setting)
    c = cluster or LocalCluster(
        directory, 4, params={"max_block_records": 50},
        toml_edits={i: [(GREEDY_TOML[0], GREEDY_TOML[1].format(write_ms=write_timeout_ms))]
                    for i in range(4)} if write_timeout_ms > 0 else None)
    socks: list[socket.socket] = []
    try:
        if own:
            await c.start_all(timeout=60)
            say(f"committing ~{fill_mb:g} MB of records")
            await _fill(c, 0, fill_mb)
        st = await c.status(node)
        rep.chain_height = st["height"] if st else 0
        sample = _greedy_request(c, node, True)
        rep.answer_bytes = await asyncio.to_thread(_answer_size, c.base_port + node, sample)
        pid = c.procs[node].pid
        await asyncio.sleep(1.0)
        rep.rss_before_mb = round(rss_mb(pid), 1)
        cut_before = await c.metric(node, "ledger_http_connections_timed_out_total",
                                    reason="write")
        refused_before = await c.metric(node, "ledger_http_connections_timed_out_total",
                                        reason="per_client")
        request = _greedy_request(c, node, signed) * pipelined
        say(f"{connections} connections x {pipelined} pipelined sync requests "
            f"({'signed' if signed else 'unsigned'}; one answer is {rep.answer_bytes} bytes), "
            "never read")
        for _ in range(connections):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", c.base_port + node))
                s.send(request)
            except OSError:
                pass
            socks.append(s)
        stop = asyncio.Event()
        latencies: list[float] = []
        prober = asyncio.create_task(_probe_status(c, node, stop, latencies, []))
        peak = rep.rss_before_mb
        deadline = time.monotonic() + watch_s
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.1)
        stop.set()
        await prober
        rep.rss_peak_mb = round(peak, 1)
        rep.status_max_ms = round(max(latencies, default=0) * 1000, 1)
        rep.cut_for_write_timeout = int(await c.metric(
            node, "ledger_http_connections_timed_out_total", reason="write") - cut_before)
        rep.refused_per_client = int(await c.metric(
            node, "ledger_http_connections_timed_out_total", reason="per_client")
            - refused_before)
        for s in socks:
            s.close()
        socks.clear()
        await asyncio.sleep(2.0)
        rep.rss_after_mb = round(rss_mb(pid), 1)
        say(f"RSS {rep.rss_before_mb} -> peak {rep.rss_peak_mb} -> {rep.rss_after_mb} MB")
    finally:
        for s in socks:
            s.close()
        if own:
            await c.stop_all()
    return rep


def _answer_size(port: int, request: bytes) -> int:
    """The size of one answer to ``request``, read whole (chunked or not)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        line = request.split(b"\r\n")
        method, target, _ = line[0].decode().split(" ")
        headers = dict(h.decode().split(": ", 1) for h in line[1:] if b": " in h)
        headers.pop("Host", None)
        conn.request(method, target, headers=headers)
        return len(conn.getresponse().read())
    finally:
        conn.close()
