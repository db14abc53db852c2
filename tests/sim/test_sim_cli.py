"""`genjob sim`: the table, --json, --plot, bundled scenario names and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genjob.cli import main

SMALL = """
name: cli-small
days: 1
spot_interruptions_per_hour: 0
workload:
  - tier: pro
    arrivals: {windows: [{start_hour: 1, hours: 0.5, rate_per_hour: 60}]}
    job: {model: sd15, width: 512, height: 512, steps: 30}
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def test_prints_a_table_per_tier_and_pool(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(small)]) == 0
    out = capsys.readouterr().out
    assert "wait p50" in out and "\npro " in out and "g4dn.xlarge" in out and "per month: GPU $" in out


def test_json_holds_the_summary(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(small), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    pro = data["summary"]["tiers"]["pro"]
    assert pro["jobs"] == pro["finished"] > 0
    assert data["summary"]["system"]["usd_per_month"] > 0


def test_plot_writes_three_pngs(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(small), "--plot", str(tmp_path / "plots")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["cli-small-cost.png", "cli-small-timeline.png", "cli-small-waits.png"]
    assert all((tmp_path / "plots" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)


def test_a_bundled_design_prints_its_hand_arithmetic_next_to_the_simulation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sim", "design-1m-images-g5-2xlarge", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    steps = {s["name"]: s for s in data["design"]["steps"]}
    assert steps["usd"]["matches"] is False and round(steps["usd"]["computed"], 2) == 207.0
    assert data["summary"]["tiers"]["pro"]["jobs"] > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "no-such-scenario"], "neither a file nor a bundled scenario"),
        (["sim"], "give a SCENARIO"),
        (["sim", "SMALL", "--recommend"], "needs at least one --target"),
        (["sim", "SMALL", "--recommend", "--target", "pro"], "write TIER=SECONDS"),
        (["sim", "SMALL", "--recommend", "--target", "gold=30"], "unknown tier"),
    ],
)
def test_bad_input_gets_a_clear_error(
    argv: list[str], message: str, small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(small) if a == "SMALL" else a for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_an_invalid_scenario_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("rate_per_hour: 60", "rate_per_hour: -1"))
    assert main(["sim", str(bad)]) == 2
    assert "rate_per_hour" in capsys.readouterr().err


def test_a_batch_size_the_worker_refuses_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL + "pools:\n  pro:\n    extraConfig: {batch_size: 40}\n")
    assert main(["sim", str(bad)]) == 2
    assert "batch_size must be an integer 1..16" in capsys.readouterr().err
