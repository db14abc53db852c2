"""Benchmark: requests/s and p99 latency of `POST /v1/generations` at a fixed concurrency.

Reference, measured in the same run with the same server settings (one uvicorn process,
no access log, loopback; the gateway's own settings: uvloop and httptools, as `genjob api`
runs, or asyncio and h11 with GENJOB_BENCH_SERVER=h11): a bare FastAPI handler returning
a constant on the same path.
Both servers run as subprocesses; the load generator is a minimal keep-alive HTTP/1.1
client on asyncio (cheap, so it steals as little CPU as possible from the server on a
2-core machine). Rounds alternate reference / gateway; medians of the rounds are
reported. The gateway runs in local mode against a private redis-server; the key's tier
has no worker, so jobs only queue. Also reported: Redis round trips and commands per POST
(one request at a time: counted in-process on the client connection, and on the server with
INFO commandstats), and under the load Redis socket reads per POST (INFO stats: submits
issued in one event-loop turn go out in one write).

    python -m bench.gateway               # about 1.5 minutes
    GENJOB_BENCH_QUICK=1 python -m bench.gateway
    GENJOB_BENCH_SERVER=h11 python -m bench.gateway   # pure-Python server stack
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from genjob.localredis import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
QUICK = os.environ.get("GENJOB_BENCH_QUICK") == "1"
CONCURRENCY = 16
ROUNDS = 1 if QUICK else 3
ROUND_SECONDS = 2.0 if QUICK else 8.0
WARMUP_SECONDS = 1.0 if QUICK else 3.0
KEY = "gj_bench_key"
BODY = json.dumps({"prompt": "a red fox in the snow", "width": 64, "height": 64, "steps": 2}).encode()
# uvicorn's "auto" picks uvloop and httptools (installed with the api extra), as `genjob api`.
SERVER = {"loop": "asyncio", "http": "h11"} if os.environ.get("GENJOB_BENCH_SERVER") == "h11" else {}
SERVER_SNIPPET = """
import json, sys, uvicorn
if sys.argv[1] == "reference":
    from bench.gateway import reference_app as factory
else:
    from genjob_api.main import create_app as factory
uvicorn.run(factory(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False,
            **json.loads(sys.argv[3]))
"""


def reference_app() -> Any:
    """The bare handler: FastAPI, one POST route, a constant answer."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/generations", status_code=202)
    async def create() -> dict[str, str]:
        return {"id": "constant", "status": "queued"}

    return app


def _request(port: int) -> bytes:
    head = (
        f"POST /v1/generations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def _connection(port: int, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = _request(port)
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 202:
                errors.append(status)
    finally:
        writer.close()


async def _load(port: int, seconds: float) -> tuple[float, list[float], list[int]]:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*[_connection(port, stop_at, latencies, errors) for _ in range(CONCURRENCY)])
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report CPU per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def _start(kind: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SNIPPET, kind, str(port), json.dumps(SERVER)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{kind} server exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} server did not start")


def _round_trips_per_post(env: dict[str, str], n: int = 200) -> float:
    """Client-side count: each send of a (possibly pipelined) packed command is one round trip."""
    import redis.asyncio.connection as aconnection
    import redis.connection
    from fastapi.testclient import TestClient

    from genjob.settings import GenjobSettings
    from genjob_api.main import create_app

    sends = 0
    sync_send = redis.connection.AbstractConnection.send_packed_command
    async_send = aconnection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        sync_send(self, command, check_health)

    async def acounting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        await async_send(self, command, check_health)

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        app = create_app(GenjobSettings(), background=False)
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            client.post("/v1/generations", content=BODY, headers=headers)  # connect, load scripts
            redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
            aconnection.AbstractConnection.send_packed_command = acounting  # type: ignore[method-assign]
            try:
                for _ in range(n):
                    assert client.post("/v1/generations", content=BODY, headers=headers).status_code == 202
            finally:
                redis.connection.AbstractConnection.send_packed_command = sync_send  # type: ignore[method-assign]
                aconnection.AbstractConnection.send_packed_command = async_send  # type: ignore[method-assign]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return sends / n


def main() -> None:
    from genjob_api.auth import hash_key

    tmp = Path(tempfile.mkdtemp(prefix="genjob-bench-gateway-"))
    server = RedisServer(tmp / "redis").start()
    keys = tmp / "keys.json"
    keys.write_text(json.dumps([{"key_sha256": hash_key(KEY), "tenant": "bench", "tier": "enterprise"}]))
    env = dict(
        os.environ,
        GENJOB_REDIS__URL=server.url,
        GENJOB_API__API_KEYS_FILE=str(keys),
        GENJOB_API__RATE_LIMIT_PER_MINUTE="100000000",
        GENJOB_LOG_LEVEL="WARNING",
        PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    env.pop("GENJOB_CONFIG_FILE", None)
    ports = {"reference": free_port(), "gateway": free_port()}
    procs = {kind: _start(kind, port, env) for kind, port in ports.items()}
    results: dict[str, list[tuple[float, list[float], list[int]]]] = {"reference": [], "gateway": []}
    cpu_ms: dict[str, list[float]] = {"reference": [], "gateway": []}
    stats = server.client()
    reads_under_load = 0  # socket reads on the Redis server during gateway rounds
    try:
        for kind, port in ports.items():
            print(f"warm-up {kind} ({WARMUP_SECONDS:.0f}s)", flush=True)
            asyncio.run(_load(port, WARMUP_SECONDS))
        for i in range(ROUNDS):
            for kind, port in ports.items():
                cpu = _cpu_seconds(procs[kind].pid)
                reads = int(stats.info("stats")["total_reads_processed"])
                rps, lat, errors = asyncio.run(_load(port, ROUND_SECONDS))
                cpu_ms[kind].append((_cpu_seconds(procs[kind].pid) - cpu) * 1000 / max(1, len(lat)))
                if kind == "gateway":
                    reads_under_load += int(stats.info("stats")["total_reads_processed"]) - reads
                results[kind].append((rps, lat, errors))
                print(
                    f"round {i + 1}/{ROUNDS} {kind:<9} {rps:8.0f} req/s  p50 {_p(lat, 0.5):6.1f} ms  "
                    f"p99 {_p(lat, 0.99):6.1f} ms  server CPU {cpu_ms[kind][-1]:.2f} ms/req  "
                    f"non-202: {len(errors)}",
                    flush=True,
                )
        client = server.client()
        client.config_resetstat()
        before = client.llen("genjob:pending:enterprise")
        trips = _round_trips_per_post({k: v for k, v in env.items() if k.startswith("GENJOB_")})
        posts = client.llen("genjob:pending:enterprise") - before
        commands = sum(
            int(v["calls"]) for k, v in client.info("commandstats").items() if k != "cmdstat_config"
        )
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=10)
        server.stop()

    def median_rps(kind: str) -> float:
        return statistics.median(r[0] for r in results[kind])

    def median_p(kind: str, q: float) -> float:
        return statistics.median(_p(r[1], q) for r in results[kind])

    value, reference = median_rps("gateway"), median_rps("reference")
    reads_per_post = reads_under_load / max(1, sum(len(r[1]) for r in results["gateway"]))
    print(
        f"Redis per POST: {trips:.2f} round trips, "
        f"{commands / max(1, posts):.2f} commands (incl. script calls); under load "
        f"{reads_per_post:.2f} Redis socket reads per POST "
        "(submits of one event-loop turn share one write)"
    )
    print(
        json.dumps(
            {
                "bench": "gateway",
                "value": round(value, 1),
                "unit": "requests/s",
                "reference": round(reference, 1),
                "ratio": round(value / reference, 3) if reference else None,
                "details": {
                    "better": "higher",
                    "p99_ms": round(median_p("gateway", 0.99), 2),
                    "p50_ms": round(median_p("gateway", 0.5), 2),
                    "reference_p99_ms": round(median_p("reference", 0.99), 2),
                    "server_cpu_ms_per_request": round(statistics.median(cpu_ms["gateway"]), 3),
                    "reference_server_cpu_ms_per_request": round(statistics.median(cpu_ms["reference"]), 3),
                    "concurrency": CONCURRENCY,
                    "rounds": ROUNDS,
                    "round_seconds": ROUND_SECONDS,
                    "samples": sum(len(r[1]) for r in results["gateway"]),
                    "non_202": sum(len(r[2]) for r in results["gateway"]),
                    "redis_round_trips_per_post": round(trips, 2),
                    "redis_commands_per_post": round(commands / max(1, posts), 2),
                    "redis_reads_per_post_under_load": round(reads_per_post, 3),
                    "quick": QUICK,
                    "server": "1 uvicorn process ({}), loopback, access log off".format(
                        "h11, asyncio" if SERVER else "httptools, uvloop"
                    ),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
