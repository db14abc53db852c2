"""Server-sent events of one job: its state now, every change after, and the final state.

The stream is built on the backend's `get` (so it works the same in local and cluster
mode): the state is read every `poll_seconds` in a worker thread and an event is sent
when it changed. Events, in order: `status` (first, the current state), then `progress`
(step/total changed) and `status` (state changed), and last one of `succeeded`, `failed`
or `cancelled` carrying the whole job, after which the server closes the stream. A
comment line is sent every `keepalive_seconds` so proxies keep the connection open.
Polling a hash costs one Redis round trip per job and interval; the generator is async,
so an open stream holds no server thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import anyio

from genjob_api.models import Generation


def format_event(event: str, data: str, event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


async def job_events(
    read: Callable[[], Generation | None],
    poll_seconds: float = 0.25,
    keepalive_seconds: float = 15.0,
    max_seconds: float = 3600.0,
) -> AsyncIterator[bytes]:
    seq = 0
    last: Generation | None = None
    last_sent = time.monotonic()
    deadline = time.monotonic() + max_seconds
    yield b"retry: 2000\n\n"
    while time.monotonic() < deadline:
        current = await anyio.to_thread.run_sync(read)
        if current is None:
            seq += 1
            yield format_event("error", json.dumps({"code": "not_found", "message": "job is gone"}), seq)
            return
        if last is None or current.status != last.status:
            seq += 1
            event = current.status.value if current.status.is_final else "status"
            yield format_event(event, current.model_dump_json(by_alias=True), seq)
            last_sent = time.monotonic()
        elif current.progress and current.progress != last.progress:
            seq += 1
            yield format_event("progress", current.progress.model_dump_json(by_alias=True), seq)
            last_sent = time.monotonic()
        if current.status.is_final:
            return
        last = current
        if time.monotonic() - last_sent > keepalive_seconds:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
        await anyio.sleep(poll_seconds)
