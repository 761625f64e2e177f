"""The soak's plot (harness/soak.py): submit-to-commit latency p50/p99 per
minute over RSS per node, with kills and partitions marked on both panels.
matplotlib comes with the ``bench`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(rep: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    minutes = [m["minute"] + 0.5 for m in rep.latency_per_minute]
    lat.plot(minutes, [m["p50_ms"] for m in rep.latency_per_minute], "o-", label="p50")
    lat.plot(minutes, [m["p99_ms"] for m in rep.latency_per_minute], "s-", label="p99")
    lat.set_ylabel("202 -> committed (ms)")
    lat.set_title(f"soak: {rep.duration_s:.0f} s at {rep.achieved_rate:.0f} rec/s acknowledged "
                  f"(target {rep.target_rate:.0f}); lost {rep.lost}, forks {rep.forks}, "
                  f"kills {rep.kills}, partitions {rep.partitions}", fontsize=10)
    colours = ["C0", "C1", "C2", "C3"]
    for i in range(4):
        node = f"node{i}"
        pts = [(s["t"] / 60, s[node]["anon"], s[node]["file"]) for s in rep.memory_samples
               if s.get(node) and s[node]["anon"] is not None]
        if not pts:
            continue
        mem.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=colours[i],
                 label=f"{node} RssAnon")
        mem.plot([p[0] for p in pts], [p[2] for p in pts], ":", color=colours[i],
                 label=f"{node} RssFile")
    mem.set_ylabel("MB")
    mem.set_xlabel("minutes into the run")
    for ax in (lat, mem):
        for k, f in enumerate(rep.faults):
            start, end = f["started"] / 60, f.get("ended", f["started"]) / 60
            if f["kind"] == "kill":
                ax.axvline(start, color="red", alpha=0.5, lw=1,
                           label="kill")
            elif "skipped" not in f:
                ax.axvspan(start, end, color="blue", alpha=0.12, label="partition")
        ax.grid(alpha=0.3)
    for ax, cols in ((lat, 1), (mem, 3)):
        handles, labels = ax.get_legend_handles_labels()
        once: dict[str, Any] = {}  # one entry per label, not one per fault
        for h, lab in zip(handles, labels):
            once.setdefault(lab, h)
        ax.legend(list(once.values()), list(once.keys()), fontsize=7, ncol=cols)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
