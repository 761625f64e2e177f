"""JSON-lines logging carrying the node name, height and round on every line.

The node's current height and round live in one :class:`LogContext` object
that the driver updates; a filter copies them onto each record, so call sites
just log and operators can grep one node's consensus progress.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@dataclass
class LogContext:
    node: str
    height: int = 0
    round: int = 0


class ContextFilter(logging.Filter):
    def __init__(self, ctx: LogContext) -> None:
        super().__init__()
        self.ctx = ctx

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.ctx.node
        record.height = self.ctx.height
        record.round = self.ctx.round
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, node, height, round, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": getattr(record, "node", None),
            "height": getattr(record, "height", None),
            "round": getattr(record, "round", None),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


def setup_logging(ctx: LogContext, level: str = "info", stream: TextIO | None = None) -> None:
    """Install the JSON handler on the root logger (called once, by node.main)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter(ctx))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: too chatty for a node under load.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.Formatter.converter = time.gmtime


def process_age_s() -> float:
    """Seconds since this process started (Linux ``/proc``, 10 ms resolution;
    0.0 where that is unavailable): start-up logs say how long it took,
    interpreter and imports included."""
    try:
        stat = Path("/proc/self/stat").read_text()
        # Fields after the parenthesised command name start at field 3;
        # starttime (clock ticks after boot) is field 22.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
