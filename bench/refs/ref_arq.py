"""Reference: arq, one worker process in burst mode with its default settings (max_jobs=10).

arq polls its queue every `poll_delay` (0.5 s) and reads at most 100 ids per poll, which caps
it near 200 jobs/s; `--tuned` polls every 10 ms instead.
"""

from __future__ import annotations

import asyncio
import time

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from refcommon import DoneCounter, parse_args, report


async def noop(ctx: dict) -> None:
    """The no-op job."""


async def run() -> None:
    args = parse_args()
    settings = RedisSettings.from_dsn(args.url)
    pool = await create_pool(settings)
    for _ in range(args.warmup):
        await pool.enqueue_job("noop")
    started = time.perf_counter()
    for _ in range(args.jobs):
        await pool.enqueue_job("noop")
    enqueue_s = time.perf_counter() - started
    done = DoneCounter(args.warmup, args.jobs)

    async def after_job_end(ctx: dict) -> None:
        done.job_done()

    worker = Worker(
        functions=[noop],
        redis_settings=settings,
        burst=True,
        after_job_end=after_job_end,
        handle_signals=False,
        poll_delay=0.01 if args.tuned else 0.5,
    )
    await worker.main()
    await worker.close()
    report("arq_tuned" if args.tuned else "arq", args.jobs, enqueue_s, done)


if __name__ == "__main__":
    asyncio.run(run())
