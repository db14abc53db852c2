"""Fixtures for the cluster test tier: a real control plane from hack/cluster/harness.py.

The session fixture ``cluster`` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok on dynamic loopback ports, and stops every process at the end
of the session, at interpreter exit, and (via PR_SET_PDEATHSIG) even if pytest is killed. Set
``GENJOB_SKIP_CLUSTER=1`` to skip this tier; otherwise missing binaries are an error
that says to run ``make tools``.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "manifests" / "crds" / "generationjobs.genjob.io.yaml"


def load_harness():
    """Import hack/cluster/harness.py by path (pytest runs with --import-mode=importlib)."""
    name = "genjob_cluster_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "hack" / "cluster" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = load_harness()


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs the real control plane (tests/cluster)")


@dataclass
class ClusterHandle:
    """What tests get from the ``cluster`` fixture."""

    control_plane: harness.Cluster

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def bin_dir(self) -> Path:
        return self.control_plane.bin_dir

    @property
    def tools(self) -> harness.Tools:
        return self.control_plane.tools

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run kubectl against the test cluster (raises CalledProcessError when check)."""
        return self.control_plane.kubectl(*args, input=input, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run helm against the test cluster (raises CalledProcessError when check)."""
        return self.control_plane.helm(*args, check=check)

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG and PATH (kubectl, helm) for subprocesses under test."""
        return self.control_plane.env()

    def add_kwok_node(self, name: str, **shape) -> dict:
        """Create a kwok-managed Node (labels, capacity, taints: see harness.kwok_node)."""
        return self.control_plane.create_node(harness.kwok_node(name, **shape))

    def api_client(self):
        """A new ``kubernetes.client.ApiClient`` for the test cluster, as admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="session")
def harness_module():
    """hack/cluster/harness.py, imported by path."""
    return harness


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> ClusterHandle:
    """A running control plane for the whole session; torn down even if tests fail."""
    if os.environ.get("GENJOB_SKIP_CLUSTER") == "1":
        pytest.skip("cluster tier skipped because GENJOB_SKIP_CLUSTER=1")
    tools = harness.Tools.from_env()
    missing = None
    try:
        tools.check()
    except harness.ToolMissingError as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    control_plane = harness.Cluster(tmp_path_factory.mktemp("cluster"), tools=tools, die_with_parent=True)
    atexit.register(control_plane.stop)
    control_plane.start()
    try:
        yield ClusterHandle(control_plane)
    finally:
        control_plane.stop()


@pytest.fixture(scope="session")
def genjob_crd(cluster: ClusterHandle) -> Path:
    """The genjob CRD applied and Established in the test cluster."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_PATH))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/generationjobs.genjob.io")
    return CRD_PATH


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float = 90.0,
    interval: float = 0.5,
    logs: Iterable[Any] = (),
) -> Any:
    """Poll ``probe`` until it returns a truthy value and return it; else fail naming ``what``,
    with the last value and the log tails of ``logs`` (objects with ``log_tail()``)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    detail = "\n".join(p.log_tail() for p in logs)
    pytest.fail(f"gave up after {timeout}s waiting for {what}; last: {last!r}\n{detail}")
