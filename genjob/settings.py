"""The one settings object of genjob, built with pydantic-settings.

Every component receives a `GenjobSettings` (or one of its sections) as an argument;
nothing reads the environment deep inside. Sources, highest precedence first:
constructor arguments, environment variables (`GENJOB_` prefix, `__` between nested
names, e.g. `GENJOB_REDIS__URL`, `GENJOB_WORKER__TIERS='["pro","starter"]'`), then a
YAML file named by `GENJOB_CONFIG_FILE` (the Helm chart mounts one), then the defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from genjob.jobspec import TENANT_PATTERN
from genjob.tiers import TierConfig, check_tiers, default_tiers, ordered_tiers

CONFIG_FILE_ENV = "GENJOB_CONFIG_FILE"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisSettings(_Section):
    """Where the queue lives: one Redis URL, or a Sentinel deployment that names the primary."""

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL (redis:// or rediss://). With `sentinels`, only its database, user, "
        "password and TLS scheme are used: the sentinels name the primary's address.",
    )
    username: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Redis ACL user (AUTH username password), when the URL names none. Each "
        "component has its own (genjob/redis_acl.py); none: the default user.",
    )
    password: SecretStr | None = Field(None, description="Redis AUTH password; overrides one in the URL.")
    key_prefix: str = Field("genjob", pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Prefix of every key.")
    socket_timeout_seconds: float = Field(10.0, gt=0)
    sentinels: list[str] = Field(
        default_factory=list,
        description="Sentinel addresses (host:port). When set, every component asks them for the "
        "primary and follows it through a failover without a restart.",
    )
    sentinel_master: str = Field(
        "genjob", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Master name the sentinels monitor."
    )
    sentinel_password: SecretStr | None = Field(None, description="AUTH password of the sentinels.")
    retries: int = Field(
        8,
        ge=0,
        le=50,
        description="Retries of a command that met a connection error, a timeout or a demoted "
        "primary, with backoff from 0.05 s doubling to 2 s (about 6 s in all for 8): long enough "
        "to ride through a failover. What a repeated script does: docs/redis.md.",
    )

    wait_replicas: int = Field(
        0,
        ge=0,
        le=10,
        description="Acknowledged means durable: the gateway answers a submit 202 only after this "
        "many replicas have the write (Redis WAIT, in the submit's round trip); 0 does not wait. "
        "Set it to 1 with replicas, so a failover loses no acknowledged job.",
    )
    wait_timeout_ms: int = Field(
        500,
        ge=1,
        le=60_000,
        description="How long a submit waits for `wait_replicas`; past it the answer is a 503 "
        "the client may retry under its Idempotency-Key.",
    )

    @field_validator("sentinels")
    @classmethod
    def _host_ports(cls, sentinels: list[str]) -> list[str]:
        for address in sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"sentinel address {address!r} must be host:port (e.g. redis-sentinel:26379)"
                )
        return sentinels

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(h, int(p)) for h, _, p in (a.rpartition(":") for a in self.sentinels)]


class QueueSettings(_Section):
    """Queue protocol timings shared by workers, operator and gateway."""

    lease_seconds: float = Field(
        30.0, ge=0.1, le=3600, description="Lease a claim holds without a heartbeat."
    )
    retry_backoff_base_seconds: float = Field(
        2.0, ge=0, description="First retry delay; doubles each attempt."
    )
    retry_backoff_max_seconds: float = Field(300.0, ge=0)
    finished_retention_seconds: int = Field(
        24 * 3600,
        ge=60,
        description="How long finished job records stay (sized from the per-job byte budget: docs/redis.md).",
    )
    events_max_length: int = Field(100_000, ge=1000, description="Approximate cap of the event stream.")
    dead_letter_max_length: int = Field(10_000, ge=10, description="Cap of each tier's dead-letter list.")


class ModelConfig(_Section):
    """One servable model."""

    source: str = Field(..., description="Local folder or hub id passed to from_pretrained.")
    kind: Literal["sd", "sdxl"] = Field(
        "sd", description="Pipeline family: Stable Diffusion 1.x/2.x or SDXL."
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float16", description="Weights dtype on GPU.")
    memory_class: Literal["tiny", "sd15", "sd21", "sdxl"] = Field(
        "sd15", description="Row of the GPU memory table used to estimate a job's need."
    )
    variant: str | None = Field(None, description="Weights variant (e.g. fp16) passed to from_pretrained.")
    enable_attention_slicing: bool = False
    enable_vae_tiling: bool = False
    cpu_offload: Literal["none", "model", "sequential"] = "none"


# The tiny random-weight model `genjob model make-tiny` builds; the local quickstart serves it.
DEFAULT_MODELS = {
    "tiny": ModelConfig(source=".genjob/models/tiny", kind="sd", dtype="float32", memory_class="tiny"),
}


class WorkerSettings(_Section):
    """One worker process (one pool)."""

    tiers: list[str] = Field(
        default_factory=lambda: ["free"], min_length=1, description="Own tiers, in order."
    )
    spill_over: bool = Field(False, description="Also claim from the own tiers' spill-over tiers.")
    name: str | None = Field(None, description="Worker id; defaults to the pod name or host-pid.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_loaded_pipelines: int = Field(2, ge=1, le=16)
    preload_models: list[str] = Field(
        default_factory=list, description="Loaded at start besides the default."
    )
    heartbeat_interval_seconds: float = Field(5.0, gt=0)
    progress_interval_seconds: float = Field(1.0, gt=0, description="Least time between progress events.")
    idle_block_seconds: float = Field(2.0, gt=0, le=30, description="How long an idle claim blocks.")
    drain_grace_seconds: float = Field(
        110.0,
        gt=0,
        description="Time after SIGTERM to finish work; keep below terminationGracePeriodSeconds.",
    )
    batch_size: int = Field(1, ge=1, le=16, description="Claim up to this many compatible jobs at once.")
    max_consecutive_failures: int = Field(
        5, ge=1, description="Circuit breaker: go not-ready after this many."
    )
    http_port: int = Field(8081, ge=0, le=65535, description="/healthz, /readyz, /metrics; 0 disables.")
    init_image_max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    init_image_url_allowlist: list[str] = Field(default_factory=list, description="URL prefixes allowed.")
    init_image_allow_private: bool = Field(
        False,
        description="Allow init-image URLs whose host is or resolves to a loopback, private, link-local "
        "(cloud metadata) or other non-public address. Off: an allow-listed name that resolves to "
        "one is refused (InvalidSpec), so no job reaches the metadata endpoint or a cluster Service.",
    )
    annotate_pod: bool = Field(True, description="Mark the own pod do-not-disrupt while busy (in a cluster).")
    checkpoint_on_preempt: bool = Field(
        True, description="Checkpoint a job stopped by a drain, so the next worker resumes it from that step."
    )
    checkpoint_interval_seconds: float = Field(
        30.0, ge=0, description="Periodic checkpoints of long jobs every this many seconds; 0 turns them off."
    )
    checkpoint_min_job_seconds: float = Field(
        120.0,
        ge=0,
        description="Periodic checkpoints only for jobs estimated to run this long (0: every job).",
    )


class ResultStoreSettings(_Section):
    """Where images go."""

    backend: Literal["filesystem", "s3"] = "filesystem"
    path: Path = Field(Path("./.genjob/results"), description="Filesystem backend root (a PVC in a cluster).")
    s3_bucket: str | None = None
    s3_prefix: str = "genjob/"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> ResultStoreSettings:
        if self.backend == "s3" and not self.s3_bucket:
            raise ValueError("results.s3_bucket is required when results.backend is 's3'")
        return self


class OperatorSettings(_Section):
    """The kopf operator."""

    namespaces: list[str] = Field(default_factory=list, description="Watched namespaces; empty watches all.")
    ttl_seconds_after_finished: int | None = Field(86400, ge=0, description="Default TTL; None keeps jobs.")
    tenant_label: str = Field(
        "genjob.io/tenant",
        description="Namespace label naming the tenant. An unlabelled namespace named by "
        "api.namespace_template (genjob-{tenant}) is that tenant's; any other, the tenant of "
        "its own name.",
    )
    owner_namespaces: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Namespaces whose GenerationJobs may name another tenant in spec.owner, and "
        "which tenants ('*': any), e.g. {'genjob-gateway': ['*']}. Elsewhere an owner that is "
        "not the namespace's tenant is refused (InvalidSpec).",
    )

    @field_validator("owner_namespaces")
    @classmethod
    def _owner_tenants(cls, owner_namespaces: dict[str, list[str]]) -> dict[str, list[str]]:
        for namespace, tenants in owner_namespaces.items():
            bad = [t for t in tenants if t != "*" and not re.fullmatch(TENANT_PATTERN, t)]
            if bad:
                raise ValueError(
                    f"operator.owner_namespaces[{namespace!r}] names {bad}: tenants are DNS labels "
                    "(lower-case letters, digits, '-') or '*' for any tenant"
                )
        return owner_namespaces

    progress_mirror_seconds: float = Field(
        15.0, ge=1, description="Least time between progress writes to a job's status."
    )
    reaper_interval_seconds: float = Field(5.0, gt=0)
    resync_seconds: float = Field(
        60.0,
        ge=0.5,
        description="How often the status sync compares unfinished GenerationJobs with their queue "
        "records: restores final states whose events were lost, and queues again jobs whose "
        "record Redis lost (e.g. the last second of writes before a crash with AOF everysec).",
    )
    peering_name: str = "genjob"
    http_port: int = Field(8080, ge=0, le=65535)
    push_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of KEDA's external-push scaler gRPC API (instant activation of idle pools); "
        "0 disables.",
    )
    push_tls_dir: Path | None = Field(
        None,
        description="Directory holding tls.crt, tls.key and ca.crt: the push API then serves TLS and "
        "requires a client certificate signed by ca.crt (KEDA's TriggerAuthentication). None: plaintext.",
    )


class ApiSettings(_Section):
    """The REST gateway."""

    mode: Literal["local", "cluster"] = "local"
    api_keys_file: Path | None = Field(None, description="YAML/JSON file of hashed API keys.")
    namespace_template: str = Field(
        "genjob-{tenant}", description="Namespace of a tenant's jobs (cluster mode)."
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_prompt_chars: int = Field(2000, ge=1)
    rate_limit_per_minute: int = Field(120, ge=1)
    max_streams_per_key: int = Field(
        8, ge=1, le=1000, description="Event streams (SSE) one API key may hold open on one gateway replica."
    )
    max_queued_per_tenant: int = Field(
        1000,
        ge=0,
        description="Local mode: unfinished jobs (queued, waiting to retry or running) one tenant "
        "may have; more are refused with 429 tenant_queue_full. 0: no cap. Cluster mode caps "
        "tenants per tier with tiers[].limits.max_concurrent_per_tenant (jobs over it wait Pending).",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs on loopback, private, link-local and other non-public "
        "addresses (local development, in-cluster receivers). Off: such URLs are refused at "
        "submit (IP literals) and at delivery (what a host name resolves to), so a webhook "
        "cannot reach the cloud metadata service or internal services.",
    )


class GenjobSettings(BaseSettings):
    """All of genjob's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="GENJOB_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    redis: RedisSettings = RedisSettings()
    queue: QueueSettings = QueueSettings()
    tiers: dict[str, TierConfig] = Field(default_factory=default_tiers)
    models: dict[str, ModelConfig] = Field(
        default_factory=lambda: dict(DEFAULT_MODELS), description="Servable models by name."
    )
    default_model: str = Field("tiny", description="Model used when a job names none.")
    worker: WorkerSettings = WorkerSettings()
    results: ResultStoreSettings = ResultStoreSettings()
    operator: OperatorSettings = OperatorSettings()
    api: ApiSettings = ApiSettings()
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, tiers: dict[str, TierConfig]) -> dict[str, TierConfig]:
        return check_tiers(tiers)

    @model_validator(mode="after")
    def _cross_checks(self) -> GenjobSettings:
        unknown = [t for t in self.worker.tiers if t not in self.tiers]
        if unknown:
            raise ValueError(f"worker.tiers names unknown tier(s) {unknown}; configured: {list(self.tiers)}")
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not among models {list(self.models)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file} does not name a readable file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    def ordered_tier_names(self) -> list[str]:
        return ordered_tiers(self.tiers)

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `redis.Redis.from_url` (the password never appears in logs)."""
        kwargs: dict[str, Any] = {"socket_timeout": self.redis.socket_timeout_seconds}
        if self.redis.username is not None:
            kwargs["username"] = self.redis.username
        if self.redis.password is not None:
            kwargs["password"] = self.redis.password.get_secret_value()
        return kwargs
