"""The discrete-event model of genjob's control loop (SimPy), one run of one scenario.

What runs, per tier (names as in the chart and karpenter/):
- arrivals queue jobs in the tier's line: priority jobs first (highest band first, FIFO within a
  band), then the pending list; a preempted job goes back to the head of its band (queue/lua:
  enter_line, requeue.lua);
- a worker claims from its pool's consumption order (tiers.consumption_order: own tier, then
  spill-over tiers), up to `batch_size` jobs of one batch key from one tier (claim.lua);
- KEDA polls pending + priority + in-flight of the pool's own tier every pollingInterval (the
  chart's scalingModifiers formula): work -> 0 to 1 replicas, at once when the operator's push
  scaler is on (operator.pushScaler.enabled); no work for cooldownPeriod -> minReplicas;
- the HPA syncs every 15 s: ceil(that sum / listLength) outside the tolerance, scale-up
  by max(4 pods, 100%) per period, scale-down by the chart's policy (stabilization window =
  cooldownPeriod, `worker.keda.scaleDown` pods per period); the ReplicaSet removes
  unscheduled, then starting, then idle, then busy pods (pod-deletion-cost);
- Karpenter batches unschedulable pods (1 s idle / 10 s max), launches one node per pod (one GPU
  each) of the cheapest allowed instance type, and deletes an empty node consolidateAfter after
  it emptied; a pod binds to an empty Ready node of its capacity type first;
- a new node pulls the worker image once; every pod loads its model before it is ready;
- Spot nodes are reclaimed at a rate per hour with a two-minute notice: the worker finishes its job
  if the drain estimate fits the grace period, else requeues it (progress kept only with
  resume_from_step), and the ReplicaSet replaces the pod.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from genjob.sim.arrivals import DAY, arrival_times, priorities
from genjob.sim.inputs import Calibration, CapacityType, Catalog, InstanceType
from genjob.sim.scenario import INSTANCE_TYPE_LABEL, JobShape, PoolValues, Scenario
from genjob.tiers import consumption_order

SAMPLE_SECONDS = 60.0
DRAIN_ESTIMATE_FACTOR = 1.2  # genjob_worker.drain: pessimistic remaining-time estimate
DRAIN_FINISH_SECONDS = 1.0


@dataclass(eq=False)
class Job:
    id: int
    tier: str
    priority: int
    submitted: float
    shape: JobShape
    image_seconds: tuple[float, str] | None  # (seconds, GPU) given by the scenario
    pending_since: float = 0.0
    pending_seconds: float = 0.0
    started: float | None = None
    finished: float | None = None
    done_fraction: float = 0.0
    preemptions: int = 0
    pool: str | None = None

    @property
    def batch_key(self) -> tuple[Any, ...]:
        s = self.shape
        return (self.tier, s.model, s.width, s.height, s.steps)


@dataclass(eq=False)
class Node:
    id: int
    capacity_type: CapacityType
    instance_type: str
    price_per_hour: float
    launched: float
    ready_at: float | None = None
    pod: Pod | None = None
    nominee: Pod | None = None
    owner_pool: str | None = None
    empty_since: float | None = None
    deleted: float | None = None
    cordoned: bool = False
    image_cached: bool = False
    accounted_until: float = 0.0


@dataclass(eq=False)
class Pod:
    id: int
    pool: str
    created: float
    state: str = "pending"  # pending -> starting -> ready -> gone
    node: Node | None = None
    jobs: list[Job] = field(default_factory=list)
    run_token: int = 0
    run_start: float = 0.0
    run_seconds: float = 0.0
    terminating: bool = False


@dataclass(eq=False)
class PoolState:
    name: str
    values: PoolValues
    order: list[str]
    instance_types: list[str]
    model: str
    replicas: int = 0
    pods: list[Pod] = field(default_factory=list)
    last_active: float = -math.inf
    activating: bool = False
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_downs: list[tuple[float, int]] = field(default_factory=list)
    node_seconds: float = 0.0
    node_cost: float = 0.0
    busy_seconds: float = 0.0
    busy_cost: float = 0.0
    busy_by_tier: dict[str, float] = field(default_factory=dict)
    cold_starts: int = 0
    peak_replicas: int = 0


@dataclass
class RunData:
    """Everything a run recorded; results.py turns it into the report."""

    scenario: Scenario
    horizon: float
    jobs: list[Job]
    pools: dict[str, PoolState]
    nodes: list[Node]
    timeline: dict[str, list[float]]
    pending_area: dict[str, float]
    peak_replicas: int
    interruptions: int


class Simulation:
    def __init__(self, scenario: Scenario, catalog: Catalog, calibration: Calibration) -> None:
        self.sc = scenario
        self.catalog = catalog
        self.cal = calibration
        self.env = simpy.Environment()
        self.horizon = scenario.days * DAY
        self.pending: dict[str, list[Job]] = {t: [] for t in scenario.tiers}
        self.inflight: dict[str, int] = {t: 0 for t in scenario.tiers}
        self.pending_area: dict[str, float] = {t: 0.0 for t in scenario.tiers}
        self._area_at: dict[str, float] = {t: 0.0 for t in scenario.tiers}
        self.jobs: list[Job] = []
        self.nodes: list[Node] = []
        self.batch: list[Pod] = []
        self._batch_wakeup: simpy.Event | None = None
        self._ids = 0
        self.interruptions = 0
        self.peak_replicas = 0
        self.timeline: dict[str, list[float]] = {"t": []}
        self.rng_spot = np.random.default_rng([scenario.seed, 1])
        self.rng_phase = np.random.default_rng([scenario.seed, 2])
        self.rng_service = np.random.default_rng([scenario.seed, 3])
        self.rng_start = np.random.default_rng([scenario.seed, 4])
        self.pools = {
            name: self._pool_state(name, values) for name, values in scenario.pools.items() if values.enabled
        }

    # ------------------------------------------------------------------ set-up
    def _pool_state(self, name: str, values: PoolValues) -> PoolState:
        order = consumption_order(self.sc.tiers, [name], values.spill_over)
        models = [w.job.model for w in self.sc.workload if w.tier == name] or ["sdxl"]
        allowed = instance_types(self.sc, self.catalog, name)
        return PoolState(name=name, values=values, order=order, instance_types=allowed, model=models[0])

    def _price(self, instance_type: str, capacity_type: CapacityType) -> float:
        return price(self.sc, self.catalog, instance_type, capacity_type)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # ------------------------------------------------------------------ run
    def run(self) -> RunData:
        for index, w in enumerate(self.sc.workload):
            rng = np.random.default_rng([self.sc.seed, 100 + index])
            times = arrival_times(w.arrivals, self.sc.days, rng, self.sc.base_dir)
            prios = priorities(w.arrivals, len(times), rng)
            given = (
                (w.image_seconds, w.image_seconds_gpu) if w.image_seconds and w.image_seconds_gpu else None
            )
            self.env.process(self._arrivals(w.tier, times, prios, w.job, given))
        loaded = {w.tier for w in self.sc.workload}
        for pool in self.pools.values():
            self._prewarm(pool)
            if pool.name in loaded or pool.replicas > 0:  # KEDA reads only the pool's own tier
                self.env.process(self._keda_loop(pool))
                self.env.process(self._hpa_loop(pool))
        self.env.process(self._sampler())
        self.env.run(until=self.horizon)
        for tier, items in self.pending.items():
            self._area(tier)
            for job in items:  # still waiting at the end: count the wait so far
                job.pending_seconds += self.horizon - job.pending_since
        for node in self.nodes:
            if node.deleted is None:
                self._account(node, self.horizon)
        return RunData(
            scenario=self.sc,
            horizon=self.horizon,
            jobs=self.jobs,
            pools=self.pools,
            nodes=self.nodes,
            timeline=self.timeline,
            pending_area=self.pending_area,
            peak_replicas=self.peak_replicas,
            interruptions=self.interruptions,
        )

    def _prewarm(self, pool: PoolState) -> None:
        """minReplicas pods start Ready on Ready nodes (the steady state of an always-on pool)."""
        for _ in range(pool.values.keda.min_replicas):
            node = self._new_node(pool, self.env.now)
            node.ready_at, node.image_cached = 0.0, True
            pod = Pod(id=self._next_id(), pool=pool.name, created=0.0, state="ready")
            pool.pods.append(pod)
            self._bind(pod, node, start=False)
        pool.replicas = pool.values.keda.min_replicas
        self._note_replicas()

    def _arrivals(
        self,
        tier: str,
        times: list[float],
        prios: list[int],
        shape: JobShape,
        image_seconds: tuple[float, str] | None,
    ) -> Generator[simpy.Event, Any, None]:
        for at, prio in zip(times, prios, strict=True):
            yield self.env.timeout(at - self.env.now)
            job = Job(
                id=len(self.jobs),
                tier=tier,
                priority=prio,
                submitted=at,
                shape=shape,
                image_seconds=image_seconds,
            )
            self.jobs.append(job)
            self._enqueue(job)

    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        while True:
            tl = self.timeline
            tl["t"].append(self.env.now)
            for tier, items in self.pending.items():
                tl.setdefault(f"pending:{tier}", []).append(len(items))
            for name, pool in self.pools.items():
                tl.setdefault(f"replicas:{name}", []).append(pool.replicas)
                tl.setdefault(f"busy:{name}", []).append(sum(1 for p in pool.pods if p.jobs))
            alive = [n for n in self.nodes if n.deleted is None]
            for ct in ("spot", "on-demand"):
                tl.setdefault(f"nodes:{ct}", []).append(sum(1 for n in alive if n.capacity_type == ct))
            yield self.env.timeout(SAMPLE_SECONDS)

    # ------------------------------------------------------------------ queue
    def _area(self, tier: str) -> None:
        now = self.env.now
        self.pending_area[tier] += len(self.pending[tier]) * (now - self._area_at[tier])
        self._area_at[tier] = now

    def _enqueue(self, job: Job, head: bool = False) -> None:
        self._area(job.tier)
        items = self.pending[job.tier]
        job.pending_since = self.env.now
        # One ordered line per tier: priority bands, highest first, FIFO within a band; a job put
        # back goes to the head of its band (the by-priority set and the list of enter_line).
        if head:
            at = next((i for i, other in enumerate(items) if other.priority <= job.priority), len(items))
        else:
            at = next((i for i, other in enumerate(items) if other.priority < job.priority), len(items))
        items.insert(at, job)
        pool = self.pools.get(job.tier)
        if pool is not None and self.sc.push_scaler and pool.replicas == 0:
            self._activate(pool, self.cal.keda_push_activation_seconds)
        self._dispatch(job.tier)

    def _dispatch(self, tier: str) -> None:
        """Idle ready workers that serve `tier` claim, own-tier workers first (they block on its list)."""
        idle = [
            (pool.order.index(tier), pod.id, pod)
            for pool in self.pools.values()
            if tier in pool.order
            for pod in pool.pods
            if pod.state == "ready" and not pod.jobs and not pod.terminating
        ]
        for _, _, pod in sorted(idle, key=lambda x: (x[0], x[1])):
            if not self.pending[tier]:
                return
            self._claim(pod)

    def _claim(self, pod: Pod) -> None:
        pool = self.pools[pod.pool]
        for tier in pool.order:
            items = self.pending[tier]
            if not items:
                continue
            self._area(tier)
            batch = [items.pop(0)]
            while len(batch) < pool.values.batch_size and items and items[0].batch_key == batch[0].batch_key:
                batch.append(items.pop(0))
            now = self.env.now
            for job in batch:
                job.pending_seconds += now - job.pending_since
                if job.started is None:
                    job.started = now
                job.pool = pool.name
            self.inflight[tier] += len(batch)
            pod.jobs = batch
            pod.run_token += 1
            pod.run_start = now
            pod.run_seconds = self._service_seconds(batch, pod)
            self.env.process(self._run(pod, pod.run_token))
            return

    def _service_seconds(self, batch: list[Job], pod: Pod) -> float:
        assert pod.node is not None
        gpu = self.catalog.instance(pod.node.instance_type).gpu
        shape = batch[0].shape
        one = self.catalog.image_seconds(shape.model, gpu, shape.width, shape.height, shape.steps)
        given = batch[0].image_seconds
        if given is not None:  # a scenario's own figure on its GPU; other GPUs keep the catalog's ratio
            seconds, on_gpu = given
            ref = self.catalog.image_seconds(shape.model, on_gpu, shape.width, shape.height, shape.steps)
            one *= seconds / ref
        return self.catalog.batch_seconds(one, sum(j.shape.images * (1.0 - j.done_fraction) for j in batch))

    def _run(self, pod: Pod, token: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(pod.run_seconds)
        if pod.run_token != token or pod.state == "gone":
            return  # preempted meanwhile
        now = self.env.now
        self._gpu_time(pod, now - pod.run_start)
        for job in pod.jobs:
            job.finished = now
            self.inflight[job.tier] -= 1
        pod.jobs = []
        if pod.terminating:
            self._pod_gone(pod)
        else:
            self._claim(pod)

    def _gpu_time(self, pod: Pod, seconds: float) -> None:
        pool = self.pools[pod.pool]
        assert pod.node is not None
        pool.busy_seconds += seconds
        pool.busy_cost += seconds * pod.node.price_per_hour / 3600
        tier = pod.jobs[0].tier
        pool.busy_by_tier[tier] = pool.busy_by_tier.get(tier, 0.0) + seconds

    def _preempt(self, pod: Pod) -> None:
        """Stop the running batch at a step boundary and put its jobs back at the head of their list."""
        now = self.env.now
        elapsed = now - pod.run_start
        self._gpu_time(pod, elapsed)
        fraction = min(1.0, elapsed / pod.run_seconds) if pod.run_seconds > 0 else 1.0
        pod.run_token += 1
        for job in reversed(pod.jobs):
            self.inflight[job.tier] -= 1
            job.preemptions += 1
            if self.sc.resume_from_step:
                job.done_fraction += (1.0 - job.done_fraction) * fraction
            self._enqueue(job, head=True)
        pod.jobs = []

    # ------------------------------------------------------------------ KEDA and the HPA
    def _metric(self, pool: PoolState) -> int:
        """The ScaledObject's formula: pending + priority (both in the model's one line) + inflight."""
        return len(self.pending[pool.name]) + self.inflight[pool.name]

    def _keda_loop(self, pool: PoolState) -> Generator[simpy.Event, Any, None]:
        interval = pool.values.keda.polling_interval
        yield self.env.timeout(float(self.rng_phase.uniform(0, interval)))
        while True:
            keda = pool.values.keda
            if self._metric(pool) > 0:
                pool.last_active = self.env.now
                if pool.replicas == 0:
                    self._activate(pool, self.cal.keda_poll_to_scale_seconds)
            elif (
                keda.min_replicas == 0
                and pool.replicas > 0
                and self.env.now - pool.last_active >= keda.cooldown_period
            ):
                self._set_replicas(pool, 0)
            yield self.env.timeout(interval)

    def _activate(self, pool: PoolState, delay: float) -> None:
        if pool.activating:
            return
        pool.activating = True

        def activate(_: simpy.Event) -> None:
            pool.activating = False
            pool.last_active = self.env.now
            if pool.replicas == 0:
                self._set_replicas(pool, max(1, pool.values.keda.min_replicas))

        self.env.timeout(delay).callbacks.append(activate)

    def _hpa_loop(self, pool: PoolState) -> Generator[simpy.Event, Any, None]:
        period = self.cal.hpa_sync_period_seconds
        yield self.env.timeout(float(self.rng_phase.uniform(0, period)))
        while True:
            if pool.replicas > 0:
                self._hpa_sync(pool)
            yield self.env.timeout(period)

    def _hpa_sync(self, pool: PoolState) -> None:
        keda, now, current = pool.values.keda, self.env.now, pool.replicas
        metric = self._metric(pool)
        if metric == 0 and current <= max(1, keda.min_replicas):
            return  # already at the floor: nothing to scale (skipping keeps long idle runs fast)
        ratio = metric / (keda.list_length * current)
        recommended = (
            current if abs(ratio - 1.0) <= self.cal.hpa_tolerance else math.ceil(metric / keda.list_length)
        )
        recommended = min(max(recommended, max(1, keda.min_replicas)), keda.max_replicas)
        window = keda.cooldown_period  # the chart's scaleDown.stabilizationWindowSeconds
        pool.recommendations = [(t, r) for t, r in pool.recommendations if t > now - window]
        pool.recommendations.append((now, recommended))
        if recommended > current:
            step = max(
                self.cal.hpa_scale_up_pods_per_period,
                current * self.cal.hpa_scale_up_percent_per_period / 100,
            )
            desired = min(recommended, current + int(step))
        else:
            desired = min(current, max(r for _, r in pool.recommendations))
            policy = keda.scale_down
            pool.scale_downs = [(t, n) for t, n in pool.scale_downs if t > now - policy.period_seconds]
            allowed = max(0, policy.pods - sum(n for _, n in pool.scale_downs))
            desired = max(desired, current - allowed)
            if desired < current:
                pool.scale_downs.append((now, current - desired))
        if desired != current:
            self._set_replicas(pool, desired)

    # ------------------------------------------------------------------ Deployment / ReplicaSet
    def _note_replicas(self) -> None:
        total = sum(p.replicas for p in self.pools.values())
        self.peak_replicas = max(self.peak_replicas, total)
        for pool in self.pools.values():
            pool.peak_replicas = max(pool.peak_replicas, pool.replicas)

    def _set_replicas(self, pool: PoolState, replicas: int) -> None:
        pool.replicas = replicas
        self._note_replicas()
        self._reconcile(pool)

    def _reconcile(self, pool: PoolState) -> None:
        live = [p for p in pool.pods if p.state != "gone" and not p.terminating]
        for _ in range(pool.replicas - len(live)):
            pod = Pod(id=self._next_id(), pool=pool.name, created=self.env.now)
            pool.pods.append(pod)
            self.env.process(self._schedule_later(pod))
        if len(live) > pool.replicas:
            rank = {"pending": 0, "starting": 1, "ready": 2}
            victims = sorted(live, key=lambda p: (rank[p.state], bool(p.jobs), -p.created))
            for pod in victims[: len(live) - pool.replicas]:
                self._delete_pod(pod, grace=pool.values.drain_grace_seconds)
        pool.pods = [p for p in pool.pods if p.state != "gone"]

    def _schedule_later(self, pod: Pod) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.cal.kubernetes_pod_create_seconds)
        if pod.state == "pending":
            self._schedule(pod)

    def _fits(self, pod: Pod, node: Node) -> bool:
        pool = self.pools[pod.pool]
        return node.capacity_type == pool.values.capacity_type and node.instance_type in pool.instance_types

    def _schedule(self, pod: Pod) -> None:
        """Bind to an empty Ready node, else wait for an in-flight NodeClaim, else ask Karpenter."""
        for node in self.nodes:
            if (
                node.deleted is None
                and not node.cordoned
                and node.ready_at is not None
                and node.pod is None
                and self._fits(pod, node)
            ):
                self._bind(pod, node)
                return
        for node in self.nodes:
            if (
                node.deleted is None
                and node.ready_at is None
                and node.nominee is None
                and self._fits(pod, node)
            ):
                node.nominee = pod
                return
        self.batch.append(pod)
        if self._batch_wakeup is None:  # open a batch window
            self._batch_wakeup = self.env.event()
            self.env.process(self._karpenter_batch())
        elif not self._batch_wakeup.triggered:  # a new pod extends the window
            self._batch_wakeup.succeed()

    def _karpenter_batch(self) -> Generator[simpy.Event, Any, None]:
        """Close the window after batch_idle without new pods or batch_max in all; then launch."""
        start = self.env.now
        while True:
            wakeup = self._batch_wakeup
            assert wakeup is not None
            end = min(
                self.env.now + self.cal.karpenter_batch_idle_seconds,
                start + self.cal.karpenter_batch_max_seconds,
            )
            result = yield wakeup | self.env.timeout(end - self.env.now)
            if wakeup not in result:
                break
            self._batch_wakeup = self.env.event()
        self._batch_wakeup = None
        pods, self.batch = self.batch, []
        for pod in pods:
            if pod.state == "pending" and pod.node is None:
                node = self._new_node(self.pools[pod.pool], self.env.now)
                node.nominee = pod
                self.env.process(self._node_start(node))

    def _new_node(self, pool: PoolState, now: float) -> Node:
        instance_type = pool.instance_types[0]
        node = Node(
            id=self._next_id(),
            capacity_type=pool.values.capacity_type,
            instance_type=instance_type,
            price_per_hour=self._price(instance_type, pool.values.capacity_type),
            launched=now,
            owner_pool=pool.name,
            accounted_until=now,
        )
        self.nodes.append(node)
        if node.capacity_type == "spot":
            self.env.process(self._spot_reclaim(node, self.catalog.instance(instance_type)))
        return node

    def _node_start(self, node: Node) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.cal.node_launch_to_ready_seconds)
        if node.deleted is not None:
            return
        node.ready_at = self.env.now
        candidates = [node.nominee] if node.nominee is not None else []
        candidates += sorted(
            (p for pool in self.pools.values() for p in pool.pods if p.state == "pending" and p.node is None),
            key=lambda p: p.created,
        )
        node.nominee = None
        for pod in candidates:
            if pod.state == "pending" and pod.node is None and self._fits(pod, node):
                self._bind(pod, node)
                return
        self._node_empty(node)

    def _bind(self, pod: Pod, node: Node, start: bool = True) -> None:
        self._account(node, self.env.now)
        node.pod, node.owner_pool, node.empty_since = pod, pod.pool, None
        for other in self.nodes:
            if other.nominee is pod and other is not node:
                other.nominee = None
        pod.node = node
        if start:
            pod.state = "starting"
            self.env.process(self._pod_start(pod, node))

    def _pod_start(self, pod: Pod, node: Node) -> Generator[simpy.Event, Any, None]:
        pool = self.pools[pod.pool]
        load = self.sc.model_load_seconds
        if load is None:
            load = self.catalog.models[pool.model].load_seconds.value
        # Lognormal around the median worker start: a process start's spread (imports, a busy host).
        spread = self.cal.worker_start_log_sigma
        start = self.cal.worker_start_seconds
        if spread > 0:
            start *= float(np.exp(self.rng_start.normal(0.0, spread)))
        seconds = start + load
        if not node.image_cached:
            seconds += self.cal.image_pull_seconds
            node.image_cached = True
        yield self.env.timeout(seconds)
        if pod.state != "starting":
            return
        pod.state = "ready"
        pool.cold_starts += 1
        self._claim(pod)

    def _delete_pod(self, pod: Pod, grace: float) -> None:
        """SIGTERM: an idle or unstarted pod goes at once; a busy one finishes if it fits, else requeues."""
        if pod.state == "pending":
            pod.state = "gone"
            self.batch = [p for p in self.batch if p is not pod]
            for node in self.nodes:
                if node.nominee is pod:
                    node.nominee = None
            return
        if pod.jobs:
            pod.terminating = True
            remaining = pod.run_seconds - (self.env.now - pod.run_start)
            if remaining * DRAIN_ESTIMATE_FACTOR + DRAIN_FINISH_SECONDS > grace:
                self._preempt(pod)
                self._pod_gone(pod)
            return
        self._pod_gone(pod)

    def _pod_gone(self, pod: Pod) -> None:
        pod.state = "gone"
        node = pod.node
        if node is not None and node.pod is pod:
            self._account(node, self.env.now)
            node.pod = None
            if node.deleted is None and not node.cordoned:
                self._node_empty(node)
        pool = self.pools[pod.pool]
        pool.pods = [p for p in pool.pods if p.state != "gone"]

    def _node_empty(self, node: Node) -> None:
        """A pending pod that fits takes the node; else Karpenter deletes it consolidateAfter later."""
        waiting = sorted(
            (p for pool in self.pools.values() for p in pool.pods if p.state == "pending" and p.node is None),
            key=lambda p: p.created,
        )
        for pod in waiting:
            if self._fits(pod, node):
                self._bind(pod, node)
                return
        node.empty_since = stamp = self.env.now
        delay = self.sc.node_pools[node.capacity_type].consolidate_after_seconds
        delay += self.cal.karpenter_disruption_poll_seconds

        def consolidate(_: simpy.Event) -> None:
            if node.deleted is None and node.pod is None and node.empty_since == stamp:
                self._delete_node(node)

        self.env.timeout(delay).callbacks.append(consolidate)

    def _delete_node(self, node: Node) -> None:
        now = self.env.now
        billed_end = max(now, node.launched + self.cal.aws_min_billed_seconds)
        self._account(node, min(billed_end, self.horizon))
        node.deleted = now

    def _account(self, node: Node, until: float) -> None:
        seconds = max(0.0, until - node.accounted_until)
        if seconds and node.owner_pool in self.pools:
            pool = self.pools[node.owner_pool]
            pool.node_seconds += seconds
            pool.node_cost += seconds * node.price_per_hour / 3600
        node.accounted_until = max(node.accounted_until, until)

    # ------------------------------------------------------------------ Spot
    def _spot_reclaim(self, node: Node, instance: InstanceType) -> Generator[simpy.Event, Any, None]:
        rate = self.sc.spot_interruptions_per_hour
        if rate is None:
            rate = instance.spot_interruptions_per_hour.value
        if rate <= 0:
            return
        yield self.env.timeout(float(self.rng_spot.exponential(3600.0 / rate)))
        if node.deleted is not None:
            return
        self.interruptions += 1
        node.cordoned = True
        notice = self.cal.aws_spot_notice_seconds
        pod = node.pod
        if pod is not None:
            pool = self.pools[pod.pool]
            self._delete_pod(pod, grace=min(pool.values.drain_grace_seconds, notice))
            self._reconcile(pool)  # the ReplicaSet replaces the evicted pod
        yield self.env.timeout(notice)
        if node.pod is not None:  # still running at reclaim: killed, the job comes back
            pod = node.pod
            if pod.jobs:
                self._preempt(pod)
            self._pod_gone(pod)
        if node.deleted is None:
            self._delete_node(node)


def price(scenario: Scenario, catalog: Catalog, instance_type: str, capacity_type: CapacityType) -> float:
    """USD per hour of a node: the scenario's price override, else the catalog's."""
    override = scenario.prices.get(instance_type)
    if override is not None:
        value = override.spot if capacity_type == "spot" else override.on_demand
        if value is not None:
            return value
    return catalog.instance(instance_type).price(capacity_type)


def instance_types(scenario: Scenario, catalog: Catalog, tier: str) -> list[str]:
    """The node types `tier`'s pool can get, cheapest first: its nodeSelector's, else its NodePool's.
    Karpenter launches the first (lowest price; capacity shortages are not modelled)."""
    values = scenario.pools[tier]
    wanted = values.node_selector.get(INSTANCE_TYPE_LABEL)
    allowed = [wanted] if wanted else list(scenario.node_pools[values.capacity_type].instance_types)
    return sorted(allowed, key=lambda it: price(scenario, catalog, it, values.capacity_type))


def simulate(scenario: Scenario, catalog: Catalog, calibration: Calibration) -> RunData:
    """Run `scenario` once (deterministic for its seed)."""
    return Simulation(scenario, catalog, calibration).run()
