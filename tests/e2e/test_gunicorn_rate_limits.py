"""slowapi and Flask-Limiter under gunicorn with 4 workers, counting in the store: a limit of N
per window admits exactly N requests, whichever workers serve them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

CONF = ["-c", "python:blinkstore_gunicorn.conf", "-w", "4"]
LIMIT = 10
REQUESTS = 40


def hammer(url: str, count: int) -> list[tuple[int, str]]:
    """``count`` concurrent GETs, each on its own connection; (status, serving pid) each."""

    def one(_: int) -> tuple[int, str]:
        reply = httpx.get(url, timeout=30.0)
        return reply.status_code, reply.headers["x-pid"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize(
    ("worker_class", "app"),
    [
        pytest.param("uvicorn_worker.UvicornWorker", "slowapi_app:app", id="slowapi"),
        pytest.param("sync", "flask_limiter_app:app", id="flask-limiter"),
    ],
)
def test_exactly_n_requests_pass_across_workers(tmp_path: Path, worker_class: str, app: str):
    args = [*CONF, "-k", worker_class, app]
    env = {"LIMITED_PER_HOUR": str(LIMIT)}
    with gunicorn(args, tmp_path, env=env) as server:
        server.wait_workers_booted(4)
        replies = hammer(server.url + "/limited", REQUESTS)
        statuses = sorted(status for status, _ in replies)
        assert statuses == [200] * LIMIT + [429] * (REQUESTS - LIMIT), server.log()
        # The count is shared once two different workers refuse: counted per process, each
        # would have admitted LIMIT of its own first. Which worker accepts a connection is the
        # kernel's choice, so knock until a second one has refused (every reply must be 429).
        refusers = {pid for status, pid in replies if status == 429}
        deadline = time.monotonic() + 60.0
        while len(refusers) < 2 and time.monotonic() < deadline:
            more = hammer(server.url + "/limited", 16)
            assert {status for status, _ in more} == {429}, (more, server.log())
            refusers.update(pid for _, pid in more)
        assert len(refusers) >= 2, (refusers, server.log())
