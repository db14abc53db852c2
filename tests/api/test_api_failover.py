"""Losing the Redis primary twice under load loses no acknowledged job (bench.failover's scenario).

Real processes: a primary, two replicas and three sentinels; the gateway (with its lease
reaper and `redis.wait_replicas=1`) and three workers on the tiny model, all finding the
primary through the sentinels. The primary is killed with SIGKILL twice while jobs are
submitted, claimed and completed, and restarted as a replica each time. The figures
(time to fail over and to resume) are printed by `python -m bench.failover`; here only
the counts are asserted.
"""

from __future__ import annotations

from pathlib import Path

from bench.failover import run_failover


def test_two_primary_kills_under_load_lose_no_job_and_resurrect_none(
    gateway_env: dict[str, str], tmp_path: Path
) -> None:
    report = run_failover(tmp_path, model=Path(gateway_env["GENJOB_ROOT"]) / "tiny", kills=2)
    assert report.kills == 2
    assert report.accepted > 20, "the load ran through both failovers"
    assert report.not_final == [], "every job answered 202 ends in a final state"
    assert sum(report.final_states.values()) == report.accepted
    assert report.final_states.get("succeeded") == report.accepted, report.final_states
    assert report.resurrected == [], "no event after a job's final one"
    assert report.completed_twice == [], "a completion is recorded once"
    # A job runs again only when its lease expired (its worker's writes were lost or it lost
    # the primary for longer than the lease): counted, and each one explained by a WorkerLost.
    assert report.re_executions_without_lost_lease == {}
    assert report.re_executions >= report.lease_expired >= 0
    assert all(seconds > 0 for seconds in report.resume_seconds), "submits resumed after each kill"
