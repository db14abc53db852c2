"""The model behaves like genjob's control loop: scale from zero, the HPA formula, scale-in that
spares busy workers, spill-over, priorities, batching, Spot interruptions, determinism."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from genjob.sim.inputs import load_calibration, load_catalog
from genjob.sim.model import RunData
from genjob.sim.results import summarize, waits
from genjob.sim.scenario import Scenario

Build = Callable[..., Scenario]
Run = Callable[[Scenario], RunData]


def _burst(jobs: int, **job: Any) -> dict[str, Any]:
    return {
        "workload": [
            {
                "tier": "pro",
                "arrivals": {"windows": [], "bursts": [{"at_seconds": 3600, "jobs": jobs}]},
                "job": {"model": "sd15", "width": 512, "height": 512, "steps": 50, **job},
            }
        ]
    }


def test_push_activation_cold_start_is_the_sum_of_its_phases(scenario: Build, run: Run) -> None:
    sc = scenario(**_burst(1))  # the chart's default: operator.pushScaler.enabled
    cal, catalog = load_calibration("aws"), load_catalog()
    expected = (
        cal.keda_push_activation_seconds
        + cal.kubernetes_pod_create_seconds
        + cal.karpenter_batch_idle_seconds
        + cal.node_launch_to_ready_seconds
        + cal.image_pull_seconds
        + cal.worker_start_seconds
        + catalog.models["sd15"].load_seconds.value
    )
    assert waits(run(sc)) == [pytest.approx(expected)]


def test_polling_adds_up_to_one_interval_and_the_poll_to_scale_delay(scenario: Build, run: Run) -> None:
    pushed = waits(run(scenario(**_burst(1))))[0]
    cal = load_calibration("aws")
    for interval in (5, 30):
        polling_only = scenario(
            **_burst(1), push_scaler=False, pools={"pro": {"keda": {"pollingInterval": interval}}}
        )
        polled = waits(run(polling_only))[0]
        extra = polled - pushed + cal.keda_push_activation_seconds - cal.keda_poll_to_scale_seconds
        assert 0 <= extra <= interval


def test_replicas_follow_pending_plus_inflight_over_list_length(scenario: Build, run: Run) -> None:
    for list_length, max_replicas, expected in ((4, 20, 10), (3, 20, math.ceil(40 / 3)), (1, 6, 6)):
        sc = scenario(
            **_burst(40), pools={"pro": {"keda": {"listLength": list_length, "maxReplicas": max_replicas}}}
        )
        result = run(sc)
        assert result.pools["pro"].peak_replicas == expected
        assert all(j.finished is not None for j in result.jobs)


def test_scale_in_never_preempts_a_busy_worker(scenario: Build, run: Run) -> None:
    # 156 s jobs (SDXL, 500 steps) outlast the 110 s drain grace: removing a busy pod would preempt.
    sc = scenario(
        workload=[
            {
                "tier": "pro",
                "arrivals": {"windows": [{"start_hour": 1, "hours": 1, "rate_per_hour": 40}]},
                "job": {"model": "sdxl", "width": 1024, "height": 1024, "steps": 500},
            }
        ],
        pools={"pro": {"keda": {"cooldownPeriod": 30, "maxReplicas": 6}}},
    )
    result = run(sc)
    assert all(j.finished is not None for j in result.jobs)
    assert sum(j.preemptions for j in result.jobs) == 0
    assert result.pools["pro"].replicas == 0  # and the pool still went back to zero


def test_a_pool_scales_to_zero_and_its_empty_nodes_go(scenario: Build, run: Run) -> None:
    result = run(scenario(**_burst(5)))
    assert result.pools["pro"].replicas == 0
    assert all(n.deleted is not None for n in result.nodes)
    last_finish = max(j.finished for j in result.jobs if j.finished is not None)
    # cooldown (300 s) + one pod a minute + consolidateAfter (120 s): all gone within ~15 minutes
    assert max(n.deleted for n in result.nodes if n.deleted is not None) < last_finish + 900


def test_spill_over_serves_a_tier_without_a_pool_only_while_the_higher_pool_runs(
    scenario: Build, run: Run
) -> None:
    starter = {
        "tier": "starter",
        "arrivals": {"rate_per_hour": 0, "windows": [{"start_hour": 1, "hours": 1, "rate_per_hour": 30}]},
        "job": {"model": "sd15", "width": 512, "height": 512, "steps": 30},
    }
    pro = scenario().workload[0].model_dump()
    both = run(scenario(workload=[pro, starter], pools={"starter": {"enabled": False}}))
    served = [j for j in both.jobs if j.tier == "starter"]
    assert served and all(j.finished is not None and j.pool == "pro" for j in served)
    alone = run(scenario(workload=[starter], pools={"starter": {"enabled": False}}))
    assert all(j.started is None for j in alone.jobs)  # nothing scales pro up for starter's jobs


def test_higher_priority_jobs_are_claimed_first(scenario: Build, run: Run) -> None:
    sc = scenario(**_burst(40), pools={"pro": {"keda": {"maxReplicas": 1}}})
    sc = sc.model_copy(
        update={
            "workload": [
                sc.workload[0].model_copy(
                    update={
                        "arrivals": sc.workload[0].arrivals.model_copy(update={"priorities": {0: 1, 5: 1}})
                    }
                )
            ]
        }
    )
    result = run(sc)
    by = {p: [w for j, w in zip(result.jobs, waits(result), strict=True) if j.priority == p] for p in (0, 5)}
    assert by[0] and by[5]
    assert max(by[5]) < min(by[0])  # one worker: every priority-5 job before any priority-0 job


def test_batching_uses_fewer_gpu_seconds(scenario: Build, run: Run) -> None:
    one = run(scenario(**_burst(40), pools={"pro": {"keda": {"maxReplicas": 2}}}))
    four = run(
        scenario(**_burst(40), pools={"pro": {"keda": {"maxReplicas": 2}, "extraConfig": {"batch_size": 4}}})
    )
    assert all(j.finished is not None for j in four.jobs)
    assert four.pools["pro"].busy_seconds < 0.95 * one.pools["pro"].busy_seconds


def test_spot_interruptions_lose_no_job_and_resume_saves_gpu_time(scenario: Build, run: Run) -> None:
    changes: dict[str, Any] = {
        **_burst(30, model="sdxl", width=1024, height=1024, steps=500),
        "spot_interruptions_per_hour": 4.0,
        "pools": {"pro": {"keda": {"maxReplicas": 4}}},
    }
    restart = run(scenario(**changes))
    resume = run(scenario(**changes, resume_from_step=True))
    for result in (restart, resume):
        assert result.interruptions > 0
        assert sum(j.preemptions for j in result.jobs) > 0
        assert all(j.finished is not None for j in result.jobs)
    offered = 30 * load_catalog().image_seconds("sdxl", "A10G", 1024, 1024, 500)
    assert restart.pools["pro"].busy_seconds > offered
    assert resume.pools["pro"].busy_seconds < restart.pools["pro"].busy_seconds


def test_min_replicas_keep_a_warm_worker_all_day(scenario: Build, run: Run) -> None:
    result = run(scenario(pools={"pro": {"keda": {"minReplicas": 1}}}))
    assert waits(result)[0] == 0.0
    assert result.pools["pro"].node_seconds >= 86_400
    assert result.pools["pro"].replicas >= 1


def test_the_shipped_node_pool_puts_a_pool_on_its_cheapest_type(scenario: Build, run: Run) -> None:
    sc = scenario()
    sc = sc.model_copy(
        update={"pools": {**sc.pools, "pro": sc.pools["pro"].model_copy(update={"node_selector": {}})}}
    )
    result = run(sc)
    assert {n.instance_type for n in result.nodes} == {"g4dn.xlarge"}


def test_a_seed_gives_the_same_run_and_another_seed_a_different_one(scenario: Build, run: Run) -> None:
    first, again = summarize(run(scenario())), summarize(run(scenario()))
    assert first == again
    assert summarize(run(scenario(seed=8))) != first
