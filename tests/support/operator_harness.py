"""The operator's cluster tests and benchmark start `genjob operator` replicas with this."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.processes import GenjobProcess


class OperatorProcess(GenjobProcess):
    """One `genjob operator` replica (its own session, so a kill ends only it)."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str]) -> None:
        super().__init__(["operator", *args], env, log_path, new_session=True)

    def start(self) -> OperatorProcess:
        super().start()
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release (a crash)."""
        if self.running():
            self.signal(signal.SIGKILL)
            self.wait(10)

    def stop(self, grace: float = 15.0) -> None:
        super().stop(grace)
