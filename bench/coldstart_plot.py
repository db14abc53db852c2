"""The cold-start timeline: one horizontal bar per configuration, one segment per phase.

Each segment spans from the previous phase's p50 to this phase's p50 (seconds since the submit),
so a bar reads left to right as the median cold start of that configuration. Only phases seen in
every cold start of a configuration are drawn: a present node has no NodeClaim, and "ScaledObject
active" is seen only when KEDA had called the pool inactive before the submit (the pod's creation
marks the activation in every case). The p95 of "job claimed" is marked on each bar.

    python -m bench.coldstart --from-result RESULT --plot OUT.png   # from a run's saved output
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.coldstart import PHASES

COLORS = {
    "queued": "#bbbbbb",
    "ScaledObject active": "#d62728",
    "pod created": "#ff7f0e",
    "NodeClaim launched": "#9467bd",
    "node Ready": "#8c564b",
    "pod Running": "#e377c2",
    "worker ready": "#2ca02c",
    "job claimed": "#17becf",
    "image stored": "#1f77b4",
}


def plot_timeline(configs: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(configs)
    fig, ax = plt.subplots(figsize=(11, 0.7 * len(names) + 2.6))
    seen: set[str] = set()
    for row, name in enumerate(reversed(names)):
        phases = configs[name]["phases_since_submit"]
        every = configs[name]["cold_starts"]
        left = 0.0
        for phase in PHASES:
            if phases.get(phase, {}).get("n") != every:
                continue
            end = max(left, phases[phase]["p50"])
            label = phase if phase not in seen else None
            seen.add(phase)
            ax.barh(row, end - left, left=left, color=COLORS[phase], edgecolor="white", label=label)
            left = end
        p95 = configs[name]["submit_to_claimed"].get("p95")
        if p95 is not None:
            ax.plot([p95], [row], marker="|", markersize=18, color="black")
    ax.set_yticks(range(len(names)), list(reversed(names)))
    ax.set_xlabel("seconds since submit (p50 of each phase; | = p95 of job claimed)")
    ax.set_title(title or "genjob cold start, phase by phase (test cluster: KEDA + Karpenter kwok)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="lower center", fontsize=8, ncol=5, title="segment ends at", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
