"""`genjob sim --plot DIR`: queue and replicas over the first day, waits per tier, cost breakdown (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from genjob.sim.arrivals import DAY
from genjob.sim.model import RunData
from genjob.sim.results import waits


def write_plots(run: RunData, summary: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    name = run.scenario.name
    paths = [_timeline(run, directory / f"{name}-timeline.png")]
    paths.append(_waits(run, directory / f"{name}-waits.png"))
    paths.append(_costs(summary, directory / f"{name}-cost.png"))
    return paths


def _timeline(run: RunData, path: Path) -> Path:
    tl = run.timeline
    t = np.asarray(tl["t"]) / 3600
    first_day = t <= DAY / 3600
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for key, values in tl.items():
        series = np.asarray(values)[first_day]
        if key.startswith("pending:") and series.any():
            top.plot(t[first_day], series, label=key.split(":", 1)[1])
        if key.startswith("replicas:") and series.any():
            bottom.step(t[first_day], series, where="post", label=f"{key.split(':', 1)[1]} replicas")
        if key.startswith("busy:") and series.any():
            bottom.plot(t[first_day], series, linestyle=":", label=f"{key.split(':', 1)[1]} busy")
    active = [
        hour
        for i, hour in enumerate(t[first_day])
        if any(v[i] for k, v in tl.items() if k.startswith(("pending:", "replicas:")))
    ]
    if active:  # zoom on the busy part of the day
        bottom.set_xlim(max(0.0, min(active) - 0.5), min(24.0, max(active) + 0.5))
    top.set_ylabel("pending jobs")
    top.legend(loc="upper right")
    bottom.set_ylabel("workers")
    bottom.set_xlabel("hour of day 1")
    bottom.legend(loc="upper right")
    fig.suptitle(f"{run.scenario.name}: queue and replicas (sampled every minute)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _waits(run: RunData, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for tier in run.scenario.tiers:
        values = np.sort(np.asarray(waits(run, tier)))
        if values.size:
            ax.plot(values, np.arange(1, values.size + 1) / values.size, label=tier)
    ax.axvline(run.scenario.target_wait_seconds, color="grey", linestyle="--", label="target")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("wait from submit to claim (s)")
    ax.set_ylabel("share of jobs")
    ax.set_title(f"{run.scenario.name}: wait distribution per tier")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _costs(summary: dict[str, Any], path: Path) -> Path:
    pools = summary["pools"]
    names = [*pools, "fixed"]
    busy = [p["usd_per_month"] - p["idle_usd_per_month"] for p in pools.values()] + [0.0]
    idle = [p["idle_usd_per_month"] for p in pools.values()] + [0.0]
    fixed = [0.0] * len(pools) + [summary["system"]["fixed_usd_per_month"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(names, busy, label="GPU busy")
    ax.bar(names, idle, bottom=busy, label="GPU idle (starting, cooling down, empty nodes)")
    ax.bar(names, fixed, bottom=[b + i for b, i in zip(busy, idle, strict=True)], label="fixed")
    top = max(b + i + f for b, i, f in zip(busy, idle, fixed, strict=True))
    ax.set_ylim(0, 1.45 * top if top > 0 else 1.0)  # room for the legend
    ax.set_ylabel("$ per month")
    ax.set_title(f"{summary['scenario']}: ${summary['system']['usd_per_month']:.0f}/month")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
