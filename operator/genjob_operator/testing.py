"""Helpers for the operator's cluster tests and benchmark (not used at run time)."""

from __future__ import annotations

from typing import Any


class OperatorProcess:
    """One `genjob operator` child process (its own session, so a kill ends only it)."""

    def __init__(self, env: dict[str, str], log_path: Any, args: list[str]) -> None:
        self.env, self.log_path, self.args = env, log_path, args
        self.process: Any = None

    def start(self) -> OperatorProcess:
        import subprocess
        import sys

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "genjob.cli", "operator", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release (a crash)."""
        import signal

        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            text: str = self.log_path.read_text(errors="replace")
            return text[-chars:]
        except OSError:
            return ""
