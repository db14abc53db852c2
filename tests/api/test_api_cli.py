"""The `genjob` client commands against the real gateway: generate, queues, dlq, apikey."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from genjob_api.auth import hash_key

Gateway = Any  # tests/api/conftest.py: Gateway


def _genjob(gateway: Gateway, who: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GENJOB_API_URL=gateway.url, GENJOB_API_KEY=gateway.keys[who])
    return subprocess.run(
        [sys.executable, "-m", "genjob.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_generate_saves_the_image_and_prints_its_path(worker_ready: Gateway, tmp_path: Path) -> None:
    """`genjob generate` submits through the gateway, shows progress and writes the PNG."""
    out = _genjob(
        worker_ready, "alice", "generate", "a red fox", "-o", "out/fox.png",
        "--width", "64", "--height", "64", "--steps", "3", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path == (tmp_path / "out" / "fox.png").resolve()
    assert path.read_bytes().startswith(b"\x89PNG")
    assert "submitted gen-" in out.stderr and "3/3" in out.stderr and "succeeded" in out.stderr


def test_generate_reports_refusals_clearly(gateway: Gateway, tmp_path: Path) -> None:
    out = _genjob(gateway, "bob", "generate", "x", "--steps", "99", cwd=tmp_path)
    assert out.returncode == 1 and "tier_limit_exceeded (HTTP 422)" in out.stderr
    assert not (tmp_path / "out.png").exists()


def test_queues_and_dlq_commands(gateway: Gateway, tmp_path: Path) -> None:
    out = _genjob(gateway, "admin", "queues", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.splitlines()[0].split()[:3] == ["TIER", "PENDING", "IN-FLIGHT"]
    assert "enterprise" in out.stdout
    out = _genjob(gateway, "admin", "dlq", "list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = _genjob(gateway, "bob", "dlq", "list", cwd=tmp_path)
    assert out.returncode == 1 and "admin_required" in out.stderr
    out = _genjob(gateway, "admin", "dlq", "redrive", "gen-unknown", cwd=tmp_path)
    assert out.returncode == 1 and "not_found" in out.stderr


def test_apikey_hash_and_create(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "genjob.cli", "apikey", "hash"],
        input="secret\n",
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == hashlib.sha256(b"secret").hexdigest()
    out = subprocess.run(
        [sys.executable, "-m", "genjob.cli", "apikey", "create", "--tenant", "acme", "--tier", "pro"],
        capture_output=True,
        text=True,
    )
    key, entry = out.stdout.splitlines()
    assert '"tenant": "acme"' in entry and hash_key(key) in entry and key not in entry


def test_api_refuses_to_start_with_a_bad_keys_file(tmp_path: Path) -> None:
    """A missing or malformed keys file stops `genjob api` at once with a message naming it."""
    bad = tmp_path / "keys.yaml"
    bad.write_text("- {key_sha256: abc, tenant: t, tier: free}\n")
    for path in (bad, tmp_path / "missing.yaml"):
        env = dict(os.environ, GENJOB_API__API_KEYS_FILE=str(path))
        out = subprocess.run(
            [sys.executable, "-m", "genjob.cli", "api", "--port", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and str(path) in out.stderr and "Traceback" not in out.stderr


def test_client_event_stream_skips_keepalive_pings() -> None:
    """The gateway's stream sends a comment line every KEEPALIVE_SECONDS (sse-starlette's ping)
    while a job waits; the client yields only events, instead of failing to parse the ping as
    an event without data (a job queued longer than the ping interval broke `genjob generate`)."""
    import http.server
    import threading

    from sse_starlette.event import ServerSentEvent

    from genjob_api.client import GatewayClient

    ping = ServerSentEvent(comment="ping - 2026-12-03 18:00:00+00:00").encode()
    body = (
        b'id: 1\r\nevent: status\r\ndata: {"status": "queued"}\r\n\r\n'
        + ping  # after an event with an id, httpx-sse reads it as an event without data
        + b'id: 2\r\nevent: succeeded\r\ndata: {"status": "succeeded"}\r\n\r\n'
    )

    class Stream(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = GatewayClient(f"http://127.0.0.1:{server.server_address[1]}", "key")
    try:
        events = list(client.events("gen-1"))
    finally:
        client.close()
        server.shutdown()
    assert events == [("status", {"status": "queued"}), ("succeeded", {"status": "succeeded"})]
