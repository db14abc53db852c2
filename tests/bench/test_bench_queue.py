"""bench.queue in quick mode, genjob part and raw loop only (no reference venvs).

Ensures the bench still runs end to end against a real redis-server, prints its result as
the last line in the shape BENCHMARKS.md asks for, and that every genjob job it timed
really succeeded. No timing is asserted: figures belong to the bench, not to tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_result_json_and_completes_every_job() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.queue", "--quick", "--skip-refs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 2, "progress lines come before the result"
    result = json.loads(lines[-1])

    assert result["bench"] == "queue"
    assert result["unit"] == "jobs/s"
    assert result["value"] > 0 and result["reference"] > 0
    assert result["ratio"] == round(result["value"] / result["reference"], 3)
    details = result["details"]
    assert details["better"] == "higher"
    assert details["consumers_4"] > 0
    for key in ("rq", "arq", "celery", "dramatiq_1", "dramatiq_4"):
        assert key in details and details[key] is None  # skipped, but the keys are there
    assert details["skipped_refs"] is True
    assert 0 < details["claim_p50_ms"] <= details["claim_p99_ms"]
    assert details["samples"] >= 1
    # genjob with 1 consumer and the raw loop run twice per round (A-B-B-A).
    assert details["claim_samples"] == 2 * details["samples"] * details["jobs_per_round"]
    assert details["ratio_paired_median"] > 0

    # enqueue + claim + complete are one script each: three round trips per job, plus the
    # consumer's final empty claim per round.
    assert 3.0 <= details["round_trips_per_job"] < 3.1
    # Every timed genjob job (1 consumer twice, 4 consumers, the batch variant) ended succeeded.
    assert details["genjob_jobs_enqueued"] == 4 * details["samples"] * details["jobs_per_round"]
    assert details["genjob_jobs_succeeded"] == details["genjob_jobs_enqueued"]
    # The cost breakdown timed every kind of call.
    costs = details["per_call_us"]
    for key in ("ping", "lpush", "jobqueue_enqueue", "jobqueue_claim_complete", "lmove_lrem"):
        assert costs[key] > 0
