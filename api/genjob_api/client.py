"""A small httpx client of the gateway, used by `genjob generate`, `genjob queues` and `genjob dlq`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

DEFAULT_URL = "http://127.0.0.1:8000"
DEV_KEY_FILE = Path(".genjob/dev-api-key")


class GatewayError(RuntimeError):
    """The gateway answered with an error body (or not at all)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message


def resolve_key(explicit: str | None) -> str | None:
    """--api-key, else GENJOB_API_KEY, else the key `genjob up` wrote for local use."""
    if explicit:
        return explicit
    if os.environ.get("GENJOB_API_KEY"):
        return os.environ["GENJOB_API_KEY"]
    if DEV_KEY_FILE.is_file():
        return DEV_KEY_FILE.read_text().strip()
    return None


class GatewayClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            error = response.json()["error"]
            raise GatewayError(response.status_code, error["code"], error["message"])
        except (ValueError, KeyError, TypeError):
            raise GatewayError(response.status_code, "http_error", response.text[:300]) from None

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._check(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise GatewayError(
                0, "unreachable", f"cannot reach the gateway at {self.http.base_url}: {exc}"
            ) from None

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _json(self.request("POST", "/v1/generations", json=body, headers=headers))

    def get(self, job_id: str) -> dict[str, Any]:
        return _json(self.request("GET", f"/v1/generations/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return _json(self.request("DELETE", f"/v1/generations/{job_id}"))

    def image(self, job_id: str, index: int = 0) -> bytes:
        return self.request("GET", f"/v1/generations/{job_id}/images/{index}").content

    def queues(self) -> dict[str, Any]:
        return _json(self.request("GET", "/v1/queues"))

    def dead_letters(self, tier: str | None = None) -> list[dict[str, Any]]:
        params = {"tier": tier} if tier else {}
        letters: list[dict[str, Any]] = self.request("GET", "/v1/admin/dead-letters", params=params).json()
        return letters

    def redrive(self, job_id: str) -> dict[str, Any]:
        return _json(self.request("POST", f"/v1/admin/dead-letters/{job_id}/redrive"))

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) pairs of the job's SSE stream until the server closes it."""
        try:
            with connect_sse(self.http, "GET", f"/v1/generations/{job_id}/events", timeout=None) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    self._check(source.response)
                for sse in source.iter_sse():
                    # A keep-alive ping (a comment) after an event with an id comes out of httpx-sse
                    # as an event without data: not an event of the job.
                    if sse.data:
                        yield sse.event, sse.json()
        except httpx.TransportError as exc:
            raise GatewayError(0, "unreachable", f"event stream broke: {exc}") from None


def _json(response: httpx.Response) -> dict[str, Any]:
    """The gateway's JSON object (its shape is the OpenAPI document's; the CLI reads it as a dict)."""
    body: dict[str, Any] = response.json()
    return body
