"""Arrival times of one tier over the simulated days: Poisson, a daily curve, bursts, a trace file.

The parts of an `Arrivals` add up. Each piece of constant rate is a Poisson process (exponential
gaps), drawn from the generator passed in, so a seed gives the same arrivals every time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genjob.sim.scenario import Arrivals

DAY = 86_400.0


def _poisson(rng: np.random.Generator, rate_per_hour: float, start: float, end: float) -> list[float]:
    if rate_per_hour <= 0 or end <= start:
        return []
    rate = rate_per_hour / 3600.0
    count = rng.poisson(rate * (end - start))
    return sorted(float(t) for t in rng.uniform(start, end, count))


def read_trace(path: Path) -> list[float]:
    """Arrival times in seconds from the start, one per line ('#' comments and blank lines skipped)."""
    times: list[float] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ValueError(f"trace file {path} does not exist") from None
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text.split(",", 1)[0])
        except ValueError:
            raise ValueError(f"{path}:{number}: {text!r} is not a number of seconds") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{path}:{number}: arrival time must be a finite number >= 0, got {value}")
        times.append(value)
    return sorted(times)


def arrival_times(spec: Arrivals, days: int, rng: np.random.Generator, base_dir: Path) -> list[float]:
    """Every arrival of `spec` within `days` days, sorted (seconds from the start)."""
    horizon = days * DAY
    times = _poisson(rng, spec.rate_per_hour, 0.0, horizon)
    for day in range(days):
        start = day * DAY
        if spec.hourly_rates is not None:
            for hour, rate in enumerate(spec.hourly_rates):
                times += _poisson(rng, rate, start + hour * 3600, start + (hour + 1) * 3600)
        for w in spec.windows:
            begin = start + w.start_hour * 3600
            times += _poisson(rng, w.rate_per_hour, begin, min(begin + w.hours * 3600, horizon))
        for b in spec.bursts:
            if b.every_day or day == 0:
                at = start + b.at_seconds
                if at < horizon:
                    times += [at] * b.jobs
    if spec.trace is not None:
        path = Path(spec.trace)
        times += [t for t in read_trace(path if path.is_absolute() else base_dir / path) if t < horizon]
    return sorted(times)


def priorities(spec: Arrivals, count: int, rng: np.random.Generator) -> list[int]:
    """A priority per arrival, drawn with the spec's shares."""
    levels = sorted(spec.priorities)
    shares = np.array([spec.priorities[p] for p in levels], dtype=float)
    return [int(p) for p in rng.choice(levels, size=count, p=shares / shares.sum())]
