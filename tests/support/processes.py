"""One helper for the `genjob` child processes tests and benchmarks start.

`GenjobProcess` runs `python -m genjob.cli <args>` with its output in a log file, waits for an
HTTP readiness URL while failing fast (with the log's tail) when the process exits, and stops
it with SIGTERM then SIGKILL. `wait_all_http` waits for several at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path

import httpx


class GenjobProcess:
    """One `genjob <args>` child process. `new_session`: its own process group, so a kill ends
    only it (the operator's tests kill one replica of several)."""

    def __init__(
        self, args: Collection[str], env: Mapping[str, str], log_path: Path, *, new_session: bool = False
    ) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.new_session = new_session
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> GenjobProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "genjob.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(self, url: str, timeout: float = 120.0) -> None:
        """Until `url` answers 200; RuntimeError (with the log's tail) if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"genjob {' '.join(self.args[:1])} exited with {self.process.returncode} "
                    f"before {url} was ready:\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{url} not ready within {timeout}s:\n{self.log_tail()}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup (a crash)."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace` seconds (no-op once exited)."""
        if not self.running():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def stop_all(processes: Collection[GenjobProcess], grace: float = 30.0) -> None:
    """SIGTERM to all first (they drain in parallel), then wait for each."""
    for process in processes:
        if process.running():
            assert process.process is not None
            process.process.terminate()
    for process in processes:
        process.stop(grace)
