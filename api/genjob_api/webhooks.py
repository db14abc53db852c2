"""Webhooks: on completion or failure, POST the job's final state to the URL given at submit.

Signature (Standard-Webhooks style): headers `Webhook-Id` (the job id), `Webhook-Timestamp`
(Unix seconds) and `Webhook-Signature: v1=<hex HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`,
where the secret is the API key's `webhook_secret`. Receivers recompute the HMAC, compare
in constant time and refuse old timestamps (`verify_signature` below does both).

Delivery: a background thread of the gateway reads the queue's final events (the stream
`RedisKeys.final_events`: succeeded, failed, cancelled; not the progress reports) through
its own consumer group, so each final event is handled by one gateway replica and an event
whose delivery did not finish (crash, restart) is read again; entries a dead replica left
unacknowledged are adopted after `ADOPT_IDLE_MS`. The backend says which events want a
webhook (`JobBackend.webhook_target`: local mode reads the job's queue metadata, cluster
mode the GenerationJob's annotation) and builds the payload (the job as `GET` shows it,
once it shows the final state: in cluster mode the operator mirrors it to the object a
moment after the event). A delivery is retried with exponential backoff (1, 2, 4, ... s,
`max_attempts` tries); a 2xx answer ends it. The event is acknowledged after the last try.
At-least-once: receivers deduplicate by `Webhook-Id`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import redis
import structlog

from genjob.keys import RedisKeys
from genjob.queue import EventReader, JobEvent

log = structlog.get_logger("genjob.api.webhooks")
CONSUMER_GROUP = "genjob-gateway-webhooks"
ADOPT_IDLE_MS = 10 * 60 * 1000  # longer than any delivery's retries take
READ_BATCH = 500
BATCH_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook to deliver: the job id the API shows, the URL, and the key that asked."""

    job_id: str
    url: str
    key_id: str
    tenant: str


def non_public_address(host: str) -> str | None:
    """The non-public address `host` names without a DNS lookup (an IP literal or `localhost`),
    else None. The submit path uses this: it must not block on DNS.

    Non-public: loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
    reserved, multicast, unspecified."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "localhost"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    return None if address.is_global else str(address)


class DestinationRefused(Exception):
    """The webhook's host is, or resolves to, a non-public address."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


@dataclass(frozen=True)
class PinnedRequest:
    """A webhook URL aimed at one resolved address, keeping the name for Host and TLS."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


def pin_to_addresses(url: str, allow_private: bool) -> list[PinnedRequest]:
    """Resolve the URL's host once and aim one request at each address it resolved to.

    The connection then goes to an address this check saw: no second DNS lookup that a
    hostile name server could answer differently (DNS rebinding). The Host header and the
    TLS server name (certificate check) stay the original name. Raises DestinationRefused
    unless `allow_private`, and OSError when the name does not resolve."""
    parsed = httpx.URL(url)
    host = parsed.host
    literal = non_public_address(host)
    if literal and not allow_private:
        raise DestinationRefused(literal)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not allow_private:
        for address in addresses:
            if not address.is_global:
                raise DestinationRefused(str(address))
    headers = {"Host": parsed.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return [PinnedRequest(parsed.copy_with(host=str(a)), headers, extensions) for a in addresses]


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str, headers: dict[str, str], body: bytes, tolerance_seconds: int = 300) -> bool:
    """For receivers: True when the signature matches and the timestamp is recent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered["webhook-timestamp"])
        expected = sign(secret, lowered["webhook-id"], timestamp, body)
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(expected, lowered.get("webhook-signature", ""))


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
        max_attempts: int = 6,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
        allow_private: bool = False,
    ) -> None:
        self.client = client
        self.allow_private = allow_private
        self.keys = keys
        self.target_of = target_of
        self.secret_of = secret_of
        self.payload_of = payload_of
        self.consumer = consumer
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        # No kept-alive connections: requests go to IP addresses (see pin_to_addresses), and a
        # pooled TLS connection made for one host name must not carry another's request.
        self.http = httpx.Client(
            timeout=timeout_seconds,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def _run(self) -> None:
        reader: EventReader | None = None
        next_adopt = 0.0
        while not self._stop.is_set():
            try:
                if reader is None:
                    reader = EventReader(
                        self.client,
                        self.keys,
                        self.consumer,
                        group=CONSUMER_GROUP,
                        stream=self.keys.final_events,
                    )
                events = reader.read(count=READ_BATCH, block_ms=1000)
                if time.monotonic() >= next_adopt:
                    next_adopt = time.monotonic() + 60
                    events += reader.adopt_idle(ADOPT_IDLE_MS)
                reader.ack(self._dispatch(reader, events))
            except redis.RedisError as exc:
                log.warning("webhook dispatcher cannot read events; retrying", error=str(exc))
                reader = None
                self._stop.wait(2)
                continue
            if events:
                # Let events gather: every job's final event passes here, and reading them in
                # batches keeps this thread's share of the gateway's CPU small under load.
                self._stop.wait(BATCH_PAUSE_SECONDS)

    def _dispatch(self, reader: EventReader, events: list[JobEvent]) -> list[JobEvent]:
        """Hand each event that wants a webhook to the delivery pool; return the rest (to ack)."""
        done = []
        for event in events:
            try:
                target = self.target_of(event)  # the stream holds final events only
            except Exception as exc:  # the Kubernetes API or Redis hiccuped: adopted again later
                log.warning("webhook target lookup failed", job_id=event.job_id, error=str(exc))
                continue
            if target is None:
                done.append(event)
            else:
                self.pool.submit(self._deliver_and_ack, reader, event, target)
        return done

    def _deliver_and_ack(self, reader: EventReader, event: JobEvent, target: WebhookTarget) -> None:
        try:
            self.deliver(target)
        except Exception as exc:
            log.warning("webhook delivery crashed", job_id=target.job_id, error=str(exc))
        finally:
            # On failure the event is read again after a restart; receivers deduplicate by Webhook-Id.
            with contextlib.suppress(redis.RedisError):
                reader.ack([event])

    def deliver(self, target: WebhookTarget) -> bool:
        """POST the job's final state to the target, retrying with backoff; True once a 2xx came."""
        secret = self.secret_of(target.key_id)
        if secret is None:
            log.warning("webhook skipped: the API key is gone or has no secret", job_id=target.job_id)
            return False
        body: bytes | None = None
        for attempt in range(1, self.max_attempts + 1):
            if body is None:
                payload = self.payload_of(target)
                body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
            if body is None:
                detail = "job not final (yet) or gone"
            else:
                try:
                    detail = self._post(target, secret, body)
                except DestinationRefused as exc:
                    log.warning(
                        "webhook refused: its host is not a public address (set "
                        "api.webhook_allow_private to allow it)",
                        job_id=target.job_id,
                        host=httpx.URL(target.url).host,
                        address=exc.address,
                    )
                    return False
                if not detail:
                    log.info("webhook delivered", job_id=target.job_id, attempt=attempt)
                    return True
            log.warning("webhook attempt failed", job_id=target.job_id, attempt=attempt, detail=detail)
            if attempt < self.max_attempts and self._stop.wait(self.backoff_seconds * 2 ** (attempt - 1)):
                return False
        return False

    def _post(self, target: WebhookTarget, secret: str, body: bytes) -> str:
        """One signed POST (to each resolved address in turn until one connects); an empty
        string on a 2xx answer, else what went wrong."""
        try:
            pinned = pin_to_addresses(target.url, self.allow_private)
        except OSError as exc:
            return f"cannot resolve the host: {exc}"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Webhook-Id": target.job_id,
            "Webhook-Timestamp": str(timestamp),
            "Webhook-Signature": sign(secret, target.job_id, timestamp, body),
            "User-Agent": "genjob-webhooks/1",
        }
        detail = ""
        for request in pinned:
            try:
                response = self.http.post(
                    request.url,
                    content=body,
                    headers={**headers, **request.headers},
                    extensions=request.extensions,
                )
            except httpx.ConnectError as exc:
                detail = f"ConnectError: {exc}"
                continue
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return detail
