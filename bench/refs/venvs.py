"""Pinned virtual environments for the reference queue libraries of bench.queue and bench.gateway.

The references conflict with the project's own pins (arq needs redis<6, kombu 5.7 needs a
newer redis than arq allows), so each lives in its own venv under `.venv/bench-refs/<name>/`,
created on first use with progress output and reused while its pins are unchanged (a
`pins.txt` stamp records what was installed). Drivers run as subprocesses of these venvs.
bench.gateway's references (`<name>-gateway`) add the web stack at the versions the
project's own venv runs (FastAPI, pydantic, uvicorn, uvloop, httptools), so the gateways
compared differ only in what their endpoint does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venv" / "bench-refs"
DRIVERS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Reference:
    """A reference library: its venv name, pinned requirements and driver script."""

    name: str
    pins: tuple[str, ...]
    driver: str

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def script(self) -> Path:
        return DRIVERS / self.driver


REFERENCES = {
    "rq": Reference("rq", ("rq==3.0.0", "redis==8.1.0"), "ref_rq.py"),
    "arq": Reference("arq", ("arq==0.28.0", "redis[hiredis]==5.3.1", "hiredis==3.5.0"), "ref_arq.py"),
    "celery": Reference("celery", ("celery[redis]==5.7.0", "kombu==5.7.0", "redis==8.1.0"), "ref_celery.py"),
    "dramatiq": Reference("dramatiq", ("dramatiq[redis]==2.2.1", "redis==8.1.0"), "ref_dramatiq.py"),
}

# The web stack of bench.gateway's references: the versions this venv runs genjob's gateway on.
SERVER_PINS = tuple(
    f"{dist}=={version(dist)}"
    for dist in ("fastapi", "starlette", "pydantic", "pydantic-core", "uvicorn", "uvloop", "httptools")
)
GATEWAY_REFERENCES = {
    name: Reference(f"{name}-gateway", REFERENCES[name].pins + SERVER_PINS, "ref_gateway.py")
    for name in ("celery", "arq", "rq")
}


class VenvError(RuntimeError):
    """A reference venv could not be created or its pins installed."""


def _stamp(ref: Reference) -> str:
    return "\n".join(ref.pins) + "\n"


def ensure_venv(ref: Reference, say=print) -> Path:
    """The venv's python, creating the venv and installing the pins when missing or outdated."""
    stamp = ref.venv / "pins.txt"
    if ref.python.exists() and stamp.exists() and stamp.read_text() == _stamp(ref):
        return ref.python
    say(f"creating {ref.venv} with {' '.join(ref.pins)} (first run only)")
    if ref.venv.exists():
        shutil.rmtree(ref.venv)
    steps = [
        [sys.executable, "-m", "venv", str(ref.venv)],
        [str(ref.python), "-m", "pip", "install", "--quiet", "--no-input", *ref.pins],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(ref.venv, ignore_errors=True)
            raise VenvError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    stamp.write_text(_stamp(ref))
    say(f"  {ref.name} venv ready")
    return ref.python


if __name__ == "__main__":
    for reference in (*REFERENCES.values(), *GATEWAY_REFERENCES.values()):
        ensure_venv(reference)
