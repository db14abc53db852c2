"""genjob: the shared core (job schema, tiers, settings, Redis keys and the queue protocol)."""

__version__ = "0.1.0"
