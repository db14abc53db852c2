"""The pod runner: plays the kubelet for genjob's pods on the test cluster's kwok nodes.

kwok only pretends to run pods. Pods annotated ``podrunner.genjob.io/run`` (kwok's pod stages
skip them, see components.kwok_stages) get a real process instead, started the way a kubelet
would start their one container:

- when the pod is bound to a node kwok manages: a process in its own mount namespace
  (``unshare``) where every volumeMount is bind-mounted at its mountPath (configMap, secret,
  emptyDir, persistentVolumeClaim as a host directory per claim, the projected service-account
  token from a TokenRequest bound to the pod, downward API), with the container's env
  (values, fieldRef, secretKeyRef, configMapKeyRef, KUBERNETES_SERVICE_HOST/PORT), under the
  pod's runAsUser when its command and interpreter are runnable by that user (else as root),
  and SIGKILL if the runner dies;
- status: phase Running, a running container, Ready only once the readinessProbe (httpGet)
  answers 200 (probed every ``probe_period`` seconds);
- pod deleted (deletionTimestamp): SIGTERM, SIGKILL after terminationGracePeriodSeconds, then
  the pod object is removed (grace 0), as a kubelet does once its containers are gone;
- node gone without a drain (a Spot reclaim with no notice): SIGKILL at once;
- process exited on its own: the container restarts (restartPolicy Always) after a back-off.

Container ports cannot be shared on one host: a declared port for which ``port_env`` names the
env var that tells the process its port (genjob's settings) gets a free host port; any other
port is used as declared (one such pod per host: the gateway's 8000).
Images map to host commands through ``commands`` (image repository substring -> argv prefix).
``model_load_delay`` adds that many seconds to every diffusers ``from_pretrained`` call of the
pod's process (a sitecustomize hook), emulating a GPU worker loading multi-GB weights.

This is test infrastructure, never part of the product. Used by tests/autoscaling and the local
cluster demo: ``PodRunner(api_client, state_dir, ...).start()`` ... ``.stop()``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .components import KWOK_ANNOTATION, POD_RUNNER_ANNOTATION
from .processes import free_port

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SITECUSTOMIZE = '''"""Pod runner hook: delays diffusers' from_pretrained (emulated GPU weight loading)."""
import os, time
_delay = float(os.environ.get("PODRUNNER_MODEL_LOAD_DELAY", "0") or 0)
if _delay > 0:
    import diffusers
    _original = diffusers.DiffusionPipeline.from_pretrained.__func__

    def _slow_from_pretrained(cls, *args, **kwargs):
        time.sleep(_delay)
        return _original(cls, *args, **kwargs)

    diffusers.DiffusionPipeline.from_pretrained = classmethod(_slow_from_pretrained)
'''


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _runnable_by_anyone(command: Path) -> bool:
    """True if any user can run ``command``: it, its interpreter (``#!`` line) and every
    directory above them are world-readable/executable (a pyenv Python under /root is not)."""
    paths = [command.resolve()]
    with open(paths[0], "rb") as head:
        first = head.readline(256)
    if first.startswith(b"#!"):
        paths.append(Path(first[2:].split()[0].decode()).resolve())
    return all(part.stat().st_mode & stat.S_IXOTH for path in paths for part in [path, *path.parents])


@dataclass
class RunnerConfig:
    """How the runner maps containers onto this host."""

    commands: Mapping[str, list[str]]
    pvc_dirs: Mapping[str, Path] = field(default_factory=dict)
    port_env: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    api_host: str = "127.0.0.1"
    api_port: int = 443
    probe_period: float = 1.0
    model_load_delay: float = 0.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Host directories the processes need (the project and its venv). They stay visible even when a
    # volume is mounted at a parent of theirs (an emptyDir at /tmp over a checkout in /tmp/...).
    host_paths: tuple[Path, ...] = ()


def genjob_runner_config(api_port: int, pvc_dirs: Mapping[str, Path], genjob: str) -> RunnerConfig:
    """How genjob's images run here: ``genjob`` from this venv; workers and operators get free
    ports through their settings (one gateway per host keeps its 8000)."""
    venv = Path(genjob).resolve().parent.parent
    return RunnerConfig(
        host_paths=(Path(__file__).resolve().parents[2], venv),
        commands={"genjob-worker": [genjob], "genjob-api": [genjob]},
        pvc_dirs=pvc_dirs,
        port_env={
            "worker": {8081: "GENJOB_WORKER__HTTP_PORT"},
            "operator": {8080: "GENJOB_OPERATOR__HTTP_PORT"},
        },
        api_port=api_port,
    )


@dataclass
class RunningPod:
    """One pod's process and what the runner knows about it."""

    namespace: str
    name: str
    uid: str
    node: str
    proc: subprocess.Popen
    ports: dict[int, int]
    pod_dir: Path
    readiness: tuple[str, int] | None
    grace: int
    ready: bool = False
    last_probe: float = 0.0
    exit_recorded: bool = False
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)
    terminating_since: float | None = None
    killed: bool = False
    events: list[str] = field(default_factory=list)


class PodRunner:
    """Runs annotated pods as processes; ``start()`` spawns a polling thread, ``stop()`` ends all."""

    def __init__(
        self,
        core_api: Any,
        state_dir: Path,
        config: RunnerConfig,
        log: Callable[[str], None] = lambda m: None,
        interval: float = 0.25,
    ) -> None:
        self.core = core_api
        self.state_dir = Path(state_dir)
        self.config = config
        self.log = log
        self.interval = interval
        self.pods: dict[str, RunningPod] = {}
        self.history: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hook_dir = self.state_dir / "hook"
        self.hook_dir.mkdir(parents=True, exist_ok=True)
        (self.hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.hook_dir.chmod(0o755)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> PodRunner:
        self._thread = threading.Thread(target=self._loop, name="pod-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        with self._lock:
            for pod in self.pods.values():
                self._kill(pod, signal.SIGKILL)
            self.pods.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # the API may blip; a kubelet keeps going
                self.log(f"pod runner: sync failed: {exc!r}")
            self._stop.wait(self.interval)

    # -- one reconciliation pass ----------------------------------------------------------

    def sync_once(self) -> None:
        """Compare the pods and nodes the API has with the processes we run; act on the difference."""
        nodes = {n.metadata.name for n in self.core.list_node().items}
        pods = [
            p
            for p in self.core.list_pod_for_all_namespaces().items
            if (p.metadata.annotations or {}).get(POD_RUNNER_ANNOTATION)
        ]
        seen = set()
        with self._lock:
            for pod in pods:
                key = f"{pod.metadata.namespace}/{pod.metadata.name}"
                seen.add(key)
                running = self.pods.get(key)
                if running and running.uid != pod.metadata.uid:
                    self._kill(running, signal.SIGKILL)
                    self.pods.pop(key)
                    running = None
                if running is None:
                    if pod.metadata.deletion_timestamp is not None:
                        self._finalize(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
                    elif pod.spec.node_name and pod.spec.node_name in nodes and self._kwok_node(pod):
                        self._launch(pod)
                    continue
                self._tend(running, pod, nodes)
            for key in [k for k in self.pods if k not in seen]:
                # The pod object is gone (force-deleted, or garbage-collected with its node).
                self._kill(self.pods.pop(key), signal.SIGKILL)

    def _kwok_node(self, pod: Any) -> bool:
        node = self.core.read_node(pod.spec.node_name)
        return (node.metadata.annotations or {}).get(KWOK_ANNOTATION) == "fake"

    def _tend(self, running: RunningPod, pod: Any, nodes: set[str]) -> None:
        if running.node not in nodes:
            if not running.killed:
                self._record(running, "node-gone-sigkill")
                self._kill(running, signal.SIGKILL)
            return
        if pod.metadata.deletion_timestamp is not None:
            if running.terminating_since is None:
                running.terminating_since = time.monotonic()
                grace = pod.metadata.deletion_grace_period_seconds
                running.grace = running.grace if grace is None else int(grace)
                # What a disruption test needs to know: was this pod marked busy when it was told to stop?
                self._record(running, "sigterm", annotations=dict(pod.metadata.annotations or {}))
                self._signal(running, signal.SIGTERM)
            if running.proc.poll() is None and time.monotonic() - running.terminating_since > running.grace:
                self._record(running, "grace-expired-sigkill")
                self._kill(running, signal.SIGKILL)
            if running.proc.poll() is not None:
                self._record(running, f"exited-{running.proc.returncode}")
                self.pods.pop(f"{running.namespace}/{running.name}")
                self._finalize(running.namespace, running.name, running.uid)
            return
        if running.proc.poll() is not None:
            if not running.exit_recorded:
                running.exit_recorded = True
                self._record(running, f"crashed-{running.proc.returncode}")
            self._restart(running, pod)
            return
        ready = self._probe(running)
        if ready != running.ready:
            running.ready = ready
            self._record(running, "ready" if ready else "unready")
            self._patch_status(pod, running)

    # -- processes ------------------------------------------------------------------------

    def _launch(self, pod: Any) -> None:
        container = pod.spec.containers[0]
        pod_dir = self.state_dir / "pods" / f"{pod.metadata.namespace}_{pod.metadata.name}"
        if pod_dir.exists():
            shutil.rmtree(pod_dir, ignore_errors=True)
        pod_dir.mkdir(parents=True)
        # A port the process can be told about (port_env) gets a free host port; others stay as declared.
        remap = self.config.port_env.get(container.name, {})
        ports = {
            p.container_port: free_port() if p.container_port in remap else p.container_port
            for p in container.ports or []
        }
        mounts = self._prepare_volumes(pod, container, pod_dir)
        env = self._container_env(pod, container, ports)
        argv = self._argv(container)
        readiness = None
        probe = container.readiness_probe
        if probe and probe.http_get:
            port = probe.http_get.port
            if isinstance(port, str):
                port = next(p.container_port for p in container.ports if p.name == port)
            readiness = (probe.http_get.path or "/", ports.get(int(port), int(port)))
        proc = self._spawn(pod, argv, env, mounts, pod_dir)
        running = RunningPod(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            node=pod.spec.node_name,
            proc=proc,
            ports=ports,
            pod_dir=pod_dir,
            readiness=readiness,
            grace=int(pod.spec.termination_grace_period_seconds or 30),
            ready=readiness is None,
        )
        self.pods[f"{running.namespace}/{running.name}"] = running
        self._record(running, "started")
        self._patch_status(pod, running)
        self.log(f"pod runner: started {running.namespace}/{running.name} on {running.node} (pid {proc.pid})")

    def _restart(self, running: RunningPod, pod: Any) -> None:
        backoff = min(10.0, 0.5 * 2**running.restarts)
        if time.monotonic() - running.started_at < backoff:
            return
        container = pod.spec.containers[0]
        mounts = self._prepare_volumes(pod, container, running.pod_dir)
        env = self._container_env(pod, container, running.ports)
        running.proc = self._spawn(pod, self._argv(container), env, mounts, running.pod_dir)
        running.restarts += 1
        running.exit_recorded = False
        running.started_at = time.monotonic()
        running.ready = running.readiness is None
        self._record(running, "restarted")
        self._patch_status(pod, running)

    def _argv(self, container: Any) -> list[str]:
        for needle, prefix in self.config.commands.items():
            if needle in container.image:
                return [*prefix, *(container.command or []), *(container.args or [])]
        known = list(self.config.commands)
        raise RuntimeError(f"pod runner: no host command for image {container.image!r} (known: {known})")

    def _spawn(
        self,
        pod: Any,
        argv: list[str],
        env: dict[str, str],
        mounts: list[tuple[Path, str, bool]],
        pod_dir: Path,
    ) -> subprocess.Popen:
        """unshare a mount namespace, bind the volumes, drop to the pod's user, exec the command."""
        lines = ["set -e"]
        covered = [
            path
            for path in (Path(p).resolve() for p in self.config.host_paths)
            if any(str(path).startswith(target.rstrip("/") + "/") for _, target, _ in mounts)
        ]
        stage = Path("/run/podrunner") / pod.metadata.uid
        for i, path in enumerate(covered):  # put aside before a volume hides them ...
            lines.append(f"mkdir -p {stage}/{i} && mount --bind {shlex.quote(str(path))} {stage}/{i}")
        lines += mount_commands(mounts)
        for i, path in enumerate(covered):  # ... and back in place on top of it
            lines.append(
                f"mkdir -p {shlex.quote(str(path))} && mount --bind {stage}/{i} {shlex.quote(str(path))}"
            )
        security = pod.spec.security_context
        user = getattr(security, "run_as_user", None) if security else None
        group = getattr(security, "run_as_group", None) if security else None
        fs_group = getattr(security, "fs_group", None) if security else None
        drop = []
        if user is not None and _runnable_by_anyone(Path(argv[0])):
            groups = ",".join(str(g) for g in {group or user, fs_group} if g is not None)
            drop = ["setpriv", f"--reuid={user}", f"--regid={group or user}", f"--groups={groups}"]
        drop += ["setpriv", "--pdeathsig=KILL", "--"]
        lines.append("exec " + shlex.join([*drop, *argv]))
        script = pod_dir / "start.sh"
        script.write_text("\n".join(lines) + "\n")
        log = open(pod_dir / "container.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", str(script)],
                env=env,
                cwd="/",
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_runner,
            )
        finally:
            log.close()

    def _signal(self, running: RunningPod, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.proc.pid, sig)

    def _kill(self, running: RunningPod, sig: signal.Signals) -> None:
        running.killed = True
        self._signal(running, sig)
        try:
            running.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal(running, signal.SIGKILL)

    def _probe(self, running: RunningPod) -> bool:
        if running.readiness is None:
            return True
        if time.monotonic() - running.last_probe < self.config.probe_period:
            return running.ready
        running.last_probe = time.monotonic()
        path, port = running.readiness
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False

    # -- volumes and env --------------------------------------------------------------------

    def _prepare_volumes(self, pod: Any, container: Any, pod_dir: Path) -> list[tuple[Path, str, bool]]:
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts = [(self.hook_dir, "/podrunner", True)]
        for mount in container.volume_mounts or []:
            volume = volumes[mount.name]
            source = self._volume_dir(pod, volume, pod_dir)
            if mount.sub_path:
                source = source / mount.sub_path
            mounts.append((source, mount.mount_path, bool(mount.read_only)))
        return mounts

    def _volume_dir(self, pod: Any, volume: Any, pod_dir: Path) -> Path:
        ns = pod.metadata.namespace
        if volume.persistent_volume_claim:
            claim = volume.persistent_volume_claim.claim_name
            if claim not in self.config.pvc_dirs:
                raise RuntimeError(f"pod runner: no host directory for PVC {claim!r} (pvc_dirs)")
            path = Path(self.config.pvc_dirs[claim])
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = pod_dir / "volumes" / volume.name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # a kubelet's emptyDir is world-writable; the others are read-only mounts
        if volume.config_map:
            data = self.core.read_namespaced_config_map(volume.config_map.name, ns).data or {}
            self._write_files(path, data)
        elif volume.secret:
            data = self.core.read_namespaced_secret(volume.secret.secret_name, ns).data or {}
            self._write_files(path, {k: base64.b64decode(v) for k, v in data.items()})
        elif volume.projected:
            self._write_files(path, self._projected(pod, volume.projected))
        return path

    def _projected(self, pod: Any, projected: Any) -> dict[str, str | bytes]:
        files: dict[str, str | bytes] = {}
        ns = pod.metadata.namespace
        for source in projected.sources:
            if source.service_account_token:
                files[source.service_account_token.path] = self._bound_token(
                    pod, source.service_account_token
                )
            elif source.config_map:
                data = self.core.read_namespaced_config_map(source.config_map.name, ns).data or {}
                for item in source.config_map.items or [{"key": k, "path": k} for k in data]:
                    key, path = (
                        (item["key"], item["path"]) if isinstance(item, dict) else (item.key, item.path)
                    )
                    files[path] = data[key]
            elif source.downward_api:
                for item in source.downward_api.items:
                    files[item.path] = self._field(pod, item.field_ref.field_path)
        return files

    def _bound_token(self, pod: Any, token_source: Any) -> str:
        from kubernetes import client

        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[token_source.audience] if token_source.audience else [],
                expiration_seconds=token_source.expiration_seconds or 3600,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        response = self.core.create_namespaced_service_account_token(
            pod.spec.service_account_name or "default", pod.metadata.namespace, request
        )
        return response.status.token

    @staticmethod
    def _write_files(directory: Path, files: Mapping[str, str | bytes]) -> None:
        for name, content in files.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
            target.chmod(0o644)

    def _field(self, pod: Any, path: str) -> str:
        values = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": pod.metadata.namespace,
            "metadata.uid": pod.metadata.uid,
            "spec.nodeName": pod.spec.node_name,
            "spec.serviceAccountName": pod.spec.service_account_name,
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        if path not in values:
            raise RuntimeError(f"pod runner: fieldRef {path!r} is not supported")
        return values[path] or ""

    def _container_env(self, pod: Any, container: Any, ports: dict[int, int]) -> dict[str, str]:
        ns = pod.metadata.namespace
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": pod.metadata.name,
            "HOME": "/tmp",
            "KUBERNETES_SERVICE_HOST": self.config.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.config.api_port),
            "PYTHONPATH": "/podrunner",
            "PODRUNNER_MODEL_LOAD_DELAY": str(self.config.model_load_delay),
            **self.config.extra_env,
        }
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = var.value or ""
            elif var.value_from.field_ref:
                env[var.name] = self._field(pod, var.value_from.field_ref.field_path)
            elif var.value_from.secret_key_ref:
                ref = var.value_from.secret_key_ref
                data = self.core.read_namespaced_secret(ref.name, ns).data or {}
                env[var.name] = base64.b64decode(data[ref.key]).decode()
            elif var.value_from.config_map_key_ref:
                ref = var.value_from.config_map_key_ref
                env[var.name] = (self.core.read_namespaced_config_map(ref.name, ns).data or {})[ref.key]
        for container_port, env_name in self.config.port_env.get(container.name, {}).items():
            if container_port in ports:
                env[env_name] = str(ports[container_port])
        return env

    # -- the API side of a kubelet ----------------------------------------------------------

    def _patch_status(self, pod: Any, running: RunningPod) -> None:
        now = _now()
        ready = "True" if running.ready else "False"
        container = pod.spec.containers[0]
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": running.ready,
                    "started": True,
                    "restartCount": running.restarts,
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
        try:
            self.core.patch_namespaced_pod_status(
                pod.metadata.name, pod.metadata.namespace, {"status": status}
            )
        except Exception as exc:  # the pod may be gone already
            self.log(f"pod runner: status patch of {running.name} failed: {exc!r}")

    def _finalize(self, namespace: str, name: str, uid: str) -> None:
        """The containers are gone: remove the pod object (a kubelet's final delete, grace 0)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            # In the body: a DeleteOptions body overrides the query parameters.
            options = client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid})
            self.core.delete_namespaced_pod(name, namespace, body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _record(self, running: RunningPod, event: str, **extra: Any) -> None:
        entry = {
            "pod": f"{running.namespace}/{running.name}",
            "node": running.node,
            "event": event,
            "at": time.time(),
            **extra,
        }
        running.events.append(event)
        self.history.append(entry)
        self.log(f"pod runner: {entry['pod']}: {event}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of every pod's container log (for failure messages)."""
        out = []
        for log in sorted((self.state_dir / "pods").glob("*/container.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.parent.name}\n" + "\n".join(text))
        return "\n".join(out)


def mount_commands(mounts: list[tuple[Path, str, bool]]) -> list[str]:
    """Shell lines that bind every volume at its mountPath (in mount_order), then make the
    read-only ones read-only: a volume nested in a read-only one (the push TLS Secret inside the
    config ConfigMap) needs its mount point created first, which a kubelet does for configMap
    and secret volumes (kubernetes#60342)."""
    ordered = mount_order(mounts)
    lines = []
    for source, target, _ in ordered:
        lines.append(f"mkdir -p {shlex.quote(target)}")
        lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    lines += [f"mount -o remount,bind,ro {shlex.quote(t)}" for _, t, read_only in ordered if read_only]
    return lines


def mount_order(mounts: list[tuple[Path, str, bool]]) -> list[tuple[Path, str, bool]]:
    """Bind mounts in an order where none hides what a later one needs: parents before their
    children, and last the targets that cover a source directory (an emptyDir at /tmp would
    hide sources under the host's /tmp, such as pytest's temporary directories)."""
    sources = [str(source) for source, _, _ in mounts]

    def covers_a_source(target: str) -> bool:
        prefix = target.rstrip("/") + "/"
        return any(src == target or src.startswith(prefix) for src in sources)

    ordered = sorted(mounts, key=lambda m: (covers_a_source(m[1]), m[1].count("/")))
    for i, (_, late, _) in enumerate(ordered):
        for _, earlier, _ in ordered[:i]:
            if earlier.startswith(late.rstrip("/") + "/"):
                raise RuntimeError(f"pod runner: mount {late} would hide the earlier mount {earlier}")
    return ordered


def _die_with_runner() -> None:
    from .processes import die_with_parent

    die_with_parent()
