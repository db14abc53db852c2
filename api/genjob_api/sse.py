"""Server-sent events of one job: its state now, every change after, and the final state.

Served with sse-starlette (`EventSourceResponse`: framing, keep-alive pings, disconnect
handling). The stream reads the job through a `read` function every `poll_seconds` in a
worker thread and sends an event when it changed (`JobBackend.stream_reader`: the queue
record in both modes; cluster mode reads the GenerationJob once first, cluster_stream.py).
Events, in order: `status` (first, the current state), then `progress` (step/total
changed) and `status` (state changed), and last one of `succeeded`, `failed` or
`cancelled` carrying the whole job, after which the server closes the stream. The
generator is async, so an open stream holds no server thread; each costs one read per
interval, so one API key may hold at most `api.max_streams_per_key` streams open on one
replica (`StreamSlots`; more are answered 429 `too_many_streams`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import anyio
from sse_starlette import ServerSentEvent

from genjob_api.models import Generation

RETRY_MS = 2000
KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing an idle stream


class StreamSlots:
    """Counts the open streams of each API key on this replica (one event loop: no lock)."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self.open: dict[str, int] = {}

    def take(self, key_id: str) -> bool:
        if self.open.get(key_id, 0) >= self.per_key:
            return False
        self.open[key_id] = self.open.get(key_id, 0) + 1
        return True

    def give_back(self, key_id: str) -> None:
        left = self.open.get(key_id, 0) - 1
        if left > 0:
            self.open[key_id] = left
        else:
            self.open.pop(key_id, None)

    @contextmanager
    def held(self, key_id: str) -> Iterator[None]:
        """Give the slot taken for `key_id` back when the block ends (stream closed or cut)."""
        try:
            yield
        finally:
            self.give_back(key_id)


async def job_events(
    read: Callable[[], Generation | None],
    poll_seconds: float = 0.25,
    max_seconds: float = 3600.0,
) -> AsyncIterator[ServerSentEvent]:
    seq = 0
    last: Generation | None = None
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        current = await anyio.to_thread.run_sync(read)
        seq += 1
        event_id = str(seq)
        if current is None:
            yield ServerSentEvent(
                json.dumps({"code": "not_found", "message": "job is gone"}), event="error", id=event_id
            )
            return
        if last is None or current.status != last.status:
            event = current.status.value if current.status.is_final else "status"
            retry = RETRY_MS if last is None else None
            yield ServerSentEvent(
                current.model_dump_json(by_alias=True), event=event, id=event_id, retry=retry
            )
        elif current.progress and current.progress != last.progress:
            yield ServerSentEvent(
                current.progress.model_dump_json(by_alias=True), event="progress", id=event_id
            )
        if current.status.is_final:
            return
        last = current
        await anyio.sleep(poll_seconds)


async def held_stream(
    events: AsyncIterator[ServerSentEvent], slots: StreamSlots, key_id: str
) -> AsyncIterator[ServerSentEvent]:
    """`events`, giving the key's stream slot back however the stream ends."""
    with slots.held(key_id):
        async for event in events:
            yield event
