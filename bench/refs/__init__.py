"""Reference queues for bench.queue: their pinned venvs and one driver script per library."""
