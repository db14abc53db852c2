"""Reference gateways for bench.gateway: the FastAPI endpoint a team would write around
Celery, arq or RQ instead of genjob (runs in that library's venv; stdlib, FastAPI, uvicorn).

Each app validates the same JSON body with a pydantic model, checks the API key
(`Authorization: Bearer <key>`), enqueues one job with the library's usual call and answers
202 with the job id, as the libraries' documentation shows:
- celery: `Celery.send_task` to a Redis broker, in a `def` endpoint (FastAPI runs blocking
  calls in its threadpool);
- arq: `ArqRedis.enqueue_job` in an `async def` endpoint, the pool created at start-up;
- rq: `Queue.enqueue` by function name, in a `def` endpoint.
No worker runs: jobs only queue, as in genjob's run.

    python ref_gateway.py celery|arq|rq PORT REDIS_URL API_KEY '{"loop": ..., "http": ...}'
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field


class GenerationRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str = Field("", max_length=2000)
    width: int = Field(512, ge=64, le=2048, multiple_of=8)
    height: int = Field(512, ge=64, le=2048, multiple_of=8)
    steps: int = Field(30, ge=1, le=150)
    seed: int | None = None


class Accepted(BaseModel):
    id: str
    status: str = "queued"


def _auth(api_key: str) -> Callable[[str], None]:
    def check(authorization: Annotated[str, Header()] = "") -> None:
        if authorization != f"Bearer {api_key}":
            raise HTTPException(401, "invalid API key")

    return check


def celery_app(url: str, auth: Any) -> FastAPI:
    from celery import Celery

    celery = Celery("gateway", broker=url)
    celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
    app = FastAPI()

    @app.post("/v1/generations", status_code=202, dependencies=[Depends(auth)])
    def submit(body: GenerationRequest) -> Accepted:
        return Accepted(id=celery.send_task("generate", kwargs=body.model_dump()).id)

    return app


def arq_app(url: str, auth: Any) -> FastAPI:
    from arq import create_pool
    from arq.connections import ArqRedis, RedisSettings

    pools: dict[str, ArqRedis] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pools["arq"] = await create_pool(RedisSettings.from_dsn(url))
        yield
        await pools["arq"].aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/generations", status_code=202, dependencies=[Depends(auth)])
    async def submit(body: GenerationRequest) -> Accepted:
        job = await pools["arq"].enqueue_job("generate", body.model_dump())
        assert job is not None  # None only for a repeated _job_id, which is not passed
        return Accepted(id=job.job_id)

    return app


def rq_app(url: str, auth: Any) -> FastAPI:
    import redis
    from rq import Queue

    queue = Queue("generate", connection=redis.Redis.from_url(url))
    app = FastAPI()

    @app.post("/v1/generations", status_code=202, dependencies=[Depends(auth)])
    def submit(body: GenerationRequest) -> Accepted:
        return Accepted(id=queue.enqueue("tasks.generate", **body.model_dump()).id)

    return app


APPS = {"celery": celery_app, "arq": arq_app, "rq": rq_app}

if __name__ == "__main__":
    name, port, url, key, server = sys.argv[1:6]
    uvicorn.run(
        APPS[name](url, _auth(key)),
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,
        **json.loads(server),
    )
