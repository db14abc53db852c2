"""`make cluster-demo` in its short form: the README's Kubernetes path from helm install to a
GenerationJob Succeeded with its PNG, and the pool back to zero (hack/cluster/demo.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.autoscaling]

REPO = Path(__file__).resolve().parents[2]


def test_the_cluster_demo_takes_the_example_job_to_succeeded_and_the_pool_back_to_zero(
    tmp_path: Path,
) -> None:
    if os.environ.get("GENJOB_SKIP_CLUSTER") == "1" or os.environ.get("GENJOB_SKIP_AUTOSCALING") == "1":
        pytest.skip("autoscaling tier skipped (GENJOB_SKIP_CLUSTER / GENJOB_SKIP_AUTOSCALING)")
    demo = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "demo.py"), "--state-dir", str(tmp_path / "demo"),
         "--dynamic-ports", "--until", "pool-zero", "--timeout", "600"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-6000:]
    for step in (
        "export KUBECONFIG=",
        "helm install genjob charts/genjob",
        "ScaledObject genjob-worker-free: active",
        "worker pod Pending",
        "Karpenter NodeClaim",
        "(spot) from NodePool genjob-gpu-spot",
        "GenerationJob lighthouse: Running",
        "GenerationJob lighthouse: Succeeded",
        "pool free back to zero",
    ):
        assert step in out, f"missing {step!r} in:\n{out[-6000:]}"
    (png,) = re.findall(r"the PNG: (\S+\.png)", out)
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
