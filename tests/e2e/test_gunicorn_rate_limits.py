"""slowapi and Flask-Limiter under gunicorn with 4 workers, counting in the store: a limit of N
per window admits exactly N requests, whichever workers serve them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import gunicorn

pytestmark = pytest.mark.slow

CONF = ["-c", "python:blinkstore_gunicorn.conf", "-w", "4"]
LIMIT = 10
REQUESTS = 40


def hammer(url: str) -> list[tuple[int, str]]:
    """REQUESTS concurrent GETs, each on its own connection; (status, serving pid) each."""

    def one(_: int) -> tuple[int, str]:
        reply = httpx.get(url, timeout=30.0)
        return reply.status_code, reply.headers["x-pid"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(REQUESTS)))


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
        replies = hammer(server.url + "/limited")
        statuses = sorted(status for status, _ in replies)
        assert statuses == [200] * LIMIT + [429] * (REQUESTS - LIMIT), server.log()
        # More than one worker answered, so the count was shared, not per process.
        assert len({pid for _, pid in replies}) >= 2
