"""Timestamps on the wire: epoch milliseconds as RFC 3339 UTC with milliseconds."""

from __future__ import annotations

import time


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds (`2026-11-23T05:57:17.042Z`)."""
    if not ms:
        return None
    seconds, millis = divmod(int(ms), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"
