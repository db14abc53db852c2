"""Webhooks: on completion or failure, POST the job's final state to the URL given at submit.

Delivery: a background thread of the gateway runs an asyncio loop that reads the queue's
final events (the stream `RedisKeys.final_events`: succeeded, failed, cancelled; not the
progress reports) through its own consumer group, so each final event is handled by one
gateway replica and an event whose delivery did not finish (crash, restart) is read again.
The backend says which events want a webhook (`JobBackend.webhook_target`: local mode reads
the job's queue metadata, cluster mode the GenerationJob's annotation) and builds the
payload (the job as `GET` shows it, once it shows the final state: in cluster mode the
operator mirrors it to the object a moment after the event). Each delivery is one task
(`webhook_delivery.WebhookSender`: signed per Standard Webhooks, retried with backoff,
one deadline per attempt, the answer capped); the event is acknowledged after its last try.

Hostile receivers and fairness: a tenant has at most `per_tenant_concurrency` deliveries
in flight and the gateway `max_concurrency`; a tenant's deliveries wait for its own slots
before taking a shared one, so one tenant's slow or silent receivers delay only its own
webhooks. Entries in flight are never adopted again by this replica, and their idle time is
reset every adoption round so another replica does not adopt them either; entries a dead
replica left unacknowledged are adopted after `adopt_idle_ms`.
At-least-once: receivers deduplicate by `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis
import structlog

from genjob.keys import RedisKeys
from genjob.queue import EventReader, JobEvent
from genjob_api.webhook_delivery import DeliveryPolicy, WebhookSender, WebhookTarget

log = structlog.get_logger("genjob.api.webhooks")
CONSUMER_GROUP = "genjob-gateway-webhooks"
ADOPT_IDLE_MS = 10 * 60 * 1000
ADOPT_EVERY_SECONDS = 60.0
READ_BATCH = 500
BATCH_PAUSE_SECONDS = 0.2
MAX_WAITING = 10_000  # deliveries waiting for a slot before reading more events pauses


class WebhookDispatcher:
    """Consumes final job events and delivers the webhooks their jobs asked for."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        target_of: Callable[[JobEvent], WebhookTarget | None],
        secret_of: Callable[[str], str | None],
        payload_of: Callable[[WebhookTarget], dict[str, Any] | None],
        consumer: str,
        *,
        policy: DeliveryPolicy | None = None,
        per_tenant_concurrency: int = 4,
        max_concurrency: int = 256,
        adopt_idle_ms: int = ADOPT_IDLE_MS,
        adopt_every_seconds: float = ADOPT_EVERY_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        on_final: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.target_of = target_of
        self.secret_of = secret_of
        self.payload_of = payload_of
        self.consumer = consumer
        self.policy = policy or DeliveryPolicy()
        self.per_tenant_concurrency = per_tenant_concurrency
        self.max_concurrency = max_concurrency
        self.adopt_idle_ms = adopt_idle_ms
        self.adopt_every_seconds = adopt_every_seconds
        self.transport = transport
        self.on_final = on_final  # sees every final event read (the wait estimator learns from them)
        self.in_flight: dict[str, JobEvent] = {}  # stream id -> event, until acknowledged
        self._tenant_slots: dict[str, asyncio.Semaphore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="webhook-dispatcher", daemon=True
        )
        self._thread.start()
        started.wait(5)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended already
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self, started: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            started.set()
            await self._consume(self._stopping)

        asyncio.run(main())

    async def _consume(self, stopping: asyncio.Event) -> None:
        # No kept-alive connections: requests go to IP addresses (see pin_to_addresses), and a
        # pooled TLS connection made for one host name must not carry another's request.
        http = httpx.AsyncClient(
            follow_redirects=False,
            timeout=self.policy.attempt_deadline_seconds,
            limits=httpx.Limits(max_keepalive_connections=0, max_connections=None),
            transport=self.transport,
        )
        sender = WebhookSender(http, self.policy, time.time)
        shared = asyncio.Semaphore(self.max_concurrency)
        tasks: set[asyncio.Task[None]] = set()
        reader: EventReader | None = None
        next_adopt = 0.0
        try:
            while not stopping.is_set():
                if len(tasks) >= MAX_WAITING:
                    await _wait_or(stopping, BATCH_PAUSE_SECONDS)
                    continue
                try:
                    if reader is None:
                        reader = EventReader(
                            self.client,
                            self.keys,
                            self.consumer,
                            group=CONSUMER_GROUP,
                            stream=self.keys.final_events,
                        )
                    events = await asyncio.to_thread(reader.read, READ_BATCH, 1000)
                    if self.on_final is not None:
                        for event in events:
                            self.on_final(event)
                    if time.monotonic() >= next_adopt:
                        next_adopt = time.monotonic() + self.adopt_every_seconds
                        events += await self._adopt(reader)
                    done = await self._dispatch(events, reader, sender, shared, tasks)
                    await asyncio.to_thread(reader.ack, done)
                except redis.RedisError as exc:
                    log.warning("webhook dispatcher cannot read events; retrying", error=str(exc))
                    reader = None
                    await _wait_or(stopping, 2)
                    continue
                if events:
                    # Let events gather: every job's final event passes here, and reading them in
                    # batches keeps this thread's share of the gateway's CPU small under load.
                    await _wait_or(stopping, BATCH_PAUSE_SECONDS)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await http.aclose()

    async def _adopt(self, reader: EventReader) -> list[JobEvent]:
        """Entries left idle by a dead consumer, minus those this one is still delivering
        (whose idle time is reset first, so no other replica takes them over either)."""
        await asyncio.to_thread(reader.keep_claimed, list(self.in_flight.values()))
        adopted = await asyncio.to_thread(reader.adopt_idle, self.adopt_idle_ms)
        return [e for e in adopted if e.stream_id not in self.in_flight]

    async def _dispatch(
        self,
        events: list[JobEvent],
        reader: EventReader,
        sender: WebhookSender,
        shared: asyncio.Semaphore,
        tasks: set[asyncio.Task[None]],
    ) -> list[JobEvent]:
        """Start a delivery for each event that wants a webhook; return the rest (to ack)."""
        done = []
        for event in events:
            if event.stream_id in self.in_flight:
                continue
            try:
                target = await asyncio.to_thread(self.target_of, event)  # the stream holds final events only
            except Exception as exc:  # the Kubernetes API or Redis hiccuped: adopted again later
                log.warning("webhook target lookup failed", job_id=event.job_id, error=str(exc))
                continue
            if target is None:
                done.append(event)
                continue
            self.in_flight[event.stream_id] = event
            task = asyncio.create_task(self._deliver_and_ack(reader, sender, shared, event, target))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return done

    async def _deliver_and_ack(
        self,
        reader: EventReader,
        sender: WebhookSender,
        shared: asyncio.Semaphore,
        event: JobEvent,
        target: WebhookTarget,
    ) -> None:
        tenant_slots = self._tenant_slots.setdefault(
            target.tenant, asyncio.Semaphore(self.per_tenant_concurrency)
        )
        try:
            async with tenant_slots, shared:
                await self.deliver(sender, target, f"{target.job_id}:{event.stream_id}")
        except Exception as exc:
            log.warning("webhook delivery crashed", job_id=target.job_id, error=str(exc))
        finally:
            # On failure the event is read again after a restart; receivers deduplicate by webhook-id.
            with contextlib.suppress(redis.RedisError):
                await asyncio.to_thread(reader.ack, [event])
            self.in_flight.pop(event.stream_id, None)

    async def deliver(self, sender: WebhookSender, target: WebhookTarget, webhook_id: str) -> bool:
        """One webhook with its retries; True once a 2xx answer came."""
        secret = await asyncio.to_thread(self.secret_of, target.key_id)
        if secret is None:
            log.warning("webhook skipped: the API key is gone or has no secret", job_id=target.job_id)
            return False

        async def body_of() -> bytes | None:
            payload = await asyncio.to_thread(self.payload_of, target)
            return None if payload is None else json.dumps(payload, separators=(",", ":")).encode()

        return await sender.deliver(target, webhook_id, secret, body_of)


async def _wait_or(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `event` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
