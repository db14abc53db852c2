"""The one settings object: defaults, environment, YAML file, cross-checks, tiers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from genjob.settings import GenjobSettings
from genjob.tiers import TierConfig, consumption_order, ordered_tiers


def test_default_tiers_are_ordered_highest_first() -> None:
    settings = GenjobSettings()
    assert settings.ordered_tier_names() == ["enterprise", "studio", "pro", "starter", "free"]


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENJOB_REDIS__URL", "redis://example:6380/1")
    monkeypatch.setenv("GENJOB_REDIS__PASSWORD", "s3cret")
    monkeypatch.setenv("GENJOB_WORKER__TIERS", '["pro", "starter"]')
    settings = GenjobSettings()
    assert settings.redis.url == "redis://example:6380/1"
    assert settings.worker.tiers == ["pro", "starter"]
    assert settings.redis_kwargs()["password"] == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()


def test_yaml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "redis:\n  key_prefix: prod\n"
        "tiers:\n  gold:\n    weight: 5\n    limits: {max_width: 1024, max_height: 1024}\n"
        "  bronze: {weight: 1}\n"
        "worker:\n  tiers: [gold]\n"
    )
    monkeypatch.setenv("GENJOB_CONFIG_FILE", str(config))
    monkeypatch.setenv("GENJOB_REDIS__KEY_PREFIX", "staging")
    settings = GenjobSettings()
    assert list(settings.tiers) == ["gold", "bronze"]
    assert settings.tiers["gold"].limits.max_width == 1024
    assert settings.redis.key_prefix == "staging"


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENJOB_CONFIG_FILE", "/nonexistent/genjob.yaml")
    with pytest.raises(FileNotFoundError, match="GENJOB_CONFIG_FILE"):
        GenjobSettings()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"worker": {"tiers": ["gold"]}}, "worker.tiers names unknown tier"),
        ({"default_model": "missing"}, "default_model 'missing' is not among models"),
        ({"tiers": {}}, "at least one tier"),
        ({"tiers": {"Bad Name": {}}, "worker": {"tiers": ["Bad Name"]}}, "must be lowercase"),
        ({"tiers": {"a": {"spill_over_to": ["zzz"]}}, "worker": {"tiers": ["a"]}}, "unknown tier"),
        ({"results": {"backend": "s3"}}, "s3_bucket is required"),
        ({"redis": {"key_prefix": "has space"}}, "key_prefix"),
    ],
)
def test_inconsistent_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GenjobSettings(**kwargs)


def test_consumption_order_adds_spill_over_tiers_once() -> None:
    tiers = {
        "a": TierConfig(weight=3, spill_over_to=["b"]),
        "b": TierConfig(weight=2, spill_over_to=["c"]),
        "c": TierConfig(weight=1),
    }
    assert consumption_order(tiers, ["a"], spill_over=False) == ["a"]
    assert consumption_order(tiers, ["a", "b"], spill_over=True) == ["a", "b", "c"]
    assert ordered_tiers(tiers) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unknown tier"):
        consumption_order(tiers, ["x"], spill_over=False)
