"""Loads the Lua scripts of the queue protocol (each with the shared prelude) and registers them.

Every state change is one script, so it is atomic and costs one Redis round trip.
The key layout each script expects is documented in its header (genjob/queue/lua/).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import redis
from redis.commands.core import Script

SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "touch",
    "finish",
    "requeue",
    "cancel",
    "reap",
    "redrive",
    "place",
    "workers",
    "resume",
    "unfinished",
)


def prelude() -> str:
    """The shared Lua functions (lua/_prelude.lua), also for scripts built on the queue's."""
    return (resources.files("genjob.queue") / "lua" / "_prelude.lua").read_text()


def script_source(name: str) -> str:
    """A script's Lua with the prelude."""
    return prelude() + "\n" + (resources.files("genjob.queue") / "lua" / f"{name}.lua").read_text()


@dataclass(frozen=True)
class QueueScripts:
    enqueue: Script
    claim: Script
    touch: Script
    finish: Script
    requeue: Script
    cancel: Script
    reap: Script
    redrive: Script
    place: Script
    workers: Script
    resume: Script
    unfinished: Script

    @classmethod
    def register(cls, client: redis.Redis) -> QueueScripts:
        return cls(**{name: client.register_script(script_source(name)) for name in SCRIPT_NAMES})
