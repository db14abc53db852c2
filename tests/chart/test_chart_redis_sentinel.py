"""The chart against an external Redis with replicas and Sentinel: genjob's config names the
sentinels (and WAIT), and KEDA's triggers switch to `redis-sentinel`; the bundled Redis keeps
`redis` triggers and a `maxmemory` below its container limit."""

from __future__ import annotations

from pathlib import Path

import yaml

from genjob.settings import GenjobSettings

SENTINEL_SETS = [
    "redis.enabled=false",
    "externalRedis.url=redis://not-used:6379/2",
    "externalRedis.sentinels={sentinel-0.redis:26379,sentinel-1.redis:26379}",
    "externalRedis.sentinelMaster=queue",
    "externalRedis.waitReplicas=1",
    "externalRedis.existingSecret=redis-auth",
]


def triggers(docs: list[dict]) -> list[dict]:
    """The Redis triggers (the operator's external-push trigger reads no Redis)."""
    return [
        t
        for d in docs
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
        if t["type"] != "external-push"
    ]


def test_an_external_sentinel_set_configures_genjob_and_keda(chartlib, tmp_path: Path, monkeypatch) -> None:
    docs = chartlib.objects(chartlib.render(sets=SENTINEL_SETS))
    found = triggers(docs)
    assert found and {t["type"] for t in found} == {"redis-sentinel"}
    for trigger in found:
        meta = trigger["metadata"]
        assert meta["addresses"] == "sentinel-0.redis:26379,sentinel-1.redis:26379"
        assert meta["sentinelMaster"] == "queue" and meta["databaseIndex"] == "2"
        assert "address" not in meta and trigger["authenticationRef"]["name"]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    for name in [n for n in __import__("os").environ if n.startswith("GENJOB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GENJOB_CONFIG_FILE", str(path))
    settings = GenjobSettings()
    assert settings.redis.sentinel_addresses() == [("sentinel-0.redis", 26379), ("sentinel-1.redis", 26379)]
    assert settings.redis.sentinel_master == "queue" and settings.redis.wait_replicas == 1


def test_the_bundled_redis_keeps_redis_triggers_and_a_memory_cap(rendered) -> None:
    found = triggers(rendered["default"])
    assert found and {t["type"] for t in found} == {"redis"}
    assert all("address" in t["metadata"] for t in found)
    sts = next(d for d in rendered["default"] if d["kind"] == "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    flags = dict(zip(container["args"][::2], container["args"][1::2], strict=True))
    assert flags["--maxmemory"] == "768mb" and flags["--maxmemory-policy"] == "noeviction"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    config = yaml.safe_load(
        next(
            d
            for d in rendered["default"]
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")
        )["data"]["config.yaml"]
    )
    assert "sentinels" not in config["redis"]


def test_sentinel_addresses_must_be_host_and_port(chartlib) -> None:
    error = chartlib.render_error(sets=[*SENTINEL_SETS[:2], "externalRedis.sentinels={sentinel-0}"])
    assert "sentinels" in error


def test_the_bundled_sentinel_set_configures_genjob_and_keda(rendered) -> None:
    """ci/redis-sentinel-values.yaml: three Redis servers and three sentinels; genjob's config and
    KEDA's triggers name every sentinel, KEDA authenticates to them with the sentinels' password
    and to Redis as its read-only user."""
    docs = rendered["redis-sentinel"]
    sets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    assert sets["genjob-redis"]["spec"]["replicas"] == 3
    assert sets["genjob-redis"]["spec"]["serviceName"] == "genjob-redis-headless"
    assert sets["genjob-redis-sentinel"]["spec"]["replicas"] == 3
    config = yaml.safe_load(
        next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))[
            "data"
        ]["config.yaml"]
    )
    sentinels = [
        f"genjob-redis-sentinel-{i}.genjob-redis-sentinel.genjob.svc.cluster.local:26379" for i in range(3)
    ]
    assert config["redis"]["sentinels"] == sentinels and config["redis"]["wait_replicas"] == 1
    found = triggers(docs)
    assert found and {t["type"] for t in found} == {"redis-sentinel"}
    assert {t["metadata"]["addresses"] for t in found} == {",".join(sentinels)}
    (auth,) = [
        d for d in docs if d["kind"] == "TriggerAuthentication" and d["metadata"]["name"] == "genjob-redis"
    ]
    refs = {r["parameter"]: r["key"] for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": "keda-username",
        "password": "keda-password",
        "sentinelPassword": "sentinel-password",
    }
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "genjob-redis"]
    assert set(secret["data"]) == {
        "redis-password", "sentinel-password", "keda-username",
        "gateway-password", "operator-password", "worker-password", "keda-password",
    }  # fmt: skip
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env["GENJOB_REDIS__SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "genjob-redis", "key": "sentinel-password"}


def test_replicas_without_sentinel_are_refused(chartlib) -> None:
    assert "redis.sentinel.enabled" in chartlib.render_error(sets=["redis.replicas=3"])
    assert "redis.replicas >= 2" in chartlib.render_error(sets=["redis.sentinel.enabled=true"])


def test_an_external_sentinel_password_reaches_genjob_and_keda(chartlib) -> None:
    docs = chartlib.objects(
        chartlib.render(sets=[*SENTINEL_SETS, "externalRedis.existingSecretSentinelPasswordKey=sentinel"])
    )
    (auth,) = [
        d for d in docs if d["kind"] == "TriggerAuthentication" and d["metadata"]["name"].endswith("-redis")
    ]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["sentinelPassword"] == ("redis-auth", "sentinel")
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["GENJOB_REDIS__SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-auth",
            "key": "sentinel",
        }
