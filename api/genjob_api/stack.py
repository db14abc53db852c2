"""The local stack behind `genjob up` and `genjob demo`: Redis, the tiny model, the gateway and
N workers as child processes of one supervisor, with readable logs and a clean shutdown.

Redis: the configured URL is used when it answers; otherwise a private redis-server is
started on a free port with AOF under `.genjob/redis`. The tiny model is built with
`genjob model make-tiny` when the default model's folder is missing. A development API
key (tenant `local`, admin) is written once to `.genjob/api-keys.json` (hashed) and
`.genjob/dev-api-key` (the key itself, mode 0600, read by `genjob generate`).
Children get their configuration through GENJOB_* environment variables and run in
their own process group; stopping sends SIGTERM (gateway first, then workers, so a
worker can finish or requeue its job), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import redis

from genjob.childproc import tied_to_parent
from genjob.localredis import RedisServer, free_port
from genjob.settings import GenjobSettings
from genjob_api.auth import entry_json, new_key, new_webhook_secret

STATE_DIR = Path(".genjob")
Log = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[genjob] {message}", flush=True)


def redis_answers(url: str, password: str | None) -> bool:
    try:
        return bool(redis.Redis.from_url(url, password=password, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_dev_key(state_dir: Path, tier: str) -> tuple[Path, str]:
    """The keys file and the development key, created on first use."""
    keys_file, key_file = state_dir / "api-keys.json", state_dir / "dev-api-key"
    if keys_file.is_file() and key_file.is_file():
        return keys_file, key_file.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    entry = json.loads(entry_json(key, "local", tier, admin=True, key_id="local-dev"))
    entry["webhook_secret"] = new_webhook_secret()
    keys_file.write_text(json.dumps({"keys": [entry]}, indent=2) + "\n")
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return keys_file, key


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None


@dataclass
class LocalStack:
    settings: GenjobSettings
    workers: int = 1
    port: int = 8000
    tier: str = "pro"
    state_dir: Path = STATE_DIR
    stream_logs: bool = True
    redis_server: RedisServer | None = None
    children: list[Child] = field(default_factory=list)
    api_key: str = ""
    redis_url: str = ""
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self, keys_file: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "GENJOB_REDIS__URL": self.redis_url,
                "GENJOB_API__MODE": "local",
                "GENJOB_API__API_KEYS_FILE": str(keys_file.resolve()),
                "GENJOB_WORKER__TIERS": json.dumps(self.settings.ordered_tier_names()),
                "GENJOB_RESULTS__PATH": str(Path(self.settings.results.path).resolve()),
                "GENJOB_LOG_FORMAT": "console",
                "PYTHONUNBUFFERED": "1",
            }
        )
        # A development stack on loopback: webhooks to a receiver on this machine are the norm.
        env.setdefault("GENJOB_API__WEBHOOK_ALLOW_PRIVATE", "true")
        if self.redis_server is not None:
            env.pop("GENJOB_REDIS__PASSWORD", None)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        cmd = tied_to_parent([sys.executable, "-m", "genjob.cli", *args])  # no orphans if `up` is killed
        if self.stream_logs:
            process = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            child = Child(name, process)
            threading.Thread(target=_pump, args=(name, process.stdout), daemon=True).start()
        else:
            log_dir = self.state_dir / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{name}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def start(self, log: Log = _say) -> LocalStack:
        s = self.settings
        password = s.redis.password.get_secret_value() if s.redis.password else None
        if redis_answers(s.redis.url, password):
            self.redis_url = s.redis.url
            log(f"using Redis at {s.redis.url}")
        else:
            # Absolute: redis-server chdirs into --dir before opening a relative --logfile.
            self.redis_server = RedisServer(
                (self.state_dir / "redis").resolve(), appendonly=True, new_session=True
            ).start()
            self.redis_url = self.redis_server.url
            log(f"started redis-server on {self.redis_url} (data in {self.state_dir / 'redis'})")
        keys_file, self.api_key = ensure_dev_key(self.state_dir, self.tier)
        env = self._env(keys_file)
        self.ensure_model(env, log)
        self._spawn("api", ["api", "--host", "127.0.0.1", "--port", str(self.port)], env)
        for i in range(self.workers):
            worker_env = dict(env, GENJOB_WORKER__NAME=f"local-worker-{i + 1}")
            worker_env["GENJOB_WORKER__HTTP_PORT"] = str(free_port())
            self._spawn(f"worker-{i + 1}", ["worker"], worker_env)
        self.wait_ready(log)
        return self

    def ensure_model(self, env: dict[str, str], log: Log) -> None:
        model = self.settings.models[self.settings.default_model]
        folder = Path(model.source)
        if model.memory_class != "tiny" or (folder / "model_index.json").is_file():
            return
        log(f"building the tiny model in {folder} (once)")
        done = subprocess.run(
            [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(folder)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"`genjob model make-tiny {folder}` failed:\n{done.stdout}{done.stderr}")

    def wait_ready(self, log: Log, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children:
                if child.process.poll() is not None:
                    raise RuntimeError(
                        f"{child.name} exited with {child.process.returncode}{self.tail(child)}"
                    )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    log(f"gateway ready at {self.url} (docs: {self.url}/docs), {self.workers} worker(s)")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready at {self.url} within {timeout:.0f}s")

    def watch(self, on_exit: Callable[[Child], None], interval: float = 0.5) -> None:
        """Call `on_exit` (from a daemon thread) once, for the first child that exits before
        `stop()`; `genjob demo` uses it so a dead worker fails the demo instead of hanging it."""

        def run() -> None:
            while not self._stopping.wait(interval):
                for child in list(self.children):
                    if child.process.poll() is not None and not self._stopping.is_set():
                        on_exit(child)
                        return

        threading.Thread(target=run, name="stack-watch", daemon=True).start()

    def tail(self, child: Child) -> str:
        if child.log_path and child.log_path.is_file():
            return f"; last log lines ({child.log_path}):\n" + "\n".join(
                child.log_path.read_text(errors="replace").splitlines()[-20:]
            )
        return ""

    def stop(self, grace_seconds: float = 20.0, log: Log = _say) -> None:
        self._stopping.set()
        for group in (
            [c for c in self.children if c.name == "api"],
            [c for c in self.children if c.name != "api"],
        ):
            for child in group:
                if child.process.poll() is None:
                    os.killpg(child.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            for child in group:
                try:
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log(f"{child.name} did not stop in {grace_seconds:.0f}s; killing it")
                    os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait()
        self.children.clear()
        if self.redis_server is not None:
            self.redis_server.stop()
            self.redis_server = None
        log("stopped")


def _pump(name: str, stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    width = 9
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:<{width}}| {raw.decode(errors='replace')}")
        sys.stdout.flush()
