"""Deterministic consensus simulation: replay one seed, or run a campaign.

    simulate --seed S [-v]                 one run; identical output for identical arguments
    simulate --epochs --seeds N [--byzantine K] [--behaviour B] [--start-seed S] [--json F]
                                           validator-set changes (n from 4..7, cycling by seed;
                                           Byzantine default f of each seed's n); --epochs --seed S -v replays one
    simulate --runs N --validators 4|7 --byzantine K [--behaviour B] [--start-seed S] [--json F]
    simulate --enumerate [--validators 4|7] [--bound K] [--steps S] [--cuts C] [--blocks B] [--broken X]
                                           [--workers W]: W processes, the same result
                                           [--one-by-one]: each scenario from scratch (no shared prefixes)
    simulate --scenario SPEC [-v] [--broken X]   replay one enumerated Twins scenario

A campaign stops at the first invariant violation, prints its seed and the
last ~200 events of its trace, and exits 1.  Latencies are virtual: commit
time minus submission time, divided by the mean one-way message delay.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from consensus.simulation.broken import BROKEN, EPOCH_BROKEN  # noqa: E402

ALL_BROKEN = {**BROKEN, **EPOCH_BROKEN}
from consensus.simulation.byzantine import BEHAVIOURS  # noqa: E402
from consensus.simulation.enumerator import (  # noqa: E402
    DEFAULT_BLOCKS, DEFAULT_CUTS, DEFAULT_STEPS, FAULTS, EnumerationResult, run_enumeration)
from consensus.simulation.parallel import run_enumeration_parallel  # noqa: E402
from consensus.simulation.runner import CampaignStats, epoch_shape, percentile, run_scenario  # noqa: E402
from consensus.simulation.scenario import LIVENESS_BOUND_MS  # noqa: E402
from consensus.simulation.twins import TwinsPlan, run_plan  # noqa: E402
from consensus.simulation.world import RunResult  # noqa: E402

console = Console(highlight=False)


def _print_result(result: RunResult) -> None:
    console.print(result.summary, markup=False)
    console.print(
        f"heights={result.heights} records={result.records} messages={result.messages} "
        f"end={result.end_time}ms settled={result.settle_time}ms"
        + (f" validator sets={result.set_sizes}" if result.set_sizes else "")
    )
    if result.latencies:
        console.print(
            f"latency (message delays): p50={percentile(result.latencies, 50):.2f} "
            f"p99={percentile(result.latencies, 99):.2f}"
        )
    for violation in result.violations:
        console.print(f"[red]VIOLATION[/red] {violation}")
    console.print("ok" if result.ok else "[red]FAILED[/red]")


def _single(seed: int, n: int, byzantine: int, behaviour: str, broken: str | None, verbose: bool,
            epochs: bool = False) -> int:
    echo = sys.stdout if verbose else None
    result = run_scenario(seed, n, byzantine, behaviour, broken=broken, echo=echo, epochs=epochs)
    _print_result(result)
    return 0 if result.ok else 1


def _report_failure(result: RunResult) -> None:
    console.print(f"\n[red]violation in seed {result.seed}[/red] - replay: scripts/simulate --seed {result.seed} "
                  f"(same --validators/--byzantine/--behaviour) -v")
    console.print("[bold]last events:[/bold]")
    for line in result.trace:
        console.print(line, markup=False)
    _print_result(result)


def _campaign(runs: int, start: int, n: int, byzantine: int | None, behaviour: str, broken: str | None,
              json_path: str | None, keep_going: bool, epochs: bool = False) -> int:
    stats = CampaignStats()
    began = time.perf_counter()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} runs/s"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        label = "epochs n=4..7" if epochs else f"n={n} f={byzantine}"
        task = progress.add_task(f"{label} {behaviour}", total=runs, rate=0.0)
        for seed in range(start, start + runs):
            if epochs:
                size, faulty = epoch_shape(seed, byzantine)
            else:
                size, faulty = n, (n - 1) // 3 if byzantine is None else byzantine
            result = run_scenario(seed, size, faulty, behaviour, broken=broken, epochs=epochs)
            stats.add(result)
            elapsed = time.perf_counter() - began
            progress.update(task, advance=1, rate=stats.runs / elapsed if elapsed else 0.0)
            if not console.is_terminal and stats.runs % 500 == 0:
                # Logs to a file get a plain line now and then instead of a bar.
                print(f"{stats.runs}/{runs} runs, {stats.runs / elapsed:.1f} runs/s, "
                      f"{stats.violations} violations", flush=True)
            if not result.ok:
                progress.stop()
                _report_failure(result)
                if not keep_going:
                    break
    elapsed = time.perf_counter() - began
    summary: dict[str, object] = dict(stats.summary())
    summary.update({"seconds": round(elapsed, 2), "runs_per_second": round(stats.runs / elapsed, 2),
                    "validators": "4..7" if epochs else n, "byzantine": byzantine,
                    "behaviour": behaviour, "epochs": epochs,
                    "start_seed": start, "broken": broken or ""})
    console.print(
        f"runs={stats.runs} in {elapsed:.1f}s ({summary['runs_per_second']} runs/s) "
        f"violations={stats.violations} blocks={stats.heights} records={stats.records}"
        + (f" validator-set changes={stats.epochs} set sizes={sorted(stats.sizes)}" if epochs else "")
    )
    console.print(
        f"commit latency in message delays: p50={summary['latency_p50_delays']:.2f} "
        f"p99={summary['latency_p99_delays']:.2f} (all runs); "
        f"p50={summary['stable_latency_p50_delays']:.2f} p99={summary['stable_latency_p99_delays']:.2f} "
        f"(records submitted after GST, runs without crashes)"
    )
    console.print(f"slowest settle-to-done: {summary['max_settle_to_done_ms']} ms virtual "
                  f"(seed {summary['slowest_seed']}; liveness bound {LIVENESS_BOUND_MS} ms)")
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if stats.violations else 0


def _replay(spec: str, broken: str | None, verbose: bool) -> int:
    try:
        plan = TwinsPlan.parse(spec)
    except (ValueError, KeyError) as exc:
        raise click.BadParameter(f"{exc}", param_hint="--scenario") from None
    result = run_plan(plan, ALL_BROKEN[broken] if broken else None, echo=sys.stdout if verbose else None)
    _print_result(result)
    return 0 if result.ok else 1


def _enumerate(n: int, bound: int | None, steps: int, cuts: int, blocks: int, faults: tuple[str, ...],
               broken: str | None, start: int, json_path: str | None, keep_going: bool,
               workers: int = 1, one_by_one: bool = False) -> int:
    # A long campaign stopped with Ctrl-C or SIGTERM (e.g. `timeout 1200 ...`) still
    # reports, and writes --json for, the scenarios it ran.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def progress(r: EnumerationResult) -> None:
        print(f"{r.scenarios} scenarios, {r.rate:.1f}/s", flush=True)

    factory = ALL_BROKEN[broken] if broken else None
    if workers > 1:
        result = run_enumeration_parallel(n, bound, factory, workers, max_steps=steps, max_blocks=blocks,
                                          faults=faults, max_cuts=cuts, start=start, progress=progress,
                                          every=5000, keep_going=keep_going, one_by_one=one_by_one)
    else:
        result = run_enumeration(n, bound, factory, max_steps=steps, max_blocks=blocks, faults=faults,
                                 max_cuts=cuts, start=start, progress=progress, every=5000,
                                 keep_going=keep_going, one_by_one=one_by_one)
    print(f"enumerated n={n} steps<={steps} cuts<={cuts} blocks<={blocks} faults={','.join(faults)} "
                  f"bound={bound if bound is not None else 'all'} broken={broken or '-'}: "
                  f"{result.scenarios} scenarios in {result.seconds:.1f}s ({result.rate:.1f} scenarios/s), "
                  f"by number of cut steps {dict(sorted(result.by_cuts.items()))}, "
                  f"{result.runs} runs simulated for them, {result.violating} with a violation" + (" (interrupted)" if result.interrupted else ""))
    summary: dict[str, object] = {"validators": n, "bound": bound, "steps": steps, "cuts": cuts, "blocks": blocks,
                                  "faults": list(faults), "broken": broken or "", "start": start,
                                  "scenarios": result.scenarios, "seconds": round(result.seconds, 2),
                                  "scenarios_per_second": round(result.rate, 2), "runs": result.runs,
                                  "violating": result.violating,
                                  "interrupted": result.interrupted,
                                  "violation": None}
    if result.violation is not None:
        index, plan, outcome = result.violation
        again = f" --broken {broken}" if broken else ""
        # plain print: a console would wrap the scenario text, which must stay copyable
        print(f"\nviolation in scenario {index} (the first in enumeration order): {plan.spec()}")
        print(f"replay: scripts/simulate --scenario \"{plan.spec()}\"{again} -v", flush=True)
        console.print("[bold]last events:[/bold]")
        for line in outcome.trace:
            console.print(line, markup=False)
        _print_result(outcome)
        summary["violation"] = {"index": index, "scenario": plan.spec(), "violations": outcome.violations}
    else:
        console.print("no violation")
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if result.violation is not None else 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seed", type=int, default=None, help="Replay this one seed.")
@click.option("--runs", "--seeds", "runs", type=int, default=None,
              help="Run a campaign of this many seeds.")
@click.option("--epochs", is_flag=True,
              help="Validator-set changes during each run (n from 4..7 by seed).")
@click.option("--start-seed", type=int, default=0, show_default=True)
@click.option("--validators", "n", type=click.Choice(["4", "7"]), default="4", show_default=True)
@click.option("--byzantine", type=int, default=None, help="Byzantine validators (default f).")
@click.option("--behaviour", type=click.Choice(BEHAVIOURS + ("mixed",)), default="mixed", show_default=True)
@click.option("--broken", type=click.Choice(sorted(BROKEN) + sorted(EPOCH_BROKEN)), default=None,
              help="Run a deliberately broken replica in every honest slot (checker self-test).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@click.option("--keep-going", is_flag=True, help="Do not stop at the first violation.")
@click.option("-v", "--verbose", is_flag=True, help="Print every event of a --seed/--scenario run.")
@click.option("--enumerate", "enumerate_", is_flag=True,
              help="Run the Twins scenario enumerator (consensus/simulation/enumerator.py).")
@click.option("--bound", type=int, default=None, help="Run at most this many scenarios (default: all).")
@click.option("--steps", type=int, default=DEFAULT_STEPS, show_default=True,
              help="Partition up to this many steps of height 1 (3 per round).")
@click.option("--cuts", type=int, default=DEFAULT_CUTS, show_default=True,
              help="At most this many steps with a cut network.")
@click.option("--blocks", type=int, default=DEFAULT_BLOCKS, show_default=True,
              help="At most this many blocks per partition.")
@click.option("--faults", default=",".join(FAULTS), show_default=True,
              help="Fault models to enumerate: twins, forge, epochs (comma-separated).")
@click.option("--start", type=int, default=0, show_default=True, help="Skip this many enumerated scenarios.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Enumerate on this many processes (same result as one).")
@click.option("--one-by-one", is_flag=True,
              help="Enumerate: run each scenario from scratch instead of sharing prefixes (same result, slower).")
@click.option("--scenario", "spec", default=None, help="Replay one enumerated scenario (its printed spec).")
def main(seed: int | None, runs: int | None, epochs: bool, start_seed: int, n: str, byzantine: int | None,
         behaviour: str, broken: str | None, json_path: str | None, keep_going: bool, verbose: bool,
         enumerate_: bool, bound: int | None, steps: int, cuts: int, blocks: int, faults: str, start: int,
         spec: str | None, workers: int, one_by_one: bool) -> None:
    size = int(n)
    if spec is not None:
        sys.exit(_replay(spec, broken, verbose))
    if enumerate_:
        chosen = tuple(f for f in faults.split(",") if f)
        if not chosen or any(f not in FAULTS for f in chosen):
            raise click.BadParameter(f"choose from {', '.join(FAULTS)}", param_hint="--faults")
        sys.exit(_enumerate(size, bound, steps, cuts, blocks, chosen, broken, start, json_path, keep_going,
                           workers, one_by_one))
    faulty = (size - 1) // 3 if byzantine is None else byzantine
    if seed is not None:
        if epochs:
            size, faulty = epoch_shape(seed, byzantine)
        sys.exit(_single(seed, size, faulty, behaviour, broken, verbose, epochs))
    if runs is None:
        raise click.UsageError("give --seed S or --runs N")
    sys.exit(_campaign(runs, start_seed, size, byzantine, behaviour, broken, json_path, keep_going,
                       epochs))


if __name__ == "__main__":
    main()
