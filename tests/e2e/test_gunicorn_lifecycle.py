"""The store's life under a real gunicorn master: restarts, master death, reloads, recycling."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from blinkstore_gunicorn.supervision.runtime import ping
from harness.gunicorn import CONF, alive, get, gunicorn, wait_until

pytestmark = pytest.mark.slow


def socket_path(base: str) -> str:
    url = get(base + "/env")["url"]
    assert url.startswith("unix://")
    return str(url[len("unix://") :])


def put(base: str, key: str, value: str) -> None:
    assert get(f"{base}/set?key={key}&value={value}")["wrapped"] is True


def test_killed_store_is_back_and_requests_never_fail(tmp_path: Path):
    # How fast the store is back is a figure for `python -m bench.restart` (tens of ms with the
    # warm standby); here it only has to come back, with no request failing meanwhile.
    with gunicorn(
        [*CONF, "-w", "2", "-k", "gthread", "--threads", "4", "wsgi_app:app"], tmp_path
    ) as s:
        path = socket_path(s.url)
        put(s.url, "before", "1")
        statuses: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=s.url, timeout=10.0) as client:
                while not stop.is_set():
                    statuses.append(client.get("/get?key=before").status_code)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            assert wait_until(lambda: len(statuses) >= 20, 10.0, 0.01)
            old_store = s.store_pid()
            os.kill(old_store, signal.SIGKILL)
            assert wait_until(lambda: not ping(path, 0.05), 5.0, 0.005) or not alive(old_store)
            assert wait_until(lambda: ping(path, 0.1), 10.0, 0.01), s.log()
            # The cache works again through the workers' own reconnecting clients.
            key = f"after-{uuid.uuid4().hex}"
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    put(s.url, key, "2")
                    if get(f"{s.url}/get?key={key}")["value"] == "2":
                        break
                except AssertionError:
                    pass
                assert time.monotonic() < deadline, s.log()
                time.sleep(0.02)
            served = len(statuses)
            assert wait_until(lambda: len(statuses) >= served + 20, 10.0, 0.01)
        finally:
            stop.set()
            thread.join(15)
        assert s.store_pid() != old_store
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        assert "exited with signal SIGKILL" in s.log()
        # The outage is logged once per worker, through gunicorn's error log, not per request.
        outage_lines = [line for line in s.log().splitlines() if "unreachable" in line]
        assert len(outage_lines) <= 2, outage_lines
        assert all(line.startswith("[") for line in outage_lines), outage_lines


def test_master_sigkill_takes_the_store_and_its_socket_along(tmp_path: Path):
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path) as s:
        path = socket_path(s.url)
        s.store_pid()
        stores = s.store_processes()
        os.kill(s.pid, signal.SIGKILL)
        assert wait_until(lambda: not any(alive(p) for p in stores), 2.0), s.log()
        assert wait_until(lambda: not os.path.exists(os.path.dirname(path)), 0.5)


def test_graceful_stop_removes_store_socket_and_directory(tmp_path: Path):
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path) as s:
        path = socket_path(s.url)
        s.store_pid()
        stores = s.store_processes()
        s.wait_workers_booted(2)
        s.signal(signal.SIGTERM)
        assert s.wait_exit() == 0, s.log()
        assert not any(alive(p) for p in stores)
        assert not os.path.exists(os.path.dirname(path))


def test_hup_reload_keeps_the_store_and_its_data(tmp_path: Path):
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path) as s:
        put(s.url, "kept", "yes")
        s.wait_workers_booted(2)
        store, workers = s.store_pid(), set(s.worker_pids())
        s.signal(signal.SIGHUP)
        assert wait_until(lambda: not set(s.worker_pids()) & workers, 20.0), s.log()
        assert get(f"{s.url}/get?key=kept")["value"] == "yes"
        assert s.store_pid() == store


def test_recycled_killed_and_scaled_workers_keep_the_data(tmp_path: Path):
    args = [*CONF, "-w", "2", "--max-requests", "5", "wsgi_app:app"]
    with gunicorn(args, tmp_path) as s:
        put(s.url, "kept", "yes")
        store, workers = s.store_pid(), set(s.worker_pids())
        for _ in range(30):
            assert get(f"{s.url}/get?key=kept")["value"] == "yes"
        assert wait_until(lambda: set(s.worker_pids()) != workers, 10.0)
        os.kill(s.worker_pids()[0], signal.SIGKILL)
        s.signal(signal.SIGTTIN)
        assert wait_until(lambda: len(s.worker_pids()) == 3, 10.0), s.log()
        s.signal(signal.SIGTTOU)
        assert wait_until(lambda: len(s.worker_pids()) == 2, 10.0), s.log()
        assert get(f"{s.url}/get?key=kept")["value"] == "yes"
        assert s.store_pid() == store


def test_worker_killed_by_the_timeout_keeps_the_data(tmp_path: Path):
    with gunicorn([*CONF, "-w", "2", "--timeout", "2", "wsgi_app:app"], tmp_path) as s:
        put(s.url, "kept", "yes")
        store = s.store_pid()
        # gunicorn aborts the stuck worker; what the client gets back depends on the version.
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{s.url}/sleep?seconds=30", timeout=15.0)
        assert wait_until(lambda: "WORKER TIMEOUT" in s.log(), 10.0), s.log()
        assert get(f"{s.url}/get?key=kept")["value"] == "yes"
        assert s.store_pid() == store


def test_usr2_upgrade_gives_the_new_master_its_own_store(tmp_path: Path):
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path) as s:
        old_path = socket_path(s.url)
        old_store = s.store_pid()
        s.signal(signal.SIGUSR2)
        new_master: list[int] = []

        def find_new_master() -> bool:
            from harness.gunicorn import children, cmdline

            new_master[:] = [
                p
                for p in children(s.pid)
                if "gunicorn" in cmdline(p)
                and "blinkstore_gunicorn.supervision.child" not in cmdline(p)
                and any("blinkstore_gunicorn.supervision.child" in cmdline(c) for c in children(p))
            ]
            return bool(new_master)

        assert wait_until(find_new_master, 20.0), s.log()
        s.remember()
        # Retire the old master the way a deploy does: its workers go, then it exits.
        s.signal(signal.SIGTERM)
        s.wait_exit()
        assert not alive(old_store)
        assert not os.path.exists(os.path.dirname(old_path))
        # The new master keeps serving with its own, live store.
        assert wait_until(lambda: socket_path(s.url) != old_path, 10.0)
        new_path = socket_path(s.url)
        assert ping(new_path)
        put(s.url, "new", "1")
        assert get(f"{s.url}/get?key=new")["value"] == "1"
        os.kill(new_master[0], signal.SIGTERM)
        assert wait_until(lambda: not os.path.exists(os.path.dirname(new_path)), 20.0)
