"""``scripts/fraudsim`` (``python -m monitor.fraudsim.cli``): write a labelled
stream for ``ledger-monitor score``, or feed it to a live cluster."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import orjson

from . import simulate, to_lines
from .feed import feed
from .typologies import TYPOLOGIES


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraudsim", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=1200)
    parser.add_argument("--days", type=int, default=14, help="stream length in days (at least 13)")
    parser.add_argument("--anomaly-rate", type=float, default=0.01, help="share of labelled anomalous records")
    parser.add_argument("--typologies", default=",".join(TYPOLOGIES), help="which typologies to inject")
    parser.add_argument("--output", default="records.jsonl", help="scoring input lines ({id, height, time, record})")
    parser.add_argument("--labels", default="labels.jsonl", help="one {id, label, incident} a line")
    parser.add_argument("--node", action="append", default=[], help="feed a live cluster at this URL (repeatable)")
    parser.add_argument("--key-file", help="the submitter key file for --node")
    parser.add_argument("--rate", type=float, default=500.0, help="records per second for --node")
    parser.add_argument("--limit", type=int, default=0, help="only the first N records (0: all)")
    args = parser.parse_args(argv)
    chosen = tuple(t for t in args.typologies.split(",") if t)
    unknown = sorted(set(chosen) - set(TYPOLOGIES))
    if unknown:
        parser.error(f"unknown typologies {unknown}; known: {', '.join(TYPOLOGIES)}")
    try:
        txs = simulate(args.seed, accounts=args.accounts, days=args.days, anomaly_rate=args.anomaly_rate,
                       typologies=chosen)
    except ValueError as exc:
        parser.error(str(exc))
    if args.limit:
        txs = txs[:args.limit]
    if args.node:
        if not args.key_file:
            parser.error("--node needs --key-file")
        ids = asyncio.run(feed(txs, args.node, args.key_file, rate=args.rate))
        with open(args.labels, "wb") as out:
            for rid, tx in zip(ids, txs):
                out.write(orjson.dumps({"id": rid, "label": tx.label, "incident": tx.incident}) + b"\n")
        print(f"fraudsim: fed {len(ids)} records; labels in {args.labels}", file=sys.stderr)
        return 0
    stream = to_lines(txs)
    with open(args.output, "wb") as out:
        for line in stream.lines:
            out.write(orjson.dumps(line) + b"\n")
    with open(args.labels, "wb") as out:
        for line in stream.lines:
            rid = line["id"]
            out.write(orjson.dumps({"id": rid, "label": stream.labels[rid],
                                    "incident": stream.incidents[rid]}) + b"\n")
    anomalous = sum(1 for v in stream.labels.values() if v != "normal")
    print(f"fraudsim: {len(stream.lines)} records ({anomalous} anomalous) in {args.output}; labels in "
          f"{args.labels}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
