"""genjob benchmarks: one script per question, `python -m bench.<name>` (see BENCHMARKS.md)."""
