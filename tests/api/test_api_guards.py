"""Refusals over real HTTP: authentication, rate limits, size caps, invalid parameters, admin."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from genjob.keys import RedisKeys
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings, QueueSettings

Gateway = Any  # tests/api/conftest.py: Gateway
Submit = Callable[..., httpx.Response]
SMALL = {"width": 64, "height": 64, "steps": 2}
MAX_PROMPT_CHARS = 500  # GENJOB_API__MAX_PROMPT_CHARS in conftest.py


def _error(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def _pending(gateway: Gateway) -> int:
    return sum(gateway.redis.llen(f"apitest:pending:{t}") for t in ("enterprise", "pro", "free"))


def test_missing_and_invalid_keys_get_401_with_clear_bodies(gateway: Gateway) -> None:
    """No key and a wrong key are told apart, and say how to authenticate."""
    anonymous = gateway.client()
    for method, path in (("GET", "/v1/generations"), ("POST", "/v1/generations"), ("GET", "/v1/queues")):
        r = anonymous.request(method, path, json={"prompt": "x"})
        assert r.status_code == 401 and _error(r) == "missing_api_key"
        assert "Bearer" in r.json()["error"]["message"] and r.headers["WWW-Authenticate"] == "Bearer"
    r = gateway.client().get("/v1/generations", headers={"Authorization": "Bearer gj_nope"})
    assert r.status_code == 401 and _error(r) == "invalid_api_key"
    r = gateway.client().get("/v1/generations", headers={"X-API-Key": gateway.keys["bob"]})
    assert r.status_code == 200


def test_admin_endpoints_need_an_admin_key(gateway: Gateway) -> None:
    r = gateway.client("bob").get("/v1/admin/dead-letters")
    assert r.status_code == 403 and _error(r) == "admin_required"
    assert gateway.client("admin").get("/v1/admin/dead-letters").status_code == 200


def test_dead_letters_are_listed_and_redriven(gateway: Gateway, submit: Submit) -> None:
    """A job that failed for good shows in the dead-letter list; redrive queues it again."""
    job = submit("ent", {"prompt": "doomed", "priority": 9, **SMALL}).json()  # head of the queue
    [claimed] = gateway.queue.claim(["enterprise"], "test-worker")
    assert claimed.id == job["id"]
    gateway.queue.fail(claimed, "GenerationError", "boom", retryable=False)
    admin = gateway.client("admin")
    lists = admin.get("/v1/admin/dead-letters", params={"tier": "enterprise"}).json()
    assert lists == [{"tier": "enterprise", "ids": [job["id"], *lists[0]["ids"][1:]]}]
    assert gateway.client("ent").get(f"/v1/generations/{job['id']}").json()["status"] == "failed"
    r = admin.post(f"/v1/admin/dead-letters/{job['id']}/redrive")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert gateway.client("ent").get(f"/v1/generations/{job['id']}").json()["status"] == "queued"
    again = admin.post(f"/v1/admin/dead-letters/{job['id']}/redrive")
    assert again.status_code == 409 and _error(again) == "not_dead_lettered"
    assert admin.post("/v1/admin/dead-letters/nope/redrive").status_code == 404
    assert _error(admin.get("/v1/admin/dead-letters", params={"tier": "gold"})) == "unknown_tier"


def test_a_dead_workers_job_is_requeued_by_the_local_gateway(gateway: Gateway, submit: Submit) -> None:
    """With no operator, the local gateway reaps expired leases: a job whose worker vanished
    mid-run goes back to the head of its queue instead of staying `running` forever."""
    job = submit("ent", {"prompt": "orphan", "priority": 9, **SMALL}).json()  # head of the queue
    tiers = list(GenjobSettings().tiers)
    vanishing = JobQueue(gateway.redis, RedisKeys("apitest"), tiers, QueueSettings(lease_seconds=0.2))
    others = []
    while not (claimed := vanishing.claim(["enterprise"], "vanishing-worker")) or claimed[0].id != job["id"]:
        assert claimed, "the job left the enterprise queue"
        others += claimed  # earlier tests' priority jobs ahead of it
    for other in others:
        vanishing.requeue(other, "Preempted")
    # It never heartbeats: its lease expires.
    c = gateway.client("ent")
    assert c.get(f"/v1/generations/{job['id']}").json()["status"] == "running"
    back = gateway.wait_for("ent", job["id"], {"queued", "failed"}, timeout=30)
    assert back["status"] == "queued" and back["queuePosition"] <= len(others), back  # at the head
    assert c.delete(f"/v1/generations/{job['id']}").json()["outcome"] == "cancelled"


def test_rate_limit_answers_429_with_retry_after(gateway: Gateway) -> None:
    """A key over its per-minute limit gets 429 and Retry-After; other keys are unaffected.
    Seven calls against a limit of three overflow a window even if a minute boundary passes."""
    c = gateway.client("slow")
    answers = [c.get("/v1/queues") for _ in range(7)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert _error(limited[0]) == "rate_limited"
    assert 1 <= int(limited[0].headers["Retry-After"]) <= 60
    assert limited[0].headers["X-RateLimit-Limit"] == "3"
    assert gateway.client("ent").get("/v1/queues").status_code == 200


def test_oversized_body_is_refused_before_any_work(gateway: Gateway) -> None:
    """413 for a body over the cap, declared or chunked, with nothing queued or counted."""
    before = _pending(gateway)
    rate_keys = set(gateway.redis.keys("apitest:ratelimit:ent:*"))
    counts = {k: gateway.redis.get(k) for k in rate_keys}
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    c = gateway.client("ent")
    r = c.post("/v1/generations", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and _error(r) == "body_too_large"

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = c.post("/v1/generations", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and _error(r) == "body_too_large"
    assert _pending(gateway) == before
    assert {k: gateway.redis.get(k) for k in rate_keys} == counts


def test_overlong_prompt_is_refused_before_work(gateway: Gateway, submit: Submit) -> None:
    """Prompts over the gateway's cap (or the schema's 2000) get 422 prompt_too_long, nothing queued."""
    before = _pending(gateway)
    for prompt in ("p" * (MAX_PROMPT_CHARS + 1), "p" * 2001):
        r = submit("ent", {"prompt": prompt, **SMALL})
        assert r.status_code == 422 and _error(r) == "prompt_too_long", r.text
    r = submit("ent", {"prompt": "ok", "negativePrompt": "n" * (MAX_PROMPT_CHARS + 1), **SMALL})
    assert r.status_code == 422 and _error(r) == "prompt_too_long"
    assert _pending(gateway) == before


def test_invalid_parameters_get_specific_422s(gateway: Gateway, submit: Submit) -> None:
    """Each kind of bad input names the field and says what to change; nothing is queued."""
    before = _pending(gateway)
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("bob", {"prompt": "x", "steps": 40}, "tier_limit_exceeded", "free tier maximum 30"),
        ("bob", {"prompt": "x", "width": 1024}, "tier_limit_exceeded", "width 1024"),
        ("ent", {"prompt": "x", "width": 65}, "invalid_parameters", "width"),
        ("ent", {"prompt": "x", "model": "sdxl-turbo"}, "model_not_found", "configured models: tiny"),
        ("ent", {"prompt": "x", "strength": 0.5}, "invalid_parameters", "initImage"),
        ("ent", {"prompt": "x", "tier": "free"}, "invalid_parameters", "tier"),
        ("ent", {"prompt": ""}, "invalid_parameters", "prompt"),
        ("ent", {"steps": 2}, "invalid_parameters", "prompt"),
        ("ent", {"prompt": "x", "guidanceScale": "lots"}, "invalid_parameters", "guidanceScale"),
    ]
    for who, body, code, words in cases:
        r = submit(who, body)
        assert r.status_code == 422, (body, r.text)
        assert _error(r) == code and words in r.json()["error"]["message"], (body, r.text)
    r = gateway.client("ent").post(
        "/v1/generations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and _error(r) == "invalid_json"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = gateway.client("ent").post("/v1/generations", content=b'{"prompt": "x"}', headers=headers)
        assert r.status_code == 415 and _error(r) == "unsupported_media_type", (content_type, r.text)
        assert "Content-Type: application/json" in r.json()["error"]["message"]
    r = submit("ent", {"prompt": "x", **SMALL}, headers={"Idempotency-Key": "k" * 256})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]["message"], r.text
    assert _pending(gateway) == before


def test_unknown_ids_and_paths_are_404_json(gateway: Gateway) -> None:
    c = gateway.client("ent")
    for path in ("/v1/generations/nope", "/v1/generations/bad%20id", "/v1/nothing-here"):
        r = c.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path


def test_health_readiness_metrics_and_docs(gateway: Gateway, submit: Submit) -> None:
    """Probes, docs, and metrics by route template, including the submit route and its
    refusals."""
    assert submit("ent", {"prompt": "x", **SMALL}).status_code == 202
    assert submit("ent", {"prompt": "x", "width": 65}).status_code == 422
    c = gateway.client()
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["status"] == "ready"
    metrics = c.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    for status in ("202", "422"):
        labels = (("method", "POST"), ("route", "/v1/generations"), ("status", status))
        assert ("genjob_api_requests_total", labels) in samples
    assert ("genjob_api_generations_submitted_total", (("tier", "enterprise"),)) in samples
    assert "genjob_api_refusals_total" in metrics
    assert c.get("/docs").status_code == 200
    schema = c.get("/openapi.json").json()
    assert "/v1/generations/{job_id}/events" in schema["paths"]
