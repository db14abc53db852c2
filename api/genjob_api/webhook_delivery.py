"""One webhook delivery: where it may go, how it is signed, and how long a receiver may hold it.

Signature: the Standard Webhooks specification (https://www.standardwebhooks.com), so a
receiver verifies with any of its libraries. Headers `webhook-id` (the same on every retry
of one final event), `webhook-timestamp` (Unix seconds) and `webhook-signature:
v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. The key is the API key's
`webhook_secret`: a `whsec_<base64>` secret (what `genjob-api keys` makes) signs with the
decoded bytes, as the specification says; any other secret signs with its UTF-8 bytes
(receivers pass those bytes to the library).

Destination: public addresses only unless `api.webhook_allow_private`, resolved once per
attempt and connected to as checked (genjob.destinations: no DNS rebinding).

A hostile receiver cannot hold the gateway: each attempt has one overall deadline (connect,
send, headers and body together, not per read), the answer is streamed and at most
`response_cap_bytes` of it read before the connection is closed, and retries (tenacity,
exponential backoff) wait without holding any connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from genjob.destinations import DestinationRefused, PinnedRequest, pin_to_addresses

log = structlog.get_logger("genjob.api.webhooks")
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook to deliver: the job id the API shows, the URL, and the key that asked."""

    job_id: str
    url: str
    key_id: str
    tenant: str


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard one delivery tries, and what a receiver is allowed to cost."""

    max_attempts: int = 6
    backoff_seconds: float = 1.0  # before attempt n+1: backoff x 2^(n-1), at most backoff_max
    backoff_max_seconds: float = 60.0
    attempt_deadline_seconds: float = 10.0
    response_cap_bytes: int = 64 * 1024
    allow_private: bool = False


class AttemptFailed(Exception):
    """One attempt did not end with a 2xx answer (retried)."""


def signing_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret (see the module docstring)."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
    return secret.encode()


def signature_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


class WebhookSender:
    """Delivers one webhook with retries over a shared async HTTP client."""

    def __init__(self, http: httpx.AsyncClient, policy: DeliveryPolicy, clock: Callable[[], float]) -> None:
        self.http = http
        self.policy = policy
        self.clock = clock

    async def deliver(
        self,
        target: WebhookTarget,
        webhook_id: str,
        secret: str,
        body_of: Callable[[], Awaitable[bytes | None]],
    ) -> bool:
        """POST the body (read once, when it first exists) until a 2xx answer; True when one came."""
        policy = self.policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait_exponential(multiplier=policy.backoff_seconds, max=policy.backoff_max_seconds),
            retry=retry_if_exception_type(AttemptFailed),
        )
        body: bytes | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    if body is None:
                        body = await body_of()
                    if body is None:
                        self._failed(target, number, "job not final (yet) or gone")
                    else:
                        await self._attempt(target, webhook_id, secret, body, number)
        except RetryError:
            return False
        except DestinationRefused as exc:
            log.warning(
                "webhook refused: its host is not a public address "
                "(set api.webhook_allow_private to allow it)",
                job_id=target.job_id,
                host=httpx.URL(target.url).host,
                address=exc.address,
            )
            return False
        log.info("webhook delivered", job_id=target.job_id)
        return True

    def _failed(self, target: WebhookTarget, attempt: int, detail: str) -> None:
        log.warning("webhook attempt failed", job_id=target.job_id, attempt=attempt, detail=detail)
        raise AttemptFailed(detail)

    async def _attempt(
        self, target: WebhookTarget, webhook_id: str, secret: str, body: bytes, number: int
    ) -> None:
        deadline = self.policy.attempt_deadline_seconds
        try:
            pinned = await asyncio.to_thread(pin_to_addresses, target.url, self.policy.allow_private)
        except OSError as exc:
            self._failed(target, number, f"cannot resolve the host: {exc.strerror or type(exc).__name__}")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "genjob-webhooks/1",
            **signature_headers(secret, webhook_id, int(self.clock()), body),
        }
        detail = "no address answered"
        try:
            async with asyncio.timeout(deadline):
                for request in pinned:
                    try:
                        status = await self._post(request, headers, body)
                    except httpx.ConnectError:
                        detail = f"cannot connect to {request.url.host}"
                        continue
                    if 200 <= status < 300:
                        return
                    detail = f"HTTP {status}"
                    break
        except TimeoutError:
            detail = f"no complete answer within the {deadline:g} s attempt deadline"
        except httpx.HTTPError as exc:
            detail = type(exc).__name__
        self._failed(target, number, detail)

    async def _post(self, request: PinnedRequest, headers: dict[str, str], body: bytes) -> int:
        """One POST; reads at most response_cap_bytes of the answer, then closes the connection."""
        async with self.http.stream(
            "POST",
            request.url,
            content=body,
            headers={**headers, **request.headers},
            extensions=request.extensions,
        ) as response:
            read = 0
            with contextlib.suppress(httpx.StreamConsumed):  # an answer read already (test transports)
                async for chunk in response.aiter_raw():  # raw: a compressed answer is not inflated
                    read += len(chunk)
                    if read >= self.policy.response_cap_bytes:
                        break
            return response.status_code
