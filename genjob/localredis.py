"""Start and stop private redis-server processes (tests, benchmarks and `genjob up`).

A `RedisServer` listens on loopback only, on a free port unless one is given, keeps its data
in its own directory, and can run with AOF persistence and a password, like the Redis the
chart ships, or as a replica of another. A `SentinelServer` is `redis-server --sentinel`
watching a primary (the failover tests run a primary, replicas and three of them).
Each stops when the process that started it dies (`genjob.childproc`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis

from genjob.childproc import stop_gracefully, tied_to_parent


class RedisServerError(RuntimeError):
    """redis-server is missing or did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerError("redis-server is not installed; run `sudo apt-get install -y redis-server`")
    return binary


def _wait_answering(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, what: str, log: Path
) -> None:
    """Wait until `ready()` (a ping) is true; RedisServerError with the log's tail if the
    process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RedisServerError(f"{what} exited with {process.returncode}: {tail}")
        try:
            if ready():
                return
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        time.sleep(0.05)
    raise RedisServerError(f"{what} did not answer within {timeout}s")


@dataclass
class RedisServer:
    """A running redis-server child process."""

    data_dir: Path
    port: int = 0
    appendonly: bool = False
    password: str | None = None
    # Own session: a terminal's Ctrl-C (SIGINT to the foreground group) does not reach it, so a
    # supervisor (`genjob up`) can stop its other children before Redis.
    new_session: bool = False
    replica_of: int | None = None  # port of the loopback primary this one replicates
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis.from_url(self.url, password=self.password, decode_responses=True, **kwargs)

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start it and wait until it answers (a replica: until it has synced)."""
        binary = _redis_server_binary()
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        # A loopback primary has no reason to wait (default 5 s) for more replicas before a sync.
        args += ["--repl-diskless-sync-delay", "0"]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(
            tied_to_parent(args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.new_session,
        )
        try:
            _wait_answering(
                self.process,
                self._ready,
                timeout,
                f"redis-server on port {self.port}",
                self.data_dir / "redis.log",
            )
        except RedisServerError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        """It answers, and a replica has loaded its primary's data."""
        client = self.client(socket_timeout=1)
        if not client.ping():
            return False
        return not self.replica_of or client.info("replication").get("master_link_status") == "up"

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
                self.process.wait()
            else:
                stop_gracefully(self.process)
        self.process = None

    def restart(self, kill: bool = False) -> RedisServer:
        """Stop (or kill -9) and start again on the same port and data directory."""
        self.stop(kill=kill)
        return self.start()


@dataclass
class SentinelServer:
    """A running `redis-server --sentinel` that monitors one loopback primary as `master`."""

    data_dir: Path
    primary_port: int
    master: str = "genjob"
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def start(self, timeout: float = 10.0) -> SentinelServer:
        binary = _redis_server_binary()
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "sentinel.conf"  # sentinel rewrites its config: it must be writable
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
            f"logfile {self.data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {self.master} 127.0.0.1 {self.primary_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.master} 1\n"
        )
        self.process = subprocess.Popen(
            tied_to_parent([binary, str(config), "--sentinel"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_answering(
                self.process,
                lambda: bool(self.client().ping()),
                timeout,
                f"redis sentinel on port {self.port}",
                self.data_dir / "sentinel.log",
            )
        except RedisServerError:
            self.stop()
            raise
        return self

    def primary_port_now(self) -> int:
        """The port of the primary this sentinel names now."""
        address = cast("tuple[str, int]", self.client().sentinel_get_master_addr_by_name(self.master))
        return int(address[1])

    def stop(self) -> None:
        if self.process:
            stop_gracefully(self.process)
        self.process = None


@dataclass
class SentinelDeployment:
    """A primary with replicas and sentinels on loopback, as production runs Redis with
    automatic failover (the failover tests and benchmarks use it)."""

    data_dir: Path
    replicas: int = 2
    sentinels: int = 3
    appendonly: bool = True
    master: str = "genjob"
    servers: list[RedisServer] = field(default_factory=list, init=False)
    watchers: list[SentinelServer] = field(default_factory=list, init=False)

    @property
    def sentinel_addresses(self) -> list[str]:
        return [s.address for s in self.watchers]

    def start(self, timeout: float = 30.0) -> SentinelDeployment:
        primary = RedisServer(self.data_dir / "redis-0", appendonly=self.appendonly).start()
        self.servers.append(primary)
        for i in range(self.replicas):
            replica = RedisServer(
                self.data_dir / f"redis-{i + 1}", appendonly=self.appendonly, replica_of=primary.port
            )
            self.servers.append(replica.start())
        for i in range(self.sentinels):
            watcher = SentinelServer(self.data_dir / f"sentinel-{i}", primary.port, master=self.master)
            self.watchers.append(watcher.start())
        return self

    def wait_replicas_known(self, timeout: float = 30.0) -> None:
        """Sentinels learn of replicas from the primary's INFO (every 10 s): until then they
        cannot fail over."""
        self._wait(lambda: self._replicas_known() >= self.replicas, timeout, "sentinels to see the replicas")

    def _replicas_known(self) -> int:
        return min(len(w.client().sentinel_slaves(self.master)) for w in self.watchers)

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RedisServerError(f"timed out after {timeout}s waiting for {what}")

    def primary(self) -> RedisServer:
        port = self.watchers[0].primary_port_now()
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self, timeout: float = 30.0) -> tuple[RedisServer, float]:
        """kill -9 the primary and wait until every sentinel names a new one; returns the
        killed server and the seconds from the kill until then."""
        self.wait_replicas_known(timeout)
        old = self.primary()
        started = time.monotonic()
        old.stop(kill=True)
        self._wait(
            lambda: all(w.primary_port_now() != old.port for w in self.watchers), timeout, "a new primary"
        )
        return old, time.monotonic() - started

    def restart_as_replica(self, server: RedisServer) -> None:
        """Start a killed server again, as a replica of the current primary."""
        server.replica_of = self.primary().port
        server.start()

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        for server in self.servers:
            server.stop()
