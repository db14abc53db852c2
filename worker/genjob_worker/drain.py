"""Graceful termination: stop claiming on SIGTERM, finish or preempt the running job in time.

On the first SIGTERM (or SIGINT) the worker drains: it claims nothing more, and at every
step boundary it compares the running job's estimated remaining time with what is left of
`drain_grace_seconds` (counted from the signal). A job that fits is finished; one that does
not is stopped at the next step and requeued at the head of its queue with reason
Preempted (not a failed attempt). A second SIGTERM or SIGINT preempts at once.

The estimate is deliberately pessimistic: steps left x measured seconds per step x 1.2
(the measure includes prompt encoding), plus one second for the VAE decode, the PNG
encode and the store write.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import structlog

ESTIMATE_FACTOR = 1.2
FINISH_SECONDS = 1.0

log = structlog.get_logger()


def estimated_remaining_seconds(steps_left: int, seconds_per_step: float) -> float:
    """What finishing a job still costs, pessimistically (see the module docstring)."""
    return max(0, steps_left) * seconds_per_step * ESTIMATE_FACTOR + FINISH_SECONDS


class DrainController:
    """Shared drain state: set by signal handlers, read by the loop and the step guard."""

    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_seconds = grace_seconds
        self._clock = clock
        self._requested_at: float | None = None
        self._forced = False
        self.event = threading.Event()  # set once draining starts (wakes idle waits)

    @property
    def draining(self) -> bool:
        return self._requested_at is not None

    @property
    def forced(self) -> bool:
        return self._forced

    def request(self, *, force: bool = False) -> None:
        """Start draining; `force` (or a second request) preempts the running job at once."""
        if self._requested_at is not None:
            force = True
        else:
            self._requested_at = self._clock()
        self._forced = self._forced or force
        self.event.set()

    def remaining_grace(self) -> float:
        """Seconds left of the grace period (infinite when not draining)."""
        if self._requested_at is None:
            return float("inf")
        return self.grace_seconds - (self._clock() - self._requested_at)

    def should_preempt(self, steps_left: int, seconds_per_step: float) -> bool:
        """True when draining and the running job cannot finish within the remaining grace."""
        if not self.draining:
            return False
        if self._forced:
            return True
        return estimated_remaining_seconds(steps_left, seconds_per_step) > self.remaining_grace()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start the drain; a second one forces preemption (main thread only)."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            again = self.draining
            self.request()
            log.warning(
                "signal received",
                signal=signal.Signals(signum).name,
                action="preempt now" if again else "drain",
                grace_seconds=round(self.remaining_grace(), 1),
            )

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
