"""Drain decisions (pure, with a fake clock) and the signal handlers that start a drain."""

from __future__ import annotations

import os
import signal

import pytest

from genjob_worker.drain import DrainController, estimated_remaining_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_not_draining_never_preempts() -> None:
    """Ensures a worker that received no signal runs jobs of any length."""
    drain = DrainController(10, clock=FakeClock())
    assert not drain.draining and drain.remaining_grace() == float("inf")
    assert not drain.should_preempt(10_000, 10.0)


def test_a_job_that_fits_the_grace_is_finished() -> None:
    """Ensures the estimate (steps left x seconds per step, pessimistic) decides against the grace left."""
    clock = FakeClock()
    drain = DrainController(30, clock=clock)
    drain.request()
    assert not drain.should_preempt(steps_left=10, seconds_per_step=1.0)  # ~13s < 30s
    clock.now += 20  # 10 s of grace left
    assert drain.should_preempt(steps_left=10, seconds_per_step=1.0)
    assert not drain.should_preempt(steps_left=2, seconds_per_step=1.0)
    assert estimated_remaining_seconds(0, 5.0) > 0  # finishing still costs the decode and the write


def test_a_second_request_preempts_at_once() -> None:
    """Ensures a second SIGTERM/SIGINT forces preemption even for a job that would fit."""
    drain = DrainController(3600, clock=FakeClock())
    drain.request()
    assert not drain.should_preempt(1, 0.01)
    drain.request()
    assert drain.forced and drain.should_preempt(1, 0.01)


@pytest.mark.parametrize("first, second", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)])
def test_signals_start_the_drain_then_force_it(first: int, second: int) -> None:
    """Ensures the installed handlers drain on the first signal and force on the second."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        drain = DrainController(60)
        drain.install_signal_handlers()
        os.kill(os.getpid(), first)
        assert drain.draining and not drain.forced and drain.event.is_set()
        os.kill(os.getpid(), second)
        assert drain.forced
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
