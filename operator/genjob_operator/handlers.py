"""kopf glue: one startup handler owns every setting; the watch feeds the runtime's cache.

The operator uses only an on-event handler (plus startup/cleanup), so kopf itself never
writes to a GenerationJob: no finalizer of its own, no progress or diff-base annotations,
no handler Events. Every write is the runtime's, counted (see kube.py).
"""

from __future__ import annotations

from typing import Any

import kopf

from genjob.crd import GROUP, PLURAL, VERSION


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """All kopf settings, then the leader's loops (memo.make_runtime is set by main.py)."""
    settings.posting.enabled = False  # our own Events, one per transition, counted
    settings.peering.standalone = True  # leader election is a Lease (see leader.py)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.execution.max_workers = 4
    settings.networking.request_timeout = 60
    memo.runtime = memo.make_runtime()
    memo.runtime.start()
    logger.info("genjob operator started")


@kopf.on.cleanup()
def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    if runtime is not None:
        runtime.stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Cheap: update the cache and wake the loops that act on it."""
    runtime = getattr(memo, "runtime", None)
    if runtime is not None:
        runtime.observe(event.get("type"), event["object"])
