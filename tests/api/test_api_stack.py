"""`genjob up`: the local stack starts its own Redis, builds the tiny model, serves generations,
and a terminal's Ctrl-C stops everything cleanly (gateway, then workers, then Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from genjob.localredis import free_port


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(
        f"{text!r} not in the log of `genjob up`:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False


def _fresh_env(redis_port: int) -> dict[str, str]:
    """No GENJOB_* settings but a Redis URL where nothing listens: `up` starts its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENJOB_")}
    env["GENJOB_REDIS__URL"] = f"redis://127.0.0.1:{redis_port}/0"
    return env


def _ignoring_sigint() -> None:
    """How a non-interactive shell starts a background job (`genjob up &` in a script, CI
    runners): SIGINT ignored, which Python keeps. genjob must still stop on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_up(folder: Path, port: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """`genjob up` in `folder`; its output goes to the returned log file."""
    log = folder / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "genjob.cli", "up", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a shell's foreground job
            preexec_fn=_ignoring_sigint,
        )
    return up, log


@pytest.mark.timeout(300)
def test_up_serves_generations_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """From an empty folder: Redis started, model built, key written; `genjob generate` gets a PNG;
    SIGINT to the foreground process group (what a terminal's Ctrl-C does) exits 0 with no
    errors from the children, and leaves nothing listening."""
    port, redis_port = free_port(), free_port()
    env = _fresh_env(redis_port)
    up, log = _start_up(tmp_path, port, env)
    try:
        _wait_for_line(log, "Ctrl-C stops everything", up, timeout=180)
        assert (tmp_path / ".genjob" / "models" / "tiny" / "model_index.json").is_file()
        key_file = tmp_path / ".genjob" / "dev-api-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.read_text().strip() not in (tmp_path / ".genjob" / "api-keys.json").read_text()
        small = ["--width", "64", "--height", "64", "--steps", "2"]
        done = subprocess.run(
            [sys.executable, "-m", "genjob.cli", "generate", "a fox", "-o", "fox.png", "-q", *small],
            cwd=tmp_path,
            env=dict(env, GENJOB_API_URL=f"http://127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "fox.png").read_bytes().startswith(b"\x89PNG")
        redis_url = log.read_text().split("started redis-server on ")[1].split()[0]
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    text = log.read_text(errors="replace")
    assert "[genjob] stopped" in text
    assert "Traceback" not in text and "ConnectionError" not in text, text[-3000:]
    assert _refused(f"http://127.0.0.1:{port}/healthz")
    redis_port_used = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert _refused(f"http://127.0.0.1:{redis_port_used}/")


@pytest.mark.timeout(300)
def test_demo_fails_fast_and_clearly_when_the_worker_dies(tmp_path: Path) -> None:
    """A worker that cannot load its model exits; `genjob demo` reports it with the worker's log
    instead of waiting forever for a job no one will run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENJOB_")}
    env["GENJOB_REDIS__URL"] = f"redis://127.0.0.1:{free_port()}/0"
    missing = tmp_path / "no-such-model"
    env["GENJOB_MODELS"] = f'{{"tiny": {{"source": "{missing}", "memory_class": "sd15"}}}}'
    done = subprocess.run(
        [sys.executable, "-m", "genjob.cli", "demo", "a fox", "-o", "fox.png", "--width", "64"],
        cwd=tmp_path,
        env=env,
        preexec_fn=_ignoring_sigint,  # the demo interrupts its own wait with SIGINT
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stderr
    assert "demo failed: worker-1 exited with" in done.stderr and str(missing) in done.stderr, done.stderr
    assert not (tmp_path / "fox.png").exists()


def _children(pid: int) -> set[int]:
    """Direct children of a process (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited; waiting for init to reap it


@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_a_killed_up_leaves_no_children_running(tmp_path: Path) -> None:
    """kill -9 of `genjob up` (no chance to stop anything itself): the kernel stops its gateway,
    worker and redis-server, so nothing is left holding the ports or the GPU."""
    port = free_port()
    up, log = _start_up(tmp_path, port, _fresh_env(free_port()))
    children: set[int] = set()
    try:
        _wait_for_line(log, "Ctrl-C stops everything", up, timeout=180)
        children = _children(up.pid)
        assert len(children) >= 3, children  # redis-server, gateway, worker
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        deadline = time.monotonic() + 60
        while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(pid) for pid in children), [p for p in children if not _gone(p)]
        assert _refused(f"http://127.0.0.1:{port}/healthz")
    finally:
        for pid in children:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
