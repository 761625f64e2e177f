"""One validator node, wired together: store, mempool, transport, driver, API.

Everything is built once from the :class:`NodeConfig` and handed down; this
module owns no logic of its own beyond routing peer frames to the right
component and keeping the metrics that span several of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from consensus import ConsensusConfig
from ledger.blocks import Header
from ledger.chain import ChainStore, upgrade_schema
from ledger.errors import Unavailable
from ledger.genesis import Validator
from ledger.statesync import below_snapshot, history_reason
from ledger.schema import SCHEMA_VERSION
from ledger.pending import PendingRecords
from ledger.records import Envelope
from ledger.storage import LevelDBStore, set_background_nice

from .policy_runtime import install_policy_engine
from . import peer_messages
from .aio import cancel_all
from .api import SERVER_OPTIONS, build_app, parse_uint
from .auth import Authenticator
from .ratelimit import ClientLimits, identity_key
from .operator_http import build_operator_app
from .assembly import ProposalAssembler
from .backup import AdminServer
from .chainapp import NodeApplication
from .config import NodeConfig
from .driver import Driver, evidence_json, now_ms
from .failstop import FailStop, FailStopStore
from .fdlimit import table_files_allowed
from .durable import PendingWriter
from .gctune import GcAccounting, tune_after_start
from .health import Health
from .httpconn import GuardedTCPSite, HeadTimeout
from .logs import LogContext, process_age_s
from .mempool import Mempool
from .mempool_links import AdmittedLeaves, PeerBacklog
from .memtune import trim_every, trimmer
from .metrics import ASSEMBLY_OUTCOMES, Metrics
from .checkpoints import Checkpoints
from .peer_messages import Status, WantSigs
from .breakers import BreakerTracker
from .reviews import ReviewMetrics
from .webhooks import Webhooks
from .stream import BlockStream
from .statesync import HistoryBackfill, join_by_snapshot, snapshot_response
from .sync import BlockSync, serve_blocks
from .syncauth import check_request, sign_request
from .transport import PeerTransport, settings_from_config
from .validator_set import ValidatorLinks
from .app_peers import PeerRouting

log = logging.getLogger("node.app")

STATUS_INTERVAL_S = 1.0
MAX_GOSSIP_BACKLOG = 64  # batches of gossiped envelopes waiting for admission (up to 500 each)

class Node(PeerRouting):
    def __init__(self, config: NodeConfig, log_ctx: LogContext,
                 fail: FailStop | None = None) -> None:
        # Every write to the store and every commit/persist effect ends here
        # on failure: the process exits (node/failstop.py).
        self.fail = fail or FailStop()
        self.config = config
        self.chain_dir = config.data_dir / "chain"
        self.log_ctx = log_ctx
        self.name = config.name
        self.genesis = config.genesis
        self.metrics = Metrics()
        self._chain: ChainStore | None = None
        self._runner: web.AppRunner | None = None
        self._operator: web.AppRunner | None = None
        self.store_open_s = 0.0
        self._compaction_reniced = False
        self._tasks: list[asyncio.Task[None]] = []
        self._gossip_in: asyncio.Queue[list[bytes]] = asyncio.Queue(MAX_GOSSIP_BACKLOG)
        self._assembly_wake = asyncio.Event()
        # Shared with the mempool (node/mempool_links.py): what it admitted
        # while proposals wait, and how many peers' records wait for it.
        self._admitted_leaves = AdmittedLeaves(self._assembly_wake.set)
        self._peer_backlog = PeerBacklog()
        self._gc = GcAccounting(self.metrics.registry)
        self.transport: PeerTransport | None = None
        self.driver: Driver | None = None
        self.pending_writer: PendingWriter | None = None
        self._admin: AdminServer | None = None
        self._checkpoints: Checkpoints | None = None
        self.stream = BlockStream(config.settings.stream, self.metrics)
        self.breakers: BreakerTracker | None = None
        self.reviews: ReviewMetrics | None = None
        self.webhooks: Webhooks | None = None
        self.links: ValidatorLinks | None = None

    @property
    def validator_index(self) -> int | None:
        """Our index in the validator set of the height being decided (None:
        following), or our genesis index before the node started."""
        if self.driver is not None:
            return self.driver.machine.me
        return self.config.validator.index if self.config.validator is not None else None

    @property
    def chain(self) -> ChainStore:
        assert self._chain is not None, "node not started"
        return self._chain

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        # Opening re-checks the tip (certificate, prev link, log root): a node
        # SIGKILLed mid-write restarts from its last whole block.
        storage = cfg.settings.storage
        opening = time.perf_counter()
        # Every write the node makes goes through the fail-stop wrapper:
        # blocks, consensus state and acknowledged records alike.  The
        # operator socket's backup reads the LevelDB store directly.
        leveldb = LevelDBStore(str(self.chain_dir),
                               lru_cache_size=storage.block_cache_bytes,
                               write_buffer_size=storage.write_buffer_bytes,
                               max_open_files=table_files_allowed(storage.max_open_files),
                               block_size=storage.block_size_bytes)
        store = FailStopStore(leveldb, self.fail)

        def publish_table_files() -> None:
            files = leveldb.table_files()
            if files is not None:
                self.metrics.store_table_files.set(files)
        self.metrics.on_scrape(publish_table_files)
        me = self.config.validator.index if self.config.validator is not None else -1

        def sign(peer: Validator, target: str) -> dict[str, str]:
            if self.links is not None:
                return self.links.sign_sync(peer, target, now_ms())
            return sign_request(self.genesis, cfg.key, me, peer.pubkey, target, now_ms())

        if cfg.settings.sync.mode == "snapshot" and next(iter(store.iterate(b"")), None) is None:
            await join_by_snapshot(store, self.genesis, cfg.peers, sign, cfg.tls)
        upgraded = upgrade_schema(store)
        if upgraded is not None:
            log.warning("store schema version %d marked %d: releases before this one refuse "
                        "it now (docs/operators.md, Upgrade)", upgraded, SCHEMA_VERSION)
        self._chain = ChainStore(store, self.genesis)
        # Who we link with and sign as, following the validator set (§9.9).
        self.links = ValidatorLinks(self.genesis, cfg.keys, self._chain)
        # Verdicts of the next blocks (PROTOCOL §10): the policy evaluator,
        # its state rebuilt from the committed blocks.
        install_policy_engine(self._chain)
        # ... and the circuit breakers, brought up to the tip the same way.
        self._chain.derive_breakers()
        # After a crash LevelDB replays its write-ahead log here, and the
        # tip is re-checked: the part of a restart that grows with the store.
        self.store_open_s = time.perf_counter() - opening
        self.metrics.height.set(self.chain.height)
        tip = self.chain.tip()
        self.metrics.log_size.set(tip.log_size if tip else 0)
        limits = cfg.settings.limits
        max_skew_ms = cfg.param_int("max_clock_skew_ms", 10_000)
        self.pending_writer = PendingWriter(PendingRecords(store))
        self.pending_writer.start()
        self.mempool = Mempool(self.genesis, self.chain, self.metrics,
                               max_size=limits.max_mempool, max_orphans=limits.max_orphans,
                               max_peer_backlog=limits.max_peer_backlog,
                               peer_clock_slack_ms=max_skew_ms,
                               durable=self.pending_writer,
                               leaves=self._admitted_leaves, peer_backlog=self._peer_backlog)
        # Records acknowledged before a crash or stop, before anyone is served.
        restored, dropped = await self.mempool.restore()
        log.info("restored %d acknowledged records into the mempool (%d dropped: committed "
                     "meanwhile or no longer admissible)", restored, dropped,
                     extra={"restored": restored, "restore_dropped": dropped})
        self.metrics.mempool_capacity.set(limits.max_mempool)
        gossip = cfg.settings.gossip
        self.assembler = ProposalAssembler(self.mempool.by_leaf,
                                           fetch_after_ms=gossip.fetch_after_ms,
                                           refetch_ms=gossip.refetch_ms)
        # Capped again per height by the chain param in force (chainapp.py).
        app = NodeApplication(self.genesis, self.chain, self.mempool,
                              max_block_records=limits.max_block_records,
                              max_clock_skew_ms=max_skew_ms)
        self.sync = BlockSync(
            self.chain, cfg.peers, self.metrics, batch_blocks=cfg.settings.sync.batch_blocks,
            sign=sign, tls=cfg.tls)
        try:
            self._checkpoints = Checkpoints(self.genesis, self.chain, cfg.keys,
                                            self._send_cosign, cfg.witnesses)
        except ValueError as exc:
            log.warning("no C2SP checkpoints: %s", exc)
        self.metrics.on_scrape(self._publish_peer_heights)
        self.metrics.on_scrape(self._publish_health)
        self.transport = PeerTransport(self.genesis, cfg.key, self.links.peers(), self.metrics,
                                       settings_from_config(cfg.settings.peers),
                                       self._on_frame, self._on_peer_up, tls=cfg.tls)
        self.links.attach(self.transport, self.sync)
        self.driver = Driver(
            genesis=self.genesis, keys=cfg.keys, chain=self.chain,
            mempool=self.mempool, app=app, sync=self.sync, metrics=self.metrics,
            log_ctx=self.log_ctx, config=self._consensus_config(),
            config_at=self._consensus_config, send=self._send_consensus,
            on_committed=self._committed, fail=self.fail,
        )
        http = cfg.settings.http
        web_app = build_app(self, max_body_bytes=http.max_body_bytes,
                            max_inflight=http.max_inflight_requests,
                            max_envelopes=limits.max_request_envelopes,
                            max_trace_depth=limits.max_trace_depth,
                            max_trace_nodes=limits.max_trace_nodes,
                            body_timeout_s=http.body_timeout_ms / 1000,
                            genesis_json=cfg.genesis_path.read_bytes(),
                            client_limits=ClientLimits.from_settings(
                                http, identity_of=identity_key),
                            auth=self._authenticator())
        guard = HeadTimeout(http.header_timeout_ms / 1000,
                            lambda reason: self.metrics.http_timeouts.labels(reason=reason).inc(),
                            idle_timeout_s=http.idle_timeout_ms / 1000,
                            write_timeout_s=http.write_timeout_ms / 1000,
                            max_per_client=http.max_connections_per_client)
        guard.install(web_app)
        options = dict(SERVER_OPTIONS, access_log=None)
        self._runner = web.AppRunner(web_app, shutdown_timeout=2.0, **options)
        await self._runner.setup()
        await GuardedTCPSite(
            self._runner, cfg.host, cfg.port, guard=guard, reuse_address=True,
            handler_options=options,
            on_refused=lambda: self.metrics.rejected.labels(code="bad_request").inc(),
            ssl_context=cfg.tls.server if cfg.tls is not None else None).start()
        if http.operator_port:
            self._operator = web.AppRunner(build_operator_app(self), shutdown_timeout=1.0,
                                           **options)
            await self._operator.setup()
            await web.TCPSite(self._operator, http.operator_host, http.operator_port,
                              reuse_address=True,
                              ssl_context=cfg.tls.server if cfg.tls is not None else None).start()
        # The operator socket (node/backup.py): after the store is open, so a
        # second node started on the same data dir never replaces the socket.
        self._admin = AdminServer(leveldb, cfg.data_dir, chain=self.genesis.chain, node=self.name)
        await self._admin.start()
        await self.transport.start()
        await self.driver.start()
        self._tasks = [asyncio.create_task(self._gossip_out(), name="gossip-out"),
                       asyncio.create_task(self._gossip_admit(), name="gossip-in"),
                       asyncio.create_task(self._assemble(), name="assemble"),
                       asyncio.create_task(self._status_loop(), name="status")]
        self.webhooks = self._webhooks()
        self.breakers = BreakerTracker(self.chain, self.metrics, notify=self.webhooks.notify)
        self.reviews = ReviewMetrics(self.chain, self.metrics)
        if self.webhooks.urls:
            self._tasks.append(asyncio.create_task(self.webhooks.run(), name="webhooks"))
        if self.chain.history_gap:
            self._tasks.append(asyncio.create_task(
                HistoryBackfill(store, self.chain, self.sync).run(), name="backfill"))
        trim_interval = self.config.settings.limits.malloc_trim_interval_s
        trim = trimmer() if trim_interval else None
        if trim is not None:
            self._tasks.append(asyncio.create_task(trim_every(trim_interval, trim),
                                                   name="malloc-trim"))
        self._gc.install()
        tune_after_start(self.config.settings.limits.gc_young_threshold)
        since_exec = process_age_s()
        log.info("node %s started at height %d (validator %s of %d) %.2f s after exec "
                 "(store opened in %.2f s)", self.name, self.chain.height,
                 self.validator_index, self.driver.machine.n, since_exec, self.store_open_s,
                 extra={"start_seconds": round(since_exec, 3),
                        "store_open_seconds": round(self.store_open_s, 3)})

    def _authenticator(self) -> Authenticator | None:
        """Request authentication against the membership the next block is
        judged by (PROTOCOL §11), unless ``auth.insecure_open``."""
        auth = self.config.settings.auth
        if auth.insecure_open:
            return None
        chain = self.chain
        return Authenticator(lambda: chain.membership.at(chain.height + 1),
                             window_ms=auth.window_ms, max_nonces=auth.max_nonces)

    def _consensus_config(self, height: int = 1) -> ConsensusConfig:
        """The timeouts of ``height``: node.toml, else the chain params in
        force there (``gov.params.set`` from H + 1, PROTOCOL §9), else the
        defaults."""
        return self.config.consensus_config(self.chain.membership.at(height).params)

    async def stop(self) -> None:
        self._gc.uninstall()
        if await cancel_all(self._tasks):
            log.error("node tasks did not stop")
        if self.driver is not None:
            await self.driver.stop()
        if self.transport is not None:
            await self.transport.stop()
        mempool = getattr(self, "mempool", None)  # made in start(), which may have failed
        if mempool is not None:
            # Long polls answer now, with what this node holds: the server
            # would otherwise wait out its shutdown timeout for them.
            mempool.waiters.release()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._operator is not None:
            await self._operator.cleanup()
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        if self.pending_writer is not None:
            await self.pending_writer.stop()
        if self._chain is not None:
            self._chain.close()
            self._chain = None

    def _renice_compaction_at_tip(self, source: str) -> None:
        """At the first block committed by consensus (the node is at the tip),
        LevelDB's flushes start waiting for idle CPU: ``storage.compaction_nice``.
        Not before, as a node catching up needs them fast (ledger.storage)."""
        if source != "consensus" or self._compaction_reniced:
            return
        self._compaction_reniced = True
        nice = self.config.settings.storage.compaction_nice
        if nice and set_background_nice(nice):
            log.info("at the tip: LevelDB's background thread now runs at nice %d", nice)

    def _publish_assembly(self) -> None:
        stats = self.assembler.stats
        self.metrics.publish_assembly(
            {outcome: getattr(stats, outcome) for outcome in ASSEMBLY_OUTCOMES})

    def _publish_health(self) -> None:
        h = self.health()
        for capability in ("serving", "synced", "committing"):
            self.metrics.health.labels(capability=capability).set(
                1 if getattr(h, capability) else 0)

    def _publish_peer_heights(self) -> None:
        """Each peer's height as it last reported it, and how far we trail it
        (peers that have not reported yet have no series)."""
        if self._chain is None:
            return
        ours = self._chain.height
        for peer in self.links.book.known() if self.links is not None else ():
            height = self.sync.peer_heights.get(peer.index)
            if height is not None:
                self.metrics.peer_height.labels(peer=peer.name).set(height)
                self.metrics.peer_lag.labels(peer=peer.name).set(max(0, height - ours))

    async def _status_loop(self) -> None:
        assert self.transport is not None
        while True:
            self.transport.broadcast(peer_messages.encode(Status(self.chain.height)))
            if self.driver is not None and self.links is not None \
                    and (self.links.following or not self.transport.connected()):
                # Nobody dials a node outside the set (nor one whose links
                # all dropped): ask the peers' heights over HTTP.
                await self.driver.probe_peers()
            self._publish_assembly()
            if self._checkpoints is not None and (short := self._checkpoints.short_of_quorum()):
                # signatures missed while down or catching up: peers relay theirs
                self.transport.broadcast(peer_messages.encode(WantSigs(tuple(short))))
            await asyncio.sleep(STATUS_INTERVAL_S)

    # -- commits -------------------------------------------------------------

    def _committed(self, header: Header, envelopes: Sequence[Envelope], source: str) -> None:
        self._renice_compaction_at_tip(source)
        self.mempool.committed(envelopes)
        if self.links is not None:
            self.links.committed(header.height)
        self.metrics.height.set(header.height)
        self.metrics.log_size.set(header.log_size)
        self.metrics.records_committed.inc(len(envelopes))
        self.metrics.blocks_committed.labels(source=source).inc()
        if self._checkpoints is not None:
            self._checkpoints.committed(header)
        self.stream.committed(header.height)
        if self.breakers is not None:
            self.breakers.committed(header.height)
        if self.reviews is not None:
            self.reviews.committed(header.height, header.time)
        # Pauses and resumes go to the webhooks: a node without webhooks
        # does not look at every record of the block for them.
        webhooks = self.webhooks
        if webhooks is not None and webhooks.urls:
            for env in envelopes:
                if env.record.kind in ("gov.scope.pause", "gov.scope.resume"):
                    webhooks.notify({"event": env.record.kind.removeprefix("gov.scope."),
                                     "height": header.height, "record": env.id.hex(),
                                     "scope": env.record.body.get("scope"),
                                     "value": env.record.body.get("value")})
        log.info("committed block %d: %d records, log size %d", header.height, len(envelopes),
                 header.log_size, extra={"block": header.hash.hex()[:16], "source": source})

    # -- ApiBackend ------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        assert self.transport is not None
        out = self.transport.status()
        for p in out:
            p["height"] = self.sync.peer_heights.get(p["index"])
        return out

    def unavailable_reason(self) -> str | None:
        assert self.transport is not None and self.driver is not None
        gap = self.chain.history_gap
        if gap:
            return history_reason(gap)
        if self.driver.syncing:
            return f"catching up with peers (at height {self.chain.height})"
        if self.links is not None and self.links.following:
            return ("this node follows the chain: none of its keys is in the validator set "
                    "in force; submit to a validator")
        machine = self.driver.machine
        reachable = len(self.transport.connected()) + (0 if machine.me is None else 1)
        if reachable < machine.quorum:
            return (f"connected to {reachable} of {machine.n} validators; "
                    f"{machine.quorum} are needed to commit")
        return None

    def consensus_status(self) -> dict[str, Any]:
        assert self.driver is not None
        return self.driver.status()

    def health(self) -> Health:
        stopped = self.fail.stopped[1] if self.fail.stopped is not None else None
        if self._chain is None or self.driver is None:
            return Health(self.name, 0, 0, 0, False, stopped=stopped, store_open=False)
        return Health(self.name, self.chain.height, self.driver.peers_height(),
                      max(0, now_ms() - self.driver.last_commit_ms), self.driver.syncing,
                      stopped=stopped, history_gap=self.chain.history_gap)

    def evidence(self) -> list[dict[str, Any]]:
        return [evidence_json(blob) for blob in self.chain.evidence()]

    def checkpoints(self) -> Checkpoints | None:
        return self._checkpoints

    async def peer_socket(self, request: web.Request) -> web.StreamResponse:
        assert self.transport is not None
        return await self.transport.handle_inbound(request)

    async def sync_blocks(self, request: web.Request) -> web.StreamResponse:
        s = self.config.settings.sync
        self._check_sync(request)
        gap = self.chain.history_gap
        if gap and parse_uint(request, "from", minimum=1) < gap.stop:
            raise below_snapshot(gap, "that block")
        return await serve_blocks(self.chain, request, max_blocks=s.batch_blocks,
                                  max_bytes=s.max_response_bytes,
                                  chunk_bytes=self.config.settings.http.stream_chunk_bytes)

    def _webhooks(self) -> Webhooks:
        w = self.config.settings.webhooks
        urls = [u.strip() for u in w.urls.split(",") if u.strip()]
        secret = b""
        if urls:
            if not w.secret_file:
                raise RuntimeError("webhooks.urls is set without webhooks.secret_file")
            secret = (self.config.path.parent / w.secret_file).read_bytes().strip()
        return Webhooks(urls, secret, self.metrics, max_attempts=w.max_attempts)

    def breakers_doc(self) -> dict[str, Any]:
        if self.breakers is None:
            raise Unavailable("the node has not started")
        return self.breakers.to_json()

    async def stream_blocks(self, request: web.Request) -> web.StreamResponse:
        return await self.stream.serve(self.chain, request)

    async def sync_snapshot(self, request: web.Request) -> web.Response:
        self._check_sync(request)
        return snapshot_response(self.chain)

    def _check_sync(self, request: web.Request) -> None:
        window = self.config.settings.sync.auth_window_ms
        if self.links is None:
            check_request(self.genesis, self.config.key.public_key, request.headers,
                          request.raw_path, now_ms(), window)
        else:
            self.links.check_sync(request.headers, request.raw_path, now_ms(), window)
