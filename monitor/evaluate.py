"""Evaluate detectors on fraudsim streams: ``python -m monitor.evaluate``
(or ``scripts/monitor-eval``).

For each seed: generate a stream, score it strictly online with each
detector, then report the overall PR-AUC (average precision) and, per
typology, the best recall at precision >= 0.5 and its threshold.  Per
typology the positives are that typology's records and the negatives are
the normal records (other typologies are left out), so a typology is not
helped by the others being easy.  Tables print the mean over seeds and the
minimum.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from .builtin import BuiltinDetector
from .baselines import HalfSpaceTreesDetector, ZScoreDetector
from .detector import Detector
from .fraudsim import generate
from .fraudsim.typologies import TYPOLOGIES
from .score import score_lines

TUNING_SEEDS = (1, 2, 3, 4, 5)
REPORT_SEEDS = (201, 202, 203, 204, 205)


def average_precision(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the precision-recall curve as the step sum over distinct
    thresholds (ties are one step, as scikit-learn's average_precision)."""
    total = sum(positive)
    pairs = sorted(zip(scores, positive), key=lambda p: -p[0])
    ap, tp, fp, last_tp, i = 0.0, 0, 0, 0, 0
    while i < len(pairs):
        s = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == s:
            tp += pairs[i][1]
            fp += not pairs[i][1]
            i += 1
        ap += (tp - last_tp) / total * tp / (tp + fp)
        last_tp = tp
    return ap


def recall_at_precision(scores: Sequence[float], positive: Sequence[bool],
                        min_precision: float = 0.5) -> tuple[float, float]:
    """The best recall at precision >= ``min_precision`` and the lowest
    threshold reaching it (inf when no threshold does)."""
    total = sum(positive)
    pairs = sorted(zip(scores, positive), key=lambda p: -p[0])
    best, threshold, tp, fp, i = 0.0, float("inf"), 0, 0, 0
    while i < len(pairs):
        s = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == s:
            tp += pairs[i][1]
            fp += not pairs[i][1]
            i += 1
        if total and tp / (tp + fp) >= min_precision and tp / total >= best and s > 0:
            best, threshold = tp / total, s
    return best, threshold


def evaluate_stream(lines: list[dict[str, Any]], labels: dict[str, str], detector: Detector) -> dict[str, Any]:
    raw = [orjson.dumps(line) for line in lines]
    start = time.perf_counter()
    results = list(score_lines(raw, detector))
    elapsed = time.perf_counter() - start
    scores = [r["score"] for r in results]
    truth = [labels[r["id"]] for r in results]
    out: dict[str, Any] = {"records": len(results), "seconds": elapsed,
                           "pr_auc": average_precision(scores, [t != "normal" for t in truth])}
    out["recall@p50"] = recall_at_precision(scores, [t != "normal" for t in truth])
    for typ in TYPOLOGIES:
        keep = [i for i, t in enumerate(truth) if t in ("normal", typ)]
        if any(truth[i] == typ for i in keep):
            out[typ] = recall_at_precision([scores[i] for i in keep], [truth[i] == typ for i in keep])
    return out


def detectors(names: Sequence[str]) -> dict[str, Callable[[], Detector]]:
    factories: dict[str, Callable[[], Detector]] = {"builtin": BuiltinDetector, "zscore": ZScoreDetector,
                                                    "river-hst": HalfSpaceTreesDetector}
    return {n: factories[n] for n in names}


def run(seeds: Sequence[int], names: Sequence[str], **sim: Any) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for seed in seeds:
        stream = generate(seed, **sim)
        for name, factory in detectors(names).items():
            results[name].append(evaluate_stream(stream.lines, stream.labels, factory()))
            print(f"seed {seed} {name}: PR-AUC {results[name][-1]['pr_auc']:.3f}", file=sys.stderr)
    return results


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    names = list(results)
    rows = ["| metric | " + " | ".join(f"{n} mean (min)" for n in names) + " |",
            "|---|" + "---|" * len(names)]

    def cell(values: list[float]) -> str:
        return f"{sum(values) / len(values):.3f} ({min(values):.3f})"

    rows.append("| PR-AUC, all typologies | " + " | ".join(cell([r["pr_auc"] for r in results[n]])
                                                          for n in names) + " |")
    rows.append("| recall at precision >= 0.5, all | " + " | ".join(
        cell([r["recall@p50"][0] for r in results[n]]) for n in names) + " |")
    for typ in TYPOLOGIES:
        rows.append(f"| recall at precision >= 0.5, {typ} | " + " | ".join(
            cell([r[typ][0] for r in results[n] if typ in r]) for n in names) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monitor-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=",".join(map(str, REPORT_SEEDS)),
                        help="comma-separated fraudsim seeds (default: the report seeds 201-205)")
    parser.add_argument("--detectors", default="builtin,river-hst,zscore")
    parser.add_argument("--accounts", type=int, default=1200)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--anomaly-rate", type=float, default=0.01)
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    names = [n for n in args.detectors.split(",") if n]
    try:
        results = run([int(s) for s in args.seeds.split(",")], names, accounts=args.accounts,
                      days=args.days, anomaly_rate=args.anomaly_rate)
    except RuntimeError as exc:
        print(f"monitor-eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        print(table(results))
        for n in names:
            rate = sum(r["records"] for r in results[n]) / sum(r["seconds"] for r in results[n])
            print(f"{n}: {rate:,.0f} records/s (scoring loop incl. JSON parsing, one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
