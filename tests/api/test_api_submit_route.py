"""The submit route is an ordinary FastAPI route: `dependency_overrides` apply to it, and
FastAPI's OpenTelemetry instrumentation traces it (route, dependencies, endpoint) as any other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from genjob.localredis import RedisServer
from genjob.settings import GenjobSettings
from genjob_api.auth import Caller, hash_key
from genjob_api.deps import authenticate
from genjob_api.main import create_app

SMALL = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}


def _settings(redis_server: RedisServer, tmp_path: Path) -> GenjobSettings:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key_sha256": hash_key("k1"), "tenant": "t", "tier": "pro"}]))
    return GenjobSettings(
        redis={"url": redis_server.url, "key_prefix": "route"},
        api={"api_keys_file": str(keys)},
    )


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (OpenTelemetry allows setting it once), recording in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()


def test_dependency_overrides_apply_to_the_submit_route(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A test (or an embedding app) replaces authentication: the submit uses the override's
    caller, with no API key sent."""
    app = create_app(_settings(redis_server, tmp_path), background=False)

    async def someone_else() -> Caller:
        return Caller("override-key", "override-tenant", "pro", False, None, None)

    app.dependency_overrides[authenticate] = someone_else
    with TestClient(app) as client:
        answer = client.post("/v1/generations", json=SMALL)
    assert answer.status_code == 202, answer.text
    meta = json.loads(redis_client.hget(f"route:job:{answer.json()['id']}", "meta") or "{}")
    assert meta["tenant"] == "override-tenant" and meta["key_id"] == "override-key"


def test_opentelemetry_traces_the_submit_route(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """With a tracer provider configured, a submit gives a server span named by its route
    template, with FastAPI's operation spans (dependencies, endpoint) under it."""
    app = create_app(_settings(redis_server, tmp_path), background=False)
    with TestClient(app) as client:
        spans.clear()
        answer = client.post("/v1/generations", json=SMALL, headers={"Authorization": "Bearer k1"})
    assert answer.status_code == 202, answer.text
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    assert server.name == "POST /v1/generations", [s.name for s in finished]
    assert server.attributes is not None and server.attributes["http.route"] == "/v1/generations"
    assert server.attributes["http.response.status_code"] == 202
    functions = {str((s.attributes or {}).get("code.function.name")) for s in finished if s is not server}
    assert "genjob_api.routes.generations.create_generation" in functions, functions
