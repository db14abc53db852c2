"""genjob_worker package."""
