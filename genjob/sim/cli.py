"""`genjob sim SCENARIO`: simulate a workload on genjob, print waits and cost; recommend chart values.

SCENARIO is a YAML file or the name of a bundled one (genjob/sim/scenarios/). Heavy imports
(simpy, numpy, matplotlib) happen when the command runs, so `genjob --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from genjob.settings import GenjobSettings

BUNDLED = Path(__file__).with_name("scenarios")


def scenario_path(name: str) -> Path:
    """A file path, or a bundled scenario's name (with or without .yaml)."""
    if not name:
        raise ValueError("give a SCENARIO (a YAML file or a bundled scenario's name) or --coldstart FILE")
    path = Path(name)
    if path.is_file():
        return path
    bundled = BUNDLED / (name if name.endswith(".yaml") else f"{name}.yaml")
    if bundled.exists():
        return bundled
    known = ", ".join(sorted(p.stem for p in BUNDLED.glob("*.yaml")))
    raise ValueError(f"scenario {name!r} is neither a file nor a bundled scenario ({known})")


def parse_targets(items: list[str]) -> dict[str, float]:
    targets: dict[str, float] = {}
    for item in items:
        tier, sep, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not tier or value <= 0:
            raise ValueError(f"--target {item!r}: write TIER=SECONDS, e.g. pro=30 (p95 wait in seconds)")
        targets[tier] = value
    return targets


def _run(args: argparse.Namespace, settings: GenjobSettings) -> int:
    try:
        return _sim(args)
    except ModuleNotFoundError as exc:
        print(f"genjob sim: {exc.name} is missing: pip install 'genjob[sim]'", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"genjob sim: {exc}", file=sys.stderr)
        return 2


def _sim(args: argparse.Namespace) -> int:
    from genjob.sim.handcalc import format_reproduction, load_design, reproduce
    from genjob.sim.inputs import load_calibration, load_catalog
    from genjob.sim.model import simulate
    from genjob.sim.results import format_table, summarize
    from genjob.sim.scenario import load_scenario

    if args.coldstart:
        return _coldstart(args.coldstart, args.json)
    path = scenario_path(args.scenario)
    scenario = load_scenario(path)
    if args.seed is not None:
        scenario = scenario.model_copy(update={"seed": args.seed})
    catalog, calibration = load_catalog(), load_calibration(scenario.environment, scenario.calibration)
    out: dict[str, Any] = {}
    text: list[str] = []
    design = load_design(path)
    if design is not None:
        steps = reproduce(design)
        out["design"] = {"title": design.title, "steps": [s.model_dump() for s in steps]}
        text += [format_reproduction(design, steps), ""]
    if args.recommend:
        from genjob.sim.recommend import recommend, values_fragment

        targets = parse_targets(args.target or [])
        if not targets:
            raise ValueError("--recommend needs at least one --target TIER=SECONDS (p95 wait)")

        def progress(line: str) -> None:
            if not args.json:
                print(f"recommend: {line}", file=sys.stderr)

        result = recommend(
            scenario, targets, catalog, calibration, search_days=args.search_days, progress=progress
        )
        best = result.best
        fragment = values_fragment(best.scenario, list(targets), catalog)
        out["recommendation"] = {
            "targets_p95_seconds": targets,
            "meets_targets_on_every_seed": result.meets,
            "worst_p95_over_target_across_seeds": result.worst_ratio,
            "p95_seconds_per_seed": [c.p95 for c in [best, *result.checks]],
            "usd_per_month_per_seed": [c.usd_per_month for c in [best, *result.checks]],
            "simulations": result.simulations,
            "values": fragment,
        }
        summary = best.summary
        verdict = "meets" if result.meets else "does NOT meet"
        text += [
            f"recommended values ({verdict} the p95 targets {targets} on {1 + len(result.checks)} seeds: "
            f"worst p95/target {result.worst_ratio:.2f}; ${best.usd_per_month:.2f}/month; "
            f"{result.simulations} simulations):",
            fragment,
        ]
        run = None
    else:
        run = simulate(scenario, catalog, calibration)
        summary = summarize(run)
    out["summary"] = summary
    text.append(format_table(summary))
    if args.plot:
        from genjob.sim.plots import write_plots

        if run is None:
            run = simulate(best.scenario, catalog, calibration)
        paths = write_plots(run, summary, Path(args.plot))
        out["plots"] = [str(p) for p in paths]
        text.append("plots: " + ", ".join(str(p) for p in paths))
    print(json.dumps(out, indent=2) if args.json else "\n".join(text))
    return 0


def _coldstart(path: str, as_json: bool) -> int:
    from genjob.sim.coldstart import compare, load_measurement

    measurement, scenario = load_measurement(path)
    result = compare(measurement, scenario)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        for key in ("p50", "p95"):
            print(
                f"{key}: measured {result.measured[key]:.2f}s simulated {result.simulated[key]:.2f}s "
                f"({100 * result.relative_error[key]:.0f}% off, tolerance {100 * result.tolerance:.0f}%)"
            )
        print("PASS" if result.passed else "FAIL", f"({result.source})")
    return 0 if result.passed else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="simulate a workload on genjob: waits, utilisation and cost per tier; recommend chart values",
        description=__doc__,
    )
    p.add_argument("scenario", nargs="?", default="", help="scenario YAML file or bundled scenario name")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots (timeline, waits, cost) into DIR")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument(
        "--recommend", action="store_true", help="search the cheapest pool values meeting --target"
    )
    p.add_argument("--target", action="append", metavar="TIER=SECONDS", help="p95 wait target (repeatable)")
    p.add_argument(
        "--search-days",
        type=int,
        metavar="N",
        help="--recommend: simulate N days per candidate (default: the scenario's days; fewer is faster)",
    )
    p.add_argument("--coldstart", metavar="MEASURED.json", help="compare with a measured cold-start file")
    p.set_defaults(func=_run)
