"""Loopback ports and process groups: the operating-system side of the harness."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PortInUseError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_free(port: int, what: str) -> None:
    """Raise PortInUseError if ``port`` on 127.0.0.1 cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} for {what} is already in use on 127.0.0.1 ({exc.strerror}).\n"
                f"Is a cluster already up? Try `make cluster-down`; else find the owner with "
                f"`ss -ltnp 'sport = :{port}'` or choose other ports (harness.py up --help)."
            ) from None


@dataclass
class Ports:
    """The loopback ports of one control plane."""

    api: int
    etcd_client: int
    etcd_peer: int
    controller_manager: int
    scheduler: int

    @classmethod
    def dynamic(cls) -> Ports:
        """Free ports picked by the kernel, so parallel clusters never collide."""
        return cls(*(free_port() for _ in range(5)))

    @classmethod
    def fixed(cls, api: int = 16443, etcd_client: int = 12379) -> Ports:
        """Well-known ports for people (make cluster-up); checked up front."""
        ports = cls(api, etcd_client, etcd_client + 1, free_port(), free_port())
        ensure_free(ports.api, "kube-apiserver")
        ensure_free(ports.etcd_client, "etcd (client)")
        ensure_free(ports.etcd_peer, "etcd (peer)")
        return ports


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1]
    except OSError:
        return False
    return not state.startswith("Z")


def runs_binary(pid: int, name: str) -> bool:
    """True if ``pid`` is alive and its command is our ``name`` binary (not a reused pid)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return alive(pid) and Path(argv0).name == name


def die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the parent dies (Linux PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1 == PR_SET_PDEATHSIG


def kill_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if still alive after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
