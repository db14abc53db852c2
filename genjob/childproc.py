"""Child processes that do not outlive their parent.

`tied_to_parent(cmd)` prefixes a command with util-linux `setpriv --pdeathsig TERM`: the
kernel sends the child SIGTERM when the thread that started it dies, even by kill -9, so a
killed `genjob up` (or test run) leaves no gateway, worker or redis-server behind; SIGTERM
is their graceful stop (workers drain, Redis writes its AOF). Start such children from the
main thread. Where setpriv is missing (not Linux), the command is returned unchanged and a
killed parent leaves its children running.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache


@cache
def _setpriv() -> str | None:
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


def tied_to_parent(cmd: list[str]) -> list[str]:
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else list(cmd)


def stop_gracefully(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds (a Redis primary, for one,
    waits up to its shutdown-timeout of 10 s for lagging replicas before it exits)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
