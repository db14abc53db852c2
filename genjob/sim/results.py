"""What a run means: waits, utilisation, node-hours and money per tier, pool and system.

`summarize` turns a model.RunData into a plain dict (the `--json` output); `format_table`
prints it for people. Money for a month is the simulated days' money x month_days / days.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genjob.sim.model import RunData


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
    }


def waits(run: RunData, tier: str | None = None) -> list[float]:
    """Seconds from submit to first claim; a job not started by the end counts what it waited so far."""
    return [
        (j.started if j.started is not None else run.horizon) - j.submitted
        for j in run.jobs
        if tier is None or j.tier == tier
    ]


def summarize(run: RunData) -> dict[str, Any]:
    sc = run.scenario
    scale = sc.month_days / sc.days
    hours = run.horizon / 3600
    tiers: dict[str, Any] = {}
    tier_cost: dict[str, float] = {}
    for pool in run.pools.values():
        for tier, busy in pool.busy_by_tier.items():
            if pool.busy_seconds > 0:
                tier_cost[tier] = tier_cost.get(tier, 0.0) + pool.node_cost * busy / pool.busy_seconds
    for tier in sc.tiers:
        jobs = [j for j in run.jobs if j.tier == tier]
        if not jobs:
            continue
        done = [j for j in jobs if j.finished is not None]
        images = sum(j.shape.images for j in done)
        tier_waits = waits(run, tier)
        pending_seconds = sum(j.pending_seconds for j in jobs)
        cost = tier_cost.get(tier, 0.0)
        tiers[tier] = {
            "jobs": len(jobs),
            "finished": len(done),
            "images": images,
            "wait_seconds": _percentiles(tier_waits),
            "waited_over_target": sum(1 for w in tier_waits if w > sc.target_wait_seconds),
            "usd_per_1k_images": 1000 * cost / images if images else 0.0,
            "usd_per_month": cost * scale,
            "little": {
                "mean_pending": run.pending_area[tier] / run.horizon,
                "arrival_rate_per_second": len(jobs) / run.horizon,
                "mean_pending_seconds": pending_seconds / len(jobs),
            },
        }
    pools: dict[str, Any] = {}
    for name, pool in run.pools.items():
        if pool.node_seconds == 0 and pool.peak_replicas == 0:
            continue
        pools[name] = {
            "capacity_type": pool.values.capacity_type,
            "instance_type": pool.instance_types[0],
            "node_hours": pool.node_seconds / 3600,
            "busy_gpu_hours": pool.busy_seconds / 3600,
            "gpu_utilisation": pool.busy_seconds / pool.node_seconds if pool.node_seconds else 0.0,
            "usd": pool.node_cost,
            "usd_per_month": pool.node_cost * scale,
            "idle_usd_per_month": (pool.node_cost - pool.busy_cost) * scale,
            "peak_replicas": pool.peak_replicas,
            "pod_starts": pool.cold_starts,
        }
    node_hours = {ct: 0.0 for ct in ("spot", "on-demand")}
    for pool in run.pools.values():
        node_hours[pool.values.capacity_type] += pool.node_seconds / 3600
    gpu_month = sum(p.node_cost for p in run.pools.values()) * scale
    fixed = sum(c.usd_per_month for c in sc.fixed_costs)
    all_waits = waits(run)
    return {
        "scenario": sc.name,
        "simulated_hours": hours,
        "tiers": tiers,
        "pools": pools,
        "system": {
            "jobs": len(run.jobs),
            "unfinished_jobs": sum(1 for j in run.jobs if j.finished is None),
            "wait_seconds": _percentiles(all_waits),
            "target_wait_seconds": sc.target_wait_seconds,
            "waited_over_target": sum(1 for w in all_waits if w > sc.target_wait_seconds),
            "peak_replicas": run.peak_replicas,
            "node_hours_per_month": {ct: h * scale for ct, h in node_hours.items()},
            "gpu_usd_per_month": gpu_month,
            "idle_usd_per_month": sum(p.node_cost - p.busy_cost for p in run.pools.values()) * scale,
            "fixed_usd_per_month": fixed,
            "usd_per_month": gpu_month + fixed,
            "spot_interruptions": run.interruptions,
            "preemptions": sum(j.preemptions for j in run.jobs),
        },
    }


def format_table(summary: dict[str, Any]) -> str:
    """The summary as aligned plain-text tables."""
    lines = [f"scenario {summary['scenario']} ({summary['simulated_hours']:.0f} h simulated)", ""]
    rows = [
        [
            "tier",
            "jobs",
            "wait p50",
            "p95",
            "p99",
            f">{summary['system']['target_wait_seconds']:.0f}s",
            "$/1k img",
            "$/month",
        ]
    ]
    for tier, t in summary["tiers"].items():
        w = t["wait_seconds"]
        rows.append(
            [
                tier,
                str(t["jobs"]),
                f"{w['p50']:.1f}s",
                f"{w['p95']:.1f}s",
                f"{w['p99']:.1f}s",
                str(t["waited_over_target"]),
                f"{t['usd_per_1k_images']:.2f}",
                f"{t['usd_per_month']:.2f}",
            ]
        )
    lines += [*_align(rows), ""]
    rows = [
        ["pool", "capacity", "instance", "node-h", "busy-h", "GPU util", "peak", "$/month", "idle $/month"]
    ]
    for name, p in summary["pools"].items():
        rows.append(
            [
                name,
                p["capacity_type"],
                p["instance_type"],
                f"{p['node_hours']:.1f}",
                f"{p['busy_gpu_hours']:.1f}",
                f"{100 * p['gpu_utilisation']:.0f}%",
                str(p["peak_replicas"]),
                f"{p['usd_per_month']:.2f}",
                f"{p['idle_usd_per_month']:.2f}",
            ]
        )
    lines += [*_align(rows), ""]
    s = summary["system"]
    nh = s["node_hours_per_month"]
    lines += [
        f"system: {s['jobs']} jobs, wait p95 {s['wait_seconds']['p95']:.1f}s, "
        f"{s['waited_over_target']} waited > {s['target_wait_seconds']:.0f}s, "
        f"peak replicas {s['peak_replicas']}, "
        f"{s['spot_interruptions']} spot interruptions, {s['preemptions']} preemptions",
        f"per month: GPU ${s['gpu_usd_per_month']:.2f} (idle ${s['idle_usd_per_month']:.2f}; "
        f"spot {nh['spot']:.0f} node-h, on-demand {nh['on-demand']:.0f} node-h) "
        f"+ fixed ${s['fixed_usd_per_month']:.2f} = ${s['usd_per_month']:.2f}",
    ]
    return "\n".join(lines)


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
