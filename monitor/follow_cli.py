"""The process behind ``ledger-monitor follow``: a session, the genesis, the
follower and where its flagged records go."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from ledger.errors import LedgerError, VerificationError
from ledger.genesis import Genesis, parse_genesis
from ledger.keys import load_key_file
from ledger.reqsig import RequestSigner

from .alerts import AlertSubmitter
from .detector import Detector
from .follow import Alert, Follower, StreamVerificationError, follow, signed_get, tune_gc

log = logging.getLogger("monitor.follow")


async def _genesis(session: Any, node_url: str, path: str | None,
                   signer: RequestSigner | None) -> Genesis:
    if path is not None:
        return parse_genesis(json.loads(Path(path).read_text(encoding="utf-8")))
    target, headers = signed_get(f"{node_url.rstrip('/')}/v1/genesis", signer)
    async with session.get(target, headers=headers) as resp:
        resp.raise_for_status()
        doc = json.loads(await resp.read())
    log.warning("verifying against the node's own GET /v1/genesis; pass --genesis to verify "
                "against your copy")
    return parse_genesis(doc)


def alert_line(alert: Alert) -> bytes:
    return orjson.dumps({"id": alert.record_id.hex(), "height": alert.height,
                         "score": round(alert.score, 6), "flag": True,
                         "reasons": alert.reasons}) + b"\n"


async def _run(node_url: str, *, genesis_path: str | None, output: IO[bytes], flag: float,
               detector: Detector, until: int | None, metrics_port: int | None,
               ca_file: str | None, key_file: str | None,
               submit_alerts: bool = True) -> int:
    import aiohttp

    try:
        signer = RequestSigner(load_key_file(key_file).key) if key_file else None
    except (OSError, ValueError, LedgerError) as exc:
        print(f"ledger-monitor follow: key file: {exc}", file=sys.stderr)
        return 2
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            genesis = await _genesis(session, node_url, genesis_path, signer)
        except (OSError, aiohttp.ClientError, ValueError, VerificationError) as exc:
            print(f"ledger-monitor follow: no genesis: {exc}", file=sys.stderr)
            return 2
        follower = Follower(genesis, detector, flag=flag)
        if metrics_port is not None:
            from prometheus_client import start_http_server
            start_http_server(metrics_port, addr="127.0.0.1", registry=follower.metrics.registry)

        submitter: AlertSubmitter | None = None

        async def sink(alerts: list[Alert]) -> None:
            output.write(b"".join(alert_line(a) for a in alerts))
            output.flush()
            if submitter is not None:
                await submitter(alerts)

        try:
            if key_file is not None and submit_alerts:
                from client.sdk import LedgerClient
                async with LedgerClient([node_url], key_file=key_file, ca_file=ca_file) as lc:
                    submitter = AlertSubmitter(lc, detector.name, follower.metrics)
                    await follow(follower, node_url, sink, session=session, signer=signer,
                                 stop_at=until)
            else:
                await follow(follower, node_url, sink, session=session, signer=signer,
                             stop_at=until)
        except StreamVerificationError as exc:
            print(f"ledger-monitor follow: {exc}", file=sys.stderr)
            return 3
    print(f"ledger-monitor follow: {follower.height} blocks, {follower.records} records, "
          f"{follower.scored} scored", file=sys.stderr)
    return 0


def run_follow(node_url: str, **options: Any) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tune_gc()
    try:
        return asyncio.run(_run(node_url, **options))
    except KeyboardInterrupt:
        return 130
