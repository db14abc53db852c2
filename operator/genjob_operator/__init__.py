"""genjob_operator package."""
