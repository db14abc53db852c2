"""genjob_api package."""
