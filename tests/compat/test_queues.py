"""Job queues through the server: a job enqueued by the test, run by a real worker process,
its result read back. arq (``arq --burst``), RQ (``rq worker --burst``) and Celery (a
solo-pool worker, the server as broker and result backend), on both servers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import redis
from arq.connections import RedisSettings, create_pool
from arq.jobs import Job
from celery import Celery
from rq import Queue

from tests.compat.compat_support import Server, skip_without
from tests.integration.integration_support import process_output, running_process

# Real worker processes, several seconds each: left out of `make test-fast`.
pytestmark = pytest.mark.slow

WORKER_DEADLINE = 90


def test_arq_burst_worker_runs_the_job(fresh: Server) -> None:
    async def enqueue() -> str:
        pool = await create_pool(RedisSettings.from_dsn(fresh.url))
        job = await pool.enqueue_job("arq_add", 2, 3)
        await pool.aclose()
        assert job is not None
        return job.job_id

    async def result(job_id: str) -> int:
        pool = await create_pool(RedisSettings.from_dsn(fresh.url))
        try:
            return await Job(job_id, pool).result(timeout=30)
        finally:
            await pool.aclose()

    job_id = asyncio.run(enqueue())
    worker = ["-m", "arq", "tests.compat.compat_apps.ArqWorker", "--burst"]
    with running_process(worker, env={"COMPAT_REDIS_URL": fresh.url}) as proc:
        assert proc.wait(WORKER_DEADLINE) == 0, process_output(proc)
    assert asyncio.run(result(job_id)) == 5


def test_rq_worker_runs_the_job(fresh: Server) -> None:
    # RQ keeps results in a stream, and names the worker's address from CLIENT LIST.
    skip_without(fresh, "XADD", "XREVRANGE", "CLIENT LIST")
    with redis.Redis.from_url(fresh.url) as connection:
        job = Queue("compat", connection=connection).enqueue("tests.compat.compat_apps.add", 2, 3)
        # The ``rq`` console script, run by this interpreter (it is a Python script).
        rq = str(Path(sys.executable).with_name("rq"))
        worker = [rq, "worker", "--burst", "--url", fresh.url, "compat"]
        worker += ["--worker-class", "tests.compat.compat_apps.PromptExitWorker"]
        with running_process(worker) as proc:
            assert proc.wait(WORKER_DEADLINE) == 0, process_output(proc)
            assert job.get_status(refresh=True) == "finished", process_output(proc)
            # RQ warns and carries on when a command is missing (CLIENT LIST, for one).
            assert "Warning" not in process_output(proc), process_output(proc)
        assert job.return_value(refresh=True) == 5


def test_celery_worker_round_trip(fresh: Server) -> None:
    client = Celery("compat", broker=fresh.url, backend=fresh.url)
    worker = ["-m", "celery", "-A", "tests.compat.compat_apps", "worker", "--pool", "solo"]
    worker += ["--loglevel", "INFO"]
    try:
        with running_process(worker, env={"COMPAT_REDIS_URL": fresh.url}) as proc:
            result = client.send_task("compat.add", args=(2, 3))
            try:
                assert result.get(timeout=WORKER_DEADLINE) == 5
            except Exception as exc:
                raise AssertionError(process_output(proc)) from exc
            # Celery logs a failing command and carries on: none may have failed.
            assert "ERROR/" not in process_output(proc), process_output(proc)
            # A warm shutdown on SIGTERM, within running_process's bound.
    finally:
        client.close()
