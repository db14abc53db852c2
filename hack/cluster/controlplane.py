"""``Cluster``: start, probe and stop one loopback control plane.

Start order: certificates and kubeconfigs, etcd (data in a fresh temp dir), the API
server, the controller manager and scheduler, kwok, then a default kwok node. The
cluster counts as usable once that node is Ready, the ``default`` ServiceAccount exists
and the scheduler answers /healthz. With ``autoscalers=True`` it then installs the KEDA and
Karpenter CRDs, starts KEDA's operator and metrics adapter and Karpenter's kwok provider
(see autoscalers.py), applies the shipped NodePools pointed at the kwok node class, and
waits until the external metrics API is Available and Karpenter is ready. Each process gets
its own process group and a pid file under ``<state>/pids/``; ``stop()`` works from those
files, so another process (``harness.py down``) can stop a cluster this one started.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import autoscalers, components, pki
from .autoscalers import AUTOSCALER_COMPONENTS, AutoscalerPorts, KarpenterTimings
from .components import COMPONENTS, DEFAULT_NODE
from .errors import AlreadyRunningError, ComponentFailedError, HarnessError, StartTimeoutError
from .processes import Ports, die_with_parent, kill_group, runs_binary, tail
from .tools import Tools


@dataclass
class State:
    """What ``down`` and ``status`` need to know about a running control plane."""

    ports: dict
    etcd_data: str
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)


def _stderr_log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr)


def _get(url: str, context: ssl.SSLContext | None = None) -> bytes:
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return response.read()


def _unverified() -> ssl.SSLContext:
    """For the scheduler's /healthz: it serves a self-signed cert of its own."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Cluster:
    """One control plane: ``start()`` brings it up, ``stop()`` ends every process it began.

    ``die_with_parent=True`` (the pytest fixture) also makes the kernel kill every
    component if this Python process dies without running ``stop()`` (SIGKILL, crash).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        tools: Tools | None = None,
        ports: Ports | None = None,
        die_with_parent: bool = False,
        autoscalers: bool = False,
        karpenter_timings: KarpenterTimings | None = None,
        log: Callable[[str], None] = _stderr_log,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.tools = tools or Tools.from_env()
        self.ports = ports or Ports.dynamic()
        self.die_with_parent = die_with_parent
        self.autoscalers = autoscalers
        self.karpenter_timings = karpenter_timings or KarpenterTimings()
        self.autoscaler_ports = AutoscalerPorts.dynamic() if autoscalers else None
        self.log = log
        self.pki_dir = self.state_dir / "pki"
        self.log_dir = self.state_dir / "logs"
        self.pid_dir = self.state_dir / "pids"
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.etcd_data: Path | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    def attach(cls, state_dir: Path) -> Cluster:
        """A Cluster for a control plane started by another process (for status/down)."""
        cluster = cls(state_dir, ports=Ports(0, 0, 0, 0, 0))
        state_file = cluster.state_dir / "state.json"
        if state_file.exists():
            state = State(**json.loads(state_file.read_text()))
            cluster.ports = Ports(**state.ports)
            cluster.etcd_data = Path(state.etcd_data)
        return cluster

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.api}"

    @property
    def bin_dir(self) -> Path:
        """The directory with kubectl, kube-apiserver and the other Kubernetes binaries."""
        return self.tools.bin_dirs["kubectl"]

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> Cluster:
        """Start every component and wait until the API is usable; stop all on failure."""
        self.tools.check(autoscalers=self.autoscalers)
        begin = time.monotonic()
        deadline = begin + timeout
        try:
            self._prepare_dirs()
            pki.generate(self.pki_dir)
            self._write_kubeconfigs()
            self._spawn("etcd", components.etcd_args(self.ports, self.etcd_data))
            self._wait("etcd", deadline, lambda: _get(f"http://127.0.0.1:{self.ports.etcd_client}/health"))
            self._spawn("kube-apiserver", components.apiserver_args(self.ports, self.pki_dir))
            self._wait("kube-apiserver", deadline, lambda: self.api("GET", "/readyz"))
            self._spawn(
                "kube-controller-manager", components.controller_manager_args(self.ports, self.pki_dir)
            )
            self._spawn("kube-scheduler", components.scheduler_args(self.ports, self.pki_dir))
            stages = self.state_dir / "kwok-stages.yaml"
            stages.write_text(components.kwok_stages(self.tools.kwok_stages.read_text()))
            self._spawn("kwok", components.kwok_args(self.pki_dir, stages))
            self._wait_usable(deadline)
            if self.autoscalers:
                self._start_autoscalers(deadline + 60)
        except BaseException:
            self.stop()
            raise
        self.log(f"control plane ready in {time.monotonic() - begin:.1f}s at {self.server}")
        return self

    def stop(self) -> None:
        """End every component (reverse start order) and delete etcd's data; keeps logs."""
        pids = self._read_pids()
        for name in reversed(COMPONENTS + AUTOSCALER_COMPONENTS):
            pid = pids.get(name)
            if pid and runs_binary(pid, name):
                kill_group(pid)
            proc = self._procs.pop(name, None)
            if proc is not None:
                proc.wait(timeout=15)
            (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        if self.etcd_data and self.etcd_data.exists():
            shutil.rmtree(self.etcd_data, ignore_errors=True)
        (self.state_dir / "state.json").unlink(missing_ok=True)

    def running(self) -> dict[str, int]:
        """The components recorded in the state dir whose processes are still alive."""
        return {name: pid for name, pid in self._read_pids().items() if runs_binary(pid, name)}

    def status(self) -> dict[str, str]:
        """Each recorded component's liveness, plus the API's /readyz answer."""
        report = {}
        for name, pid in self._read_pids().items():
            report[name] = f"running (pid {pid})" if runs_binary(pid, name) else f"dead (pid {pid})"
        try:
            report["api"] = f"{self.api('GET', '/readyz').get('raw', 'ok')} at {self.server}"
        except (OSError, HarnessError, ssl.SSLError) as exc:
            report["api"] = f"unreachable at {self.server}: {exc}"
        return report

    # -- clients ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (operator, worker) that should use this cluster."""
        path = os.pathsep.join(
            [str(self.bin_dir), str(self.tools.bin_dirs["helm"]), os.environ.get("PATH", "")]
        )
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run our kubectl against this cluster; CalledProcessError carries its stderr."""
        return self._run("kubectl", args, input=input, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run our helm against this cluster; CalledProcessError carries its stderr."""
        return self._run("helm", args, check=check, timeout=timeout)

    def _run(
        self, tool: str, args: tuple[str, ...], *, input: str | None = None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess:
        argv = [str(self.tools.path(tool)), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """A raw API request as the admin user (standard library only)."""
        request = urllib.request.Request(
            self.server + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._admin_ssl(), timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload.strip().startswith(b"{") else {"raw": payload.decode()}

    def create_node(self, manifest: dict) -> dict:
        """Create a (kwok-managed) Node; see ``components.kwok_node()``."""
        return self.api("POST", "/api/v1/nodes", manifest)

    # -- start-up steps ---------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        running = self.running()
        if running:
            raise AlreadyRunningError(
                f"a control plane from {self.state_dir} is still running ({running}); "
                "stop it first with `make cluster-down` (harness.py down)"
            )
        shutil.rmtree(self.pki_dir, ignore_errors=True)
        for sub in (self.pki_dir, self.log_dir, self.pid_dir):
            sub.mkdir(parents=True, exist_ok=True)
        for old in [*self.log_dir.glob("*.log"), *self.pid_dir.glob("*.pid")]:
            old.unlink()
        self.etcd_data = Path(tempfile.mkdtemp(prefix="genjob-etcd-"))
        self._save_state()

    def _write_kubeconfigs(self) -> None:
        admin = components.kubeconfig_dict(self.server, self.pki_dir, "admin")
        self.kubeconfig.write_text(yaml.safe_dump(admin))
        self.kubeconfig.chmod(0o600)
        for client in ("controller-manager", "scheduler", "kwok"):
            config = components.kubeconfig_dict(self.server, self.pki_dir, client)
            (self.pki_dir / f"{client}.kubeconfig").write_text(yaml.safe_dump(config))

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        binary = self.tools.path(name)
        with open(self.log_dir / f"{name}.log", "ab") as log_file:
            proc = subprocess.Popen(
                [str(binary), *args],
                env={**os.environ, **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.state_dir,
                start_new_session=True,  # own process group: stop() signals the whole group
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        self._procs[name] = proc
        (self.pid_dir / f"{name}.pid").write_text(str(proc.pid))
        self._save_state()
        self.log(f"started {name} (pid {proc.pid}), log: {self.log_dir / f'{name}.log'}")

    def _wait_usable(self, deadline: float) -> None:
        """Usable = a Ready kwok node, the default ServiceAccount, a healthy scheduler."""
        self.create_node(components.kwok_node(DEFAULT_NODE))
        self._wait("kwok (node Ready)", deadline, lambda: self._node_ready(DEFAULT_NODE))
        self._wait(
            "kube-controller-manager (default ServiceAccount)",
            deadline,
            lambda: self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default"),
        )
        scheduler = f"https://127.0.0.1:{self.ports.scheduler}/healthz"
        self._wait("kube-scheduler (/healthz)", deadline, lambda: _get(scheduler, _unverified()))

    def _start_autoscalers(self, deadline: float) -> None:
        """CRDs, KEDA (operator, adapter, APIService), Karpenter's kwok provider, the NodePools."""
        ports = self.autoscaler_ports
        assert ports is not None
        crd_dirs = (self.tools.keda_crds, self.tools.karpenter_crds, self.tools.karpenter_kwok_crds)
        for crds in crd_dirs:
            self.kubectl("apply", "--server-side", "-f", str(crds), timeout=120)
        for crds in crd_dirs:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds), timeout=90)
        cert_dir = pki.generate_keda(self.state_dir / "keda-certs", autoscalers.keda_cert_names())
        objects = autoscalers.external_metrics_objects(
            ports.adapter_secure, (cert_dir / "ca.crt").read_bytes()
        )
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
        keda_env = autoscalers.keda_env(self.kubeconfig)
        self._spawn("keda-operator", autoscalers.keda_operator_args(ports, cert_dir), keda_env)
        self._spawn("keda-adapter", autoscalers.keda_adapter_args(ports, cert_dir, self.kubeconfig), keda_env)
        instance_types = autoscalers.write_kwok_instance_types(self.state_dir / "kwok-instance-types.json")
        env = autoscalers.karpenter_env(ports, self.kubeconfig, instance_types, self.karpenter_timings)
        self._spawn("karpenter-kwok", [], env)
        self._wait(
            "karpenter-kwok (/readyz)",
            deadline,
            lambda: _get(f"http://127.0.0.1:{ports.karpenter_probe}/readyz"),
        )
        self._wait(
            "keda-operator (/readyz)", deadline, lambda: _get(f"http://127.0.0.1:{ports.keda_probe}/readyz")
        )
        self._wait("external metrics APIService Available", deadline, self._external_metrics_available)
        self.install_nodepools()

    def install_nodepools(self) -> None:
        """The shipped NodePools (karpenter/), pointed at the kwok provider's node class."""
        objects = [autoscalers.kwok_nodeclass()]
        objects += [autoscalers.kwok_nodepool(np) for np in autoscalers.shipped_nodepools()]
        self.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(objects))

    def _external_metrics_available(self) -> bool:
        service = self.api(
            "GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io"
        )
        conditions = service.get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    def _wait(self, what: str, deadline: float, probe: Callable[[], object]) -> None:
        """Call ``probe`` until it neither raises nor returns False; fail fast if a component died."""
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if probe() is not False:
                    return
            except (OSError, ValueError, ssl.SSLError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.25)
        raise StartTimeoutError(
            f"timed out waiting for {what} (last error: {last}).\n"
            f"Logs are in {self.log_dir}; last lines of each:\n{self._log_tails()}"
        )

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                log = self.log_dir / f"{name}.log"
                raise ComponentFailedError(
                    f"{name} exited with code {proc.returncode} during start-up; "
                    f"last lines of {log}:\n{tail(log)}"
                )

    def _log_tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{tail(log, 8)}" for log in sorted(self.log_dir.glob("*.log")))

    def _node_ready(self, name: str) -> bool:
        conditions = self.api("GET", f"/api/v1/nodes/{name}").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _admin_ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
            ctx.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
            self._ssl = ctx
        return self._ssl

    # -- state files --------------------------------------------------------------------

    def _read_pids(self) -> dict[str, int]:
        pids = {}
        for name in COMPONENTS + AUTOSCALER_COMPONENTS:
            pid_file = self.pid_dir / f"{name}.pid"
            if pid_file.exists() and pid_file.read_text().strip().isdigit():
                pids[name] = int(pid_file.read_text())
        return pids

    def _save_state(self) -> None:
        state = State(
            ports=asdict(self.ports),
            etcd_data=str(self.etcd_data),
            pids={name: proc.pid for name, proc in self._procs.items()},
            binaries={name: str(d / name) for name, d in self.tools.bin_dirs.items()},
        )
        (self.state_dir / "state.json").write_text(json.dumps(asdict(state), indent=2))
