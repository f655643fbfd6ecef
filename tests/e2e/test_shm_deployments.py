"""Workers read from the store's shared-memory region the way people deploy them: gunicorn with
``--preload`` (the region is mapped after the fork), gevent, and ``blinkstore run``.

Each test counts region reads with INFO's ``shm_keyspace_hits`` (read over the socket with
``?shm=off``, so the count itself adds nothing): if the workers fell back to the socket, the
values would still be right and only this count would tell.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from blinkstore_gunicorn import Cache
from harness.gunicorn import CONF, get, gunicorn, wait_until

pytestmark = pytest.mark.slow

DEPLOYMENTS = [
    pytest.param(["-k", "uvicorn_worker.UvicornWorker", "--preload", "asgi_app:app"], id="uvicorn"),
    pytest.param(["-k", "sync", "--preload", "wsgi_app:app"], id="sync"),
    pytest.param(["-k", "gevent", "wsgi_app:app"], id="gevent"),
]


def _region_hits(url: str) -> int:
    with Cache(url + "?shm=off") as cache:
        return int(cache.stats()["shm_keyspace_hits"])


@pytest.mark.parametrize("args", DEPLOYMENTS)
def test_workers_read_from_the_region(tmp_path: Path, args: list[str]) -> None:
    with gunicorn([*CONF, "-w", "2", *args], tmp_path) as server:
        store_url = get(server.url + "/env")["url"]
        key = f"k-{uuid.uuid4().hex}"
        assert get(f"{server.url}/set?key={key}&value=shared")["wrapped"] is True
        before = _region_hits(store_url)

        def read_until_the_region_answered() -> bool:
            # A fresh connection per GET, so both workers serve some of them; an asyncio
            # worker maps the region in a thread after its first read, which may use the socket.
            for _ in range(10):
                assert get(f"{server.url}/get?key={key}")["value"] == "shared"
            return _region_hits(store_url) - before >= 20

        assert wait_until(read_until_the_region_answered, 30.0, 0.01), server.log()


def test_a_command_under_blinkstore_run_reads_from_the_region(short_tmp: Path) -> None:
    script = (
        "from blinkstore_gunicorn import Cache\n"
        "with Cache() as cache:\n"
        "    cache.set('k', [1, 2])\n"
        "    before = cache.stats()['shm_keyspace_hits']\n"
        "    values = [cache.get('k') for _ in range(10)]\n"
        "    print(values == [[1, 2]] * 10, cache.stats()['shm_keyspace_hits'] - before)\n"
    )
    env = {**os.environ, "BLINKSTORE_RUNTIME_DIR": str(short_tmp)}
    env.pop("BLINKSTORE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "blinkstore_gunicorn", "run", "--", sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "10"], done.stderr
