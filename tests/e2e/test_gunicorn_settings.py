"""gunicorn's chdir, pidfile, daemon and reload settings with the plugin, end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import (
    APPS,
    CONF,
    alive,
    descendants,
    free_port,
    get,
    gunicorn,
    kill_all,
    listening_unix_sockets,
    parent_of,
    wait_until,
    workers_booted,
)

pytestmark = pytest.mark.slow

RELOAD_APP = """
import json, os

VERSION = "@VERSION@"


def app(environ, start_response):
    cache = environ["blinkstore.cache"]
    key = environ.get("QUERY_STRING") or "k"
    if environ["PATH_INFO"] == "/set":
        cache.set(key, VERSION)
    body = {"version": VERSION, "value": cache.get(key), "pid": os.getpid()}
    data = json.dumps(body).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [data]
"""


def round_trip(base: str) -> None:
    key, value = uuid.uuid4().hex, uuid.uuid4().hex
    assert get(f"{base}/set?key={key}&value={value}")["wrapped"] is True
    assert get(f"{base}/get?key={key}")["value"] == value


def test_chdir_loads_the_app_there_and_shares_the_store(tmp_path: Path):
    site, launch = tmp_path / "site", tmp_path / "launch"
    site.mkdir()
    launch.mkdir()
    (site / "site_app.py").write_text("from wsgi_app import app  # noqa: F401\n")
    with gunicorn([*CONF, "--chdir", str(site), "-w", "2", "site_app:app"], launch) as s:
        round_trip(s.url)
        for worker in s.worker_pids():
            assert os.readlink(f"/proc/{worker}/cwd") == str(site)


def test_pidfile_is_written_and_removed_with_the_store(tmp_path: Path):
    pidfile = tmp_path / "gunicorn.pid"
    with gunicorn([*CONF, "--pid", str(pidfile), "-w", "1", "wsgi_app:app"], tmp_path) as s:
        round_trip(s.url)
        assert int(pidfile.read_text()) == s.pid
        store = s.store_pid()
        s.wait_workers_booted(1)
        s.signal(signal.SIGTERM)
        assert s.wait_exit() == 0, s.log()
        assert not pidfile.exists()
        assert not alive(store)


def test_daemon_master_runs_and_stops_its_store(tmp_path: Path):
    port, pidfile, log = free_port(), tmp_path / "daemon.pid", tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k != "BLINKSTORE_URL"}
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        *CONF,
        "--daemon",
        "--pid",
        str(pidfile),
        "--error-logfile",
        str(log),
        "--bind",
        f"127.0.0.1:{port}",
        "--pythonpath",
        str(APPS),
        "--no-control-socket",
        "-w",
        "2",
        "wsgi_app:app",
    ]
    launcher = subprocess.run(command, cwd=tmp_path, env=env, timeout=60, check=False)
    assert launcher.returncode == 0
    known: list[int] = []
    try:
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30.0)
        master = int(pidfile.read_text())
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            try:
                return get(base + "/env")["url"] is not None
            except (httpx.HTTPError, AssertionError):
                return False

        assert wait_until(serving, 30.0), log.read_text()
        known[:] = [master, *descendants(master)]
        stores = [p for p in known if listening_unix_sockets(p)]
        assert len(stores) == 1, (known, log.read_text())
        assert parent_of(stores[0]) == master
        round_trip(base)
        directory = Path(get(base + "/env")["url"][len("unix://") :]).parent
        assert wait_until(lambda: workers_booted(master, 2), 30.0), log.read_text()
        os.kill(master, signal.SIGTERM)
        assert wait_until(lambda: not any(alive(p) for p in known), 20.0), log.read_text()
        assert not directory.exists()
        assert "Traceback" not in log.read_text()
    finally:
        kill_all(known)


def test_code_reload_restarts_workers_and_keeps_the_data(tmp_path: Path):
    module = tmp_path / "reload_app.py"
    module.write_text(RELOAD_APP.replace("@VERSION@", "1"))
    args = [*CONF, "--reload", "--pythonpath", str(tmp_path), "-w", "1", "reload_app:app"]
    with gunicorn(args, tmp_path, ready_path="/get") as s:
        store = s.store_pid()
        assert get(s.url + "/set?kept") == {"version": "1", "value": "1", "pid": s.worker_pids()[0]}
        module.write_text(RELOAD_APP.replace("@VERSION@", "2"))
        assert wait_until(lambda: get(s.url + "/get?kept")["version"] == "2", 30.0), s.log()
        assert get(s.url + "/get?kept")["value"] == "1"
        assert s.store_pid() == store
