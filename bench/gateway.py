"""Benchmark: requests/s and latency of `POST /v1/generations` at 16 connections, against
the gateways a team would write instead of genjob.

Question: is genjob's submit (authentication, admission, rate limit, one Redis script that
enqueues, indexes and answers the queue position) faster than a FastAPI endpoint that
enqueues the same request with Celery (`send_task`), arq (`enqueue_job`) or RQ
(`Queue.enqueue`)? The alternatives are bench/refs/ref_gateway.py, each in its library's
pinned venv with the same FastAPI, pydantic and uvicorn versions as genjob's
(bench/refs/venvs.py). A bare FastAPI handler returning a constant is measured too, for
context: the cost of the web stack alone.

Every server is one uvicorn process with the same settings (no access log, loopback; uvloop
and httptools, as `genjob api` runs, or asyncio and h11 with GENJOB_BENCH_SERVER=h11), all
on one private redis-server; no worker runs, so jobs only queue. The load generator is a
minimal keep-alive HTTP/1.1 client on asyncio (cheap, so it steals as little CPU as
possible from the server on a 2-core machine). Rounds visit every server in turn, the
order rotating from round to round; medians of the rounds are reported. Also reported:
genjob's Redis round trips and commands per POST (one request at a time: counted in-process
on the client connection, and on the server with INFO commandstats).

Last line: JSON, `value` genjob's POST/s, `reference` the fastest alternative's.

    python -m bench.gateway               # about 3 minutes (+ the reference venvs, once)
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

from bench.refs.venvs import GATEWAY_REFERENCES, ensure_venv
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
ALTERNATIVES = ("celery", "arq", "rq")
SERVER_SNIPPET = """
import json, sys, uvicorn
if sys.argv[1] == "bare":
    from bench.gateway import bare_app as factory
else:
    from genjob_api.main import create_app as factory
uvicorn.run(factory(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False,
            **json.loads(sys.argv[3]))
"""


def bare_app() -> Any:
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


def _command(kind: str, port: int, redis_url: str) -> list[str]:
    if kind in ALTERNATIVES:
        ref = GATEWAY_REFERENCES[kind]
        db_url = f"{redis_url.rsplit('/', 1)[0]}/{1 + ALTERNATIVES.index(kind)}"  # a db of its own
        return [str(ensure_venv(ref)), str(ref.script), kind, str(port), db_url, KEY, json.dumps(SERVER)]
    return [sys.executable, "-c", SERVER_SNIPPET, kind, str(port), json.dumps(SERVER)]


def _start(kind: str, port: int, redis_url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(_command(kind, port, redis_url), cwd=ROOT, env=env, stderr=subprocess.PIPE)
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
            redis.connection.AbstractConnection.send_packed_command = counting
            aconnection.AbstractConnection.send_packed_command = acounting
            try:
                for _ in range(n):
                    assert client.post("/v1/generations", content=BODY, headers=headers).status_code == 202
            finally:
                redis.connection.AbstractConnection.send_packed_command = sync_send
                aconnection.AbstractConnection.send_packed_command = async_send
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
    kinds = ("genjob", *ALTERNATIVES, "bare")
    ports = {kind: free_port() for kind in kinds}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    results: dict[str, list[tuple[float, list[float], list[int]]]] = {kind: [] for kind in kinds}
    cpu_ms: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for kind, port in ports.items():
            procs[kind] = _start(kind, port, server.url, env)
            print(f"warm-up {kind} ({WARMUP_SECONDS:.0f}s)", flush=True)
            asyncio.run(_load(port, WARMUP_SECONDS))
        for i in range(ROUNDS):
            for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                cpu = _cpu_seconds(procs[kind].pid)
                rps, lat, errors = asyncio.run(_load(ports[kind], ROUND_SECONDS))
                cpu_ms[kind].append((_cpu_seconds(procs[kind].pid) - cpu) * 1000 / max(1, len(lat)))
                results[kind].append((rps, lat, errors))
                print(
                    f"round {i + 1}/{ROUNDS} {kind:<7} {rps:8.0f} req/s  p50 {_p(lat, 0.5):6.1f} ms  "
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

    def summary(kind: str) -> dict[str, Any]:
        return {
            "requests_per_s": round(statistics.median(r[0] for r in results[kind]), 1),
            "p50_ms": round(statistics.median(_p(r[1], 0.5) for r in results[kind]), 2),
            "p99_ms": round(statistics.median(_p(r[1], 0.99) for r in results[kind]), 2),
            "server_cpu_ms_per_request": round(statistics.median(cpu_ms[kind]), 3),
            "non_202": sum(len(r[2]) for r in results[kind]),
        }

    systems = {kind: summary(kind) for kind in kinds}
    value = systems["genjob"]["requests_per_s"]
    fastest = max(ALTERNATIVES, key=lambda kind: systems[kind]["requests_per_s"])
    reference = systems[fastest]["requests_per_s"]
    print(f"Redis per POST (genjob): {trips:.2f} round trips, {commands / max(1, posts):.2f} commands")
    print(
        json.dumps(
            {
                "bench": "gateway",
                "value": value,
                "unit": "requests/s",
                "reference": reference,
                "ratio": round(value / reference, 3) if reference else None,
                "details": {
                    "better": "higher",
                    "reference_is": f"{fastest}: the fastest of {', '.join(ALTERNATIVES)}",
                    **{kind: systems[kind] for kind in kinds},
                    "faster_than_each_alternative": all(
                        value > systems[kind]["requests_per_s"] for kind in ALTERNATIVES
                    ),
                    "p99_ms": systems["genjob"]["p99_ms"],
                    "concurrency": CONCURRENCY,
                    "rounds": ROUNDS,
                    "round_seconds": ROUND_SECONDS,
                    "redis_round_trips_per_post": round(trips, 2),
                    "redis_commands_per_post": round(commands / max(1, posts), 2),
                    "quick": QUICK,
                    "server": "1 uvicorn process each ({}), loopback, access log off".format(
                        "h11, asyncio" if SERVER else "httptools, uvloop"
                    ),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
