"""The quickstart app under load while its store is killed -9: no request may fail.

An app doing ``incr`` on every request (a Starlette app with ``request.state.cache`` under two
uvicorn workers, and docs/quickstart.md's Flask app under two gthread workers) runs under
gunicorn with the plugin's config; load threads send real HTTP requests while the store is
killed three times. The supervisor restarts it in ~150 ms; the clients must wait for
it (counters and writes) instead of answering 500.

Run with ``-s`` to see the figures: errors, and per kill the time from the kill until the first
request sent after it succeeded, and the slowest request around the kill.
"""

from __future__ import annotations

import math
import os
import re
import signal
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from blinkstore_gunicorn.supervision.runtime import ping
from harness.gunicorn import Gunicorn, listening_unix_sockets, wait_until
from tests.test_docs import quickstart_app

pytestmark = pytest.mark.slow

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def index(request):
    hits = await request.state.cache.incr("hits")
    return PlainTextResponse(str(hits))


app = Starlette(routes=[Route("/", index)])
"""

LOAD_THREADS = 4
KILLS = 3
#: Bounds of the whole run: the load stops after this many requests or seconds, whichever first.
MAX_REQUESTS = 30_000
MAX_SECONDS = 90.0
#: Successful requests sent after a restart before the next kill (the app is clearly back).
SETTLE_REQUESTS = 100


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered, its status (0: no HTTP reply), its counter."""

    sent: float
    done: float
    status: int
    hits: int | None


def _first_number(text: str) -> int:
    match = re.search(r"\d+", text)
    assert match is not None, text
    return int(match.group())


class Load:
    """Threads sending ``GET /`` as fast as the server answers, recording every outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(LOAD_THREADS)]
        self.deadline = time.monotonic() + MAX_SECONDS

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self.stop.is_set() and len(self.outcomes) < MAX_REQUESTS:
                if time.monotonic() > self.deadline:
                    return
                sent = time.monotonic()
                try:
                    reply = client.get("/")
                except httpx.HTTPError:
                    self.outcomes.append(Outcome(sent, time.monotonic(), 0, None))
                    continue
                hits = _first_number(reply.text) if reply.status_code == 200 else None
                self.outcomes.append(Outcome(sent, time.monotonic(), reply.status_code, hits))

    def successes_sent_after(self, moment: float) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.sent > moment and o.status == 200]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@dataclass(frozen=True)
class Kill:
    """When the store was killed, and when its successor first answered PING."""

    at: float
    store_back: float


def _socket_path(store_pid: int) -> str:
    (path,) = listening_unix_sockets(store_pid)
    return path


def _kill_store_and_wait_for_the_app(server: Gunicorn, load: Load) -> Kill:
    """SIGKILL the store; return once the app served requests sent after the kill."""
    old = server.store_pid()
    path = _socket_path(old)
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    assert wait_until(lambda: server.store_pid() != old and ping(path, 0.5), 10.0, 0.002)
    store_back = time.monotonic()
    settled = wait_until(lambda: len(load.successes_sent_after(killed_at)) >= SETTLE_REQUESTS, 30)
    assert settled, f"the app did not recover: {server.log()[-3000:]}"
    return Kill(killed_at, store_back)


@pytest.mark.parametrize(
    ("source", "worker"),
    [
        pytest.param(STARLETTE_APP, ["-k", "uvicorn_worker.UvicornWorker"], id="starlette-uvicorn"),
        pytest.param(quickstart_app(), ["-k", "gthread", "--threads", "4"], id="quickstart-flask"),
    ],
)
def test_quickstart_counter_survives_store_kills_with_no_errors(
    tmp_path: Path, source: str, worker: list[str]
) -> None:
    (tmp_path / "quickstart_app.py").write_text(textwrap.dedent(source))
    args = [
        "-c",
        "python:blinkstore_gunicorn.conf",
        *worker,
        "--workers",
        "2",
        "--pythonpath",
        str(tmp_path),
        "quickstart_app:app",
    ]
    with Gunicorn(args, tmp_path, ready_path="/") as server:
        server.start()
        kills: list[Kill] = []
        with Load(server.url) as load:
            assert wait_until(lambda: len(load.successes_sent_after(0)) >= SETTLE_REQUESTS, 30.0)
            for _ in range(KILLS):
                kills.append(_kill_store_and_wait_for_the_app(server, load))
        outcomes = sorted(load.outcomes, key=lambda o: o.sent)
        after = [_first_number(httpx.get(server.url + "/", timeout=10.0).text) for _ in range(5)]
        log = server.log()

    failures = [o for o in outcomes if o.status != 200]
    print(f"\n{len(outcomes)} requests, {len(failures)} failed")
    ends = [kill.at for kill in kills[1:]] + [math.inf]
    for number, (kill, next_kill) in enumerate(zip(kills, ends, strict=True), 1):
        killed_at = kill.at
        sent_after = [o for o in outcomes if o.sent > killed_at and o.status == 200]
        recovered = min(o.done for o in sent_after) - killed_at
        around = [o for o in outcomes if o.sent <= killed_at + 1.0 and o.done >= killed_at]
        slowest = max(o.done - o.sent for o in around)
        errors = [o for o in failures if killed_at <= o.done < next_kill]
        error_window = max((o.done for o in errors), default=killed_at) - killed_at
        print(
            f"kill {number}: {len(errors)} errors over {error_window * 1000:.0f} ms; new store "
            f"answered PING after {(kill.store_back - killed_at) * 1000:.0f} ms; first request "
            f"sent after the kill answered after {recovered * 1000:.0f} ms; slowest request "
            f"around it {slowest * 1000:.0f} ms"
        )
        # The successor adopted the dead store's region, so the counter goes on from every
        # increment acknowledged before the kill; only a kill in the middle of its write drops
        # the key (never served half-written), and the count starts again from 1.
        first_after = min(o.hits or 0 for o in sent_after)
        assert first_after == 1 or first_after > max(
            o.hits or 0 for o in outcomes if o.done < killed_at
        )
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}:\n{log[-30000:]}"
    # The counter keeps counting: one more per request.
    assert after == list(range(after[0], after[0] + 5))
