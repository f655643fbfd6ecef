"""Host-wide locks under real gunicorn: 4 uvicorn workers sharing one store."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import gunicorn, wait_until
from tests.e2e.test_gunicorn_stampede import ARGS as STAMPEDE_ARGS
from tests.e2e.test_gunicorn_stampede import _wait_for_workers

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

# The stampede tests' 4 uvicorn workers, serving the lock app.
ARGS = [*STAMPEDE_ARGS[:-1], "locks_app:app"]
# 4 sync workers with 8 threads each: the blocking client's locks.
GTHREAD_ARGS = [*STAMPEDE_ARGS[:2], "-k", "gthread", "--threads", "8", "-w", "4"]
BUMPS = 200
TAKERS = 6


@pytest.mark.parametrize(
    "args",
    [ARGS, [*GTHREAD_ARGS, "locks_wsgi_app:app"]],
    ids=["uvicorn-AsyncCache", "gthread-Cache"],
)
def test_a_counter_bumped_non_atomically_under_the_lock_ends_exact(
    tmp_path: Path, args: list[str]
) -> None:
    name, key = f"lock-{uuid.uuid4().hex}", f"count-{uuid.uuid4().hex}"

    async def scenario(base: str) -> None:
        # No keep-alive: gthread closes a connection idle for 2 s, and a request sent on it as
        # it closes is dropped ("Server disconnected"), which a loaded machine makes likely.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            path = f"{base}/bump?name={name}&key={key}"
            replies = await asyncio.gather(*(client.get(path) for _ in range(BUMPS)))
            assert all(reply.status_code == 200 for reply in replies)
            assert len({reply.json()["pid"] for reply in replies}) > 1  # spread over workers
            state = (await client.get(f"{base}/state?name={name}&key={key}")).json()
            assert state["count"] == BUMPS

    with gunicorn(args, tmp_path) as server:
        _wait_for_workers(server.url)
        asyncio.run(scenario(server.url))


def test_a_killed_holder_frees_the_lock_for_the_parked_waiters(tmp_path: Path) -> None:
    name = f"lock-{uuid.uuid4().hex}"

    async def scenario(base: str, workers: set[int], server_log: Callable[[], str]) -> None:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        state_url = f"{base}/state?name={name}&workers={','.join(map(str, workers))}"
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            held = asyncio.ensure_future(client.get(f"{base}/hold?name={name}"))
            # The takers go only once the lock is held: one sent beside /hold could take the
            # lock first and be done before the holder is killed.
            deadline = time.monotonic() + 30
            while (holder := (await client.get(state_url)).json()["holder"]) is None:
                assert time.monotonic() < deadline, f"/hold never took the lock: {server_log()}"
                assert not held.done(), f"/hold answered: {_outcome(held)}"
                await asyncio.sleep(0.01)
            takers = [
                asyncio.ensure_future(client.get(f"{base}/take?name={name}")) for _ in range(TAKERS)
            ]
            deadline = time.monotonic() + 30
            while True:
                waiting = (await client.get(state_url)).json()["waiting"]
                elsewhere = {int(pid) for pid in waiting} - {holder}
                if sum(waiting.values()) == len(takers):
                    if elsewhere:
                        break
                    # The kernel may hand every connection to the holder's worker: add takers on
                    # fresh connections until one waits on a worker that will survive.
                    fresh = httpx.AsyncClient(timeout=60, headers={"Connection": "close"})
                    takers.append(asyncio.ensure_future(_get_and_close(fresh, base, name)))
                assert time.monotonic() < deadline, f"no taker besides the holder: {waiting}"
                await asyncio.sleep(0.01)
            early = [_outcome(taker) for taker in takers if taker.done()]
            assert not early, f"the lock was not held: {early}, {server_log()}"
            # The lock has no timeout: only the holder's connection closing can free it.
            os.kill(holder, signal.SIGKILL)
            # Freed at once means long before the takers' 30 s wait could run out.
            done, _ = await asyncio.wait(takers, timeout=10)
            assert len(done) == len(takers), f"{len(takers) - len(done)} takers still wait"
            replies = [taker.result() for taker in takers if taker.exception() is None]
            # Takers the killed worker was serving fail with it; every other one got the lock.
            assert replies and all(reply.status_code == 200 for reply in replies)
            assert holder not in {reply.json()["pid"] for reply in replies}
            await asyncio.gather(held, return_exceptions=True)

    with gunicorn(ARGS, tmp_path) as server:
        workers = _wait_for_workers(server.url)
        asyncio.run(scenario(server.url, workers, server.log))
        assert wait_until(lambda: len(server.worker_pids()) == 4, timeout=30)


def _outcome(taker: asyncio.Future[httpx.Response]) -> str:
    """What a finished request gave: its status and body, or its exception."""
    error = taker.exception()
    if error is not None:
        return repr(error)
    reply = taker.result()
    return f"{reply.status_code} {reply.text[:300]}"


async def _get_and_close(client: httpx.AsyncClient, base: str, name: str) -> httpx.Response:
    async with client:
        return await client.get(f"{base}/take?name={name}")
