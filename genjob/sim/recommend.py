"""`genjob sim --recommend`: the cheapest chart values whose simulated p95 waits meet the targets.

The search is coordinate descent over each targeted tier's pool values (capacity type, instance
type, listLength, pollingInterval, cooldownPeriod, minReplicas, maxReplicas, the worker's
batch_size): try every value of one setting with the others
fixed, keep the best, and repeat until a full round changes nothing. It starts twice: from the
scenario's values and from a generous scale-to-zero preset. "Best" is a config that meets every
target at the lowest $/month; while none meets them, the one closest to its targets. Candidates
are seeded simulations of the scenario's days (fewer with `search_days`); the winner is then run
on more seeds, and its worst p95 is what is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from genjob.sim.inputs import Calibration, CapacityType, Catalog
from genjob.sim.model import instance_types, simulate
from genjob.sim.results import summarize
from genjob.sim.scenario import INSTANCE_TYPE_LABEL, Scenario, with_pool


@dataclass(frozen=True)
class SearchSpace:
    """The values tried for each setting (chart names in the comments)."""

    capacity_types: tuple[CapacityType, ...] = ("spot", "on-demand")  # capacityType
    instance_types: tuple[str, ...] | None = None  # nodeSelector instance type; None: the NodePool's
    list_lengths: tuple[int, ...] = (1, 2, 3)  # keda.listLength
    polling_intervals: tuple[int, ...] = (5, 15, 30)  # keda.pollingInterval
    cooldowns: tuple[int, ...] = (30, 60, 120, 300)  # keda.cooldownPeriod
    min_replicas: tuple[int, ...] = (0, 1, 2)  # keda.minReplicas
    max_replicas: tuple[int, ...] = (4, 8, 12, 16, 24)  # keda.maxReplicas
    batch_sizes: tuple[int, ...] = (1, 2, 4)  # extraConfig.batch_size


MAX_ROUNDS = 4
TIGHTEN_PASSES = 3


@dataclass(frozen=True)
class Candidate:
    scenario: Scenario
    summary: dict[str, Any]
    usd_per_month: float
    p95: dict[str, float]

    def ratio(self, targets: dict[str, float]) -> float:
        """The worst p95 / target over the targeted tiers (<= 1 meets them all)."""
        return max(self.p95.get(tier, 0.0) / target for tier, target in targets.items())

    def better_than(self, other: Candidate, targets: dict[str, float]) -> bool:
        mine, theirs = self.ratio(targets), other.ratio(targets)
        if (mine <= 1) != (theirs <= 1):
            return mine <= 1
        if mine <= 1:
            return self.usd_per_month < other.usd_per_month - 1e-9
        return mine < theirs - 1e-9


@dataclass(frozen=True)
class Recommendation:
    best: Candidate
    checks: list[Candidate]  # the same values on other seeds
    targets: dict[str, float]
    simulations: int

    @property
    def worst_ratio(self) -> float:
        return max(c.ratio(self.targets) for c in [self.best, *self.checks])

    @property
    def meets(self) -> bool:
        return self.worst_ratio <= 1.0


def _evaluate(scenario: Scenario, catalog: Catalog, calibration: Calibration) -> Candidate:
    summary = summarize(simulate(scenario, catalog, calibration))
    p95 = {tier: t["wait_seconds"]["p95"] for tier, t in summary["tiers"].items()}
    return Candidate(scenario, summary, summary["system"]["usd_per_month"], p95)


def _options(scenario: Scenario, tier: str, space: SearchSpace) -> list[dict[str, Any]]:
    """Single-setting changes to try for `tier`'s pool (chart value names)."""
    pool = scenario.pools[tier]
    options: list[dict[str, Any]] = []
    # A node type changes the seconds per image, which moves the best listLength: try them together.
    for capacity in space.capacity_types:
        offered = scenario.node_pools[capacity].instance_types
        for instance in space.instance_types or offered:
            if instance in offered:
                options += [
                    {
                        "capacityType": capacity,
                        "nodeSelector": {INSTANCE_TYPE_LABEL: instance},
                        "keda": {"listLength": v},
                    }
                    for v in space.list_lengths
                ]
    options += [{"keda": {"pollingInterval": v}} for v in space.polling_intervals]
    options += [{"keda": {"cooldownPeriod": v}} for v in space.cooldowns]
    options += [{"keda": {"minReplicas": v}} for v in space.min_replicas if v <= pool.keda.max_replicas]
    options += [{"keda": {"maxReplicas": v}} for v in space.max_replicas if v >= pool.keda.min_replicas]
    options += [{"extraConfig": {"batch_size": v}} for v in space.batch_sizes]
    return options


def _generous(scenario: Scenario, targets: dict[str, float], space: SearchSpace) -> Scenario:
    """A second starting point: scale to zero, a high ceiling, short cooldown (coordinate descent
    from the scenario's own values alone can end in an expensive corner such as minReplicas 2)."""
    for tier in targets:
        keda = {
            "minReplicas": 0,
            "maxReplicas": max(space.max_replicas),
            "cooldownPeriod": 60,
            "listLength": 1,
        }
        scenario = with_pool(scenario, tier, {"keda": keda})
    return scenario


def recommend(
    scenario: Scenario,
    targets: dict[str, float],
    catalog: Catalog,
    calibration: Calibration,
    space: SearchSpace = SearchSpace(),
    check_seeds: int = 2,
    search_days: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Recommendation:
    """Search on `search_days` days (default: the scenario's) from two starting points, then check
    the winner on the scenario's days and `check_seeds` other seeds; when a run misses a target,
    search again with that target tightened by the miss (at most TIGHTEN_PASSES times)."""
    unknown = sorted(set(targets) - set(scenario.pools))
    if unknown:
        raise ValueError(f"targets for unknown tier(s) {unknown}; tiers are {sorted(scenario.pools)}")
    short = scenario.model_copy(update={"days": min(search_days or scenario.days, scenario.days)})
    starts = [short, _generous(short, targets, space)]
    simulations, goal = 0, dict(targets)
    best: Candidate | None = None
    result: Recommendation | None = None
    for _ in range(TIGHTEN_PASSES):
        for start in starts:
            found, runs = _descend(
                _evaluate(start, catalog, calibration), goal, catalog, calibration, space, progress
            )
            simulations += runs + 1
            if best is None or found.better_than(best, goal):
                best = found
        assert best is not None
        full = best.scenario.model_copy(update={"days": scenario.days})
        reused = best.scenario.days == scenario.days  # the search already ran the first seed
        runs_full = [best] if reused else []
        runs_full += [
            _evaluate(full.model_copy(update={"seed": full.seed + i}), catalog, calibration)
            for i in range(len(runs_full), check_seeds + 1)
        ]
        simulations += len(runs_full) - reused
        result = Recommendation(runs_full[0], runs_full[1:], targets, simulations)
        miss = result.worst_ratio
        if miss <= 1.0 or best.ratio(goal) > 1.0:
            return result
        goal = {tier: seconds / miss for tier, seconds in goal.items()}
        starts = [best.scenario]
        best = None
        if progress is not None:
            progress(f"a full run missed by {miss:.2f}x: searching again for p95 <= {goal}")
    assert result is not None
    return result


def _descend(
    best: Candidate,
    targets: dict[str, float],
    catalog: Catalog,
    calibration: Calibration,
    space: SearchSpace,
    progress: Callable[[str], None] | None,
) -> tuple[Candidate, int]:
    runs = 0
    for round_number in range(1, MAX_ROUNDS + 1):
        improved = False
        for tier in targets:
            for option in _options(best.scenario, tier, space):
                candidate = _evaluate(with_pool(best.scenario, tier, option), catalog, calibration)
                runs += 1
                if candidate.better_than(best, targets):
                    best, improved = candidate, True
        if progress is not None:
            progress(
                f"round {round_number}: {runs} simulations, best ${best.usd_per_month:.2f}/month, "
                f"worst p95/target {best.ratio(targets):.2f}"
            )
        if not improved:
            break
    return best, runs


def values_fragment(scenario: Scenario, tiers: list[str], catalog: Catalog) -> str:
    """The pools of `tiers` as a values.yaml fragment (`helm install -f` accepts it); the node type
    the simulation assumed is pinned with a nodeSelector."""
    out: dict[str, Any] = {"tiers": {}}
    for tier in tiers:
        pool = scenario.pools[tier]
        keda = pool.keda.model_dump(by_alias=True)
        instance = instance_types(scenario, catalog, tier)[0]
        node_selector = {
            "genjob.io/node-role": "gpu-worker",
            **pool.node_selector,
            INSTANCE_TYPE_LABEL: instance,
        }
        out["tiers"][tier] = {
            "pool": {"capacityType": pool.capacity_type, "nodeSelector": node_selector, "keda": keda}
        }
        if pool.batch_size > 1:
            out["tiers"][tier]["pool"]["extraConfig"] = {"batch_size": pool.batch_size}
    text = yaml.safe_dump(out, sort_keys=False)
    return text
