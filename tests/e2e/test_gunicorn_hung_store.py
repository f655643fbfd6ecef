"""The store the gunicorn master started is stopped (``kill -STOP``): the app keeps answering.

Real gunicorn with the plugin's config, two workers (uvicorn with ``AsyncCache``, then gthread
with ``Cache``), an app with a ``get_or_set`` endpoint and a plain ``get`` endpoint. With the
store stopped (alive, accepting connections, answering nothing) every response must come
within the client timeout (2 s, the default) plus a margin, as a normal response computed
without the cache, never a 5xx. The supervisor watches for the store's exit, not for its
answers, so it leaves a stopped store alone: after SIGCONT the same store process serves
again and the cache works. Run with ``-s`` to see each response's time.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from blinkstore_gunicorn.client._core import DEFAULT_TIMEOUT
from harness.gunicorn import Gunicorn, wait_until

pytestmark = pytest.mark.slow

#: What one response may take while the store does not answer.
BOUND = DEFAULT_TIMEOUT + 1.0
REQUESTS = 12

STARLETTE_APP = """
import uuid

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def computed(request):
    async def loader():
        return uuid.uuid4().hex

    key = request.query_params["key"]
    return JSONResponse({"value": await request.state.cache.get_or_set(key, loader, ttl=60)})


async def plain(request):
    key = request.query_params["key"]
    return JSONResponse({"value": await request.state.cache.get(key, "absent")})


app = Starlette(routes=[Route("/computed", computed), Route("/plain", plain)])
"""

WSGI_APP = """
import json
import uuid
from urllib.parse import parse_qs


def app(environ, start_response):
    cache = environ["blinkstore.cache"]
    key = parse_qs(environ["QUERY_STRING"])["key"][0]
    if environ["PATH_INFO"] == "/computed":
        value = cache.get_or_set(key, lambda: uuid.uuid4().hex, ttl=60)
    else:
        value = cache.get(key, "absent")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"value": value}).encode()]
"""


def _cached(client: httpx.Client, key: str) -> bool:
    """Whether ``/computed`` answers from the cache: the same value twice in a row."""
    first = client.get("/computed", params={"key": key})
    second = client.get("/computed", params={"key": key})
    return first.status_code == second.status_code == 200 and first.json() == second.json()


@pytest.mark.parametrize(
    ("source", "worker"),
    [
        pytest.param(STARLETTE_APP, ["-k", "uvicorn_worker.UvicornWorker"], id="uvicorn-async"),
        pytest.param(WSGI_APP, ["-k", "gthread", "--threads", "4"], id="gthread-sync"),
    ],
)
def test_a_stopped_store_costs_each_request_at_most_the_timeout(
    tmp_path: Path, source: str, worker: list[str]
) -> None:
    (tmp_path / "hung_store_app.py").write_text(textwrap.dedent(source))
    args = [
        "-c",
        "python:blinkstore_gunicorn.conf",
        *worker,
        "--workers",
        "2",
        "--pythonpath",
        str(tmp_path),
        "hung_store_app:app",
    ]
    with Gunicorn(args, tmp_path, ready_path="/plain?key=ready") as server:
        server.start()
        # A connection per request, so that every worker gets some (and meets the outage).
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=server.url, timeout=30.0, limits=no_keepalive) as client:
            assert wait_until(lambda: _cached(client, "warm"), 30.0)
            store = server.store_pid()
            replies: list[tuple[str, float, httpx.Response]] = []
            os.kill(store, signal.SIGSTOP)
            try:
                for number in range(REQUESTS):
                    path = "/computed" if number % 2 else "/plain"
                    started = time.monotonic()
                    reply = client.get(path, params={"key": f"during-{number}"})
                    replies.append((path, time.monotonic() - started, reply))
                # A stopped process has not exited: the supervisor does not replace it.
                still = server.store_pid()
            finally:
                os.kill(store, signal.SIGCONT)
            assert wait_until(lambda: _cached(client, "after"), 30.0), server.log()[-5000:]
            after = server.store_pid()

    report = "\n".join(
        f"{path}: {took:.2f}s {r.status_code} {r.text[:80]}" for path, took, r in replies
    )
    print(f"\n{report}")  # the figures, with -s
    assert all(reply.status_code == 200 for _, _, reply in replies), report
    assert all(took <= BOUND for _, took, _ in replies), report
    for path, _, reply in replies:
        value = reply.json()["value"]
        if path == "/plain":
            assert value == "absent", report
        else:
            assert isinstance(value, str) and len(value) == 32, report  # computed: a uuid
    assert still == store == after
