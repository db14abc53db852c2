"""The event stream: every state change and progress report of every job, in order.

Workers and the queue scripts append to one Redis stream; readers consume it through a
consumer group, so a reader that restarts first re-reads what it had received but not
acknowledged, then continues: nothing is missed. Events are acknowledged only after the
reader has acted on them (at-least-once; handlers must be idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis

from genjob.keys import EVENTS_CONSUMER_GROUP, RedisKeys


class EventType(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PROGRESS = "progress"
    RETRYING = "retrying"
    REQUEUED = "requeued"
    CANCEL_REQUESTED = "cancel_requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RESUMED = "resumed"  # a worker resumed the job from a denoising checkpoint
    WARNING = "warning"  # something the user should know that did not end the job (reason, message)


@dataclass(frozen=True)
class JobEvent:
    """One entry of the stream."""

    stream_id: str
    type: EventType
    job_id: str
    tier: str
    ts_ms: int
    fields: dict[str, str]

    @classmethod
    def from_entry(cls, stream_id: str, fields: dict[str, str]) -> JobEvent:
        rest = {k: v for k, v in fields.items() if k not in ("type", "job", "tier", "ts")}
        return cls(
            stream_id, EventType(fields["type"]), fields["job"], fields["tier"], int(fields["ts"]), rest
        )

    @property
    def meta(self) -> dict[str, Any]:
        raw = self.fields.get("meta")
        return json.loads(raw) if raw else {}

    @property
    def result(self) -> dict[str, Any] | None:
        raw = self.fields.get("result")
        return json.loads(raw) if raw else None

    def int_field(self, name: str) -> int | None:
        raw = self.fields.get(name)
        return int(float(raw)) if raw not in (None, "") else None


class EventReader:
    """Reads the event stream (or `stream`, e.g. `keys.final_events`) as one consumer of a
    consumer group."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        consumer: str,
        group: str = EVENTS_CONSUMER_GROUP,
        stream: str | None = None,
    ) -> None:
        self.client = client
        self.stream = stream or keys.events
        self.group = group
        self.consumer = consumer
        self._backlog_done = False
        self.ensure_group()

    def ensure_group(self) -> None:
        """Create the group at the stream's start if missing (a new group sees all history)."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 100, block_ms: int | None = 1000) -> list[JobEvent]:
        """The next events: first this consumer's unacknowledged backlog, then new ones."""
        if not self._backlog_done:
            backlog = self._read_group("0", count, None)
            if backlog:
                return backlog
            self._backlog_done = True
        return self._read_group(">", count, block_ms)

    def _read_group(self, start: str, count: int, block_ms: int | None) -> list[JobEvent]:
        reply = cast(
            "list[tuple[str, list[tuple[str, dict[str, str]]]]]",
            self.client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
            ),
        )
        entries = reply[0][1] if reply else []
        return [JobEvent.from_entry(i, f) for i, f in entries if f]

    def adopt_idle(self, min_idle_ms: int, count: int = 100) -> list[JobEvent]:
        """Take over entries another consumer received but never acknowledged (it died)."""
        reply = self.client.xautoclaim(self.stream, self.group, self.consumer, min_idle_ms, count=count)
        entries = cast("list[tuple[str, dict[str, str] | None]]", reply[1])
        return [JobEvent.from_entry(i, f) for i, f in entries if f]

    def keep_claimed(self, events: list[JobEvent]) -> None:
        """Reset the idle time of entries this consumer is still working on, so no other
        consumer's `adopt_idle` takes them over while their work runs."""
        if events:
            self.client.xclaim(
                self.stream, self.group, self.consumer, 0, [e.stream_id for e in events], justid=True
            )

    def ack(self, events: list[JobEvent]) -> None:
        if events:
            self.client.xack(self.stream, self.group, *[e.stream_id for e in events])


def read_history(client: redis.Redis, keys: RedisKeys, after: str = "-", count: int = 1000) -> list[JobEvent]:
    """Events in the stream after an id, without a group (for tests, the SSE replay, debugging)."""
    start = after if after == "-" else f"({after}"
    entries = cast("list[tuple[str, dict[str, str]]]", client.xrange(keys.events, min=start, count=count))
    return [JobEvent.from_entry(i, f) for i, f in entries]
