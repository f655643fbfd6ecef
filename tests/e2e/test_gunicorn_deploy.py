"""Production gunicorn settings with the plugin: preload, user/group, stops, secrets, orphans."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import (
    CONF,
    Gunicorn,
    alive,
    cmdline,
    descendants,
    get,
    gunicorn,
    wait_until,
)

pytestmark = pytest.mark.slow


def runtime_dir_of(server: Gunicorn) -> Path:
    url = get(server.url + "/env")["url"]
    return Path(url[len("unix://") :].split("?")[0]).parent


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (as gunicorn would: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


@contextlib.contextmanager
def open_directory() -> Iterator[Path]:
    """A working directory every user may enter (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="bs-") as path:
        os.chmod(path, 0o755)
        yield Path(path)


@pytest.mark.parametrize("app", ["preload_app:app", "preload_flask_app:app"])
def test_preload_app_module_level_clients_share_the_store(tmp_path: Path, app: str):
    args = [*CONF, "--preload", "-w", "2", app]
    with gunicorn(args, tmp_path, ready_path="/") as s:
        body = get(s.url + "/")
        assert body["url"].startswith("unix://"), body
        assert body["async_url"] == body["url"]
        counts: dict[int, list[int]] = {}
        for _ in range(200):
            reply = get(s.url + "/count")
            counts.setdefault(reply["pid"], []).append(reply["count"])
            if len(counts) >= 2 and sum(map(len, counts.values())) >= 20:
                break
        assert len(counts) >= 2, counts
        # One counter for every worker: together they count 1, 2, 3... without a repeat.
        every = sorted(c for values in counts.values() for c in values)
        assert every == list(range(1, len(every) + 1)), counts


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_and_group_give_the_store_to_the_workers_user():
    nobody = pwd.getpwnam("nobody")
    with open_directory() as cwd:
        args = [*CONF, "--user", "nobody", "--group", "nogroup", "-w", "2", "wsgi_app:app"]
        with gunicorn(args, cwd) as s:
            directory = runtime_dir_of(s)
            sock = directory / "store.sock"
            store = s.store_pid()
            assert os.stat(f"/proc/{store}").st_uid == nobody.pw_uid
            for worker in s.worker_pids():
                assert os.stat(f"/proc/{worker}").st_uid == nobody.pw_uid
            dir_stat, sock_stat = directory.lstat(), sock.lstat()
            assert (dir_stat.st_uid, stat.S_IMODE(dir_stat.st_mode)) == (nobody.pw_uid, 0o700)
            assert (sock_stat.st_uid, stat.S_IMODE(sock_stat.st_mode)) == (nobody.pw_uid, 0o600)
            key, value = uuid.uuid4().hex, uuid.uuid4().hex
            assert get(f"{s.url}/set?key={key}&value={value}")["wrapped"] is True
            assert get(f"{s.url}/get?key={key}")["value"] == value
            assert "Permission denied" not in s.log()
            s.wait_workers_booted(2)
            s.signal(signal.SIGTERM)
            assert s.wait_exit() == 0, s.log()
            assert not directory.exists()


def test_sigterm_to_every_process_stops_once_without_restart_or_traceback(tmp_path: Path):
    # systemd's KillMode=control-group (and `kill -TERM -- -PGID` over the whole tree) signals
    # every process at once: the master, the workers and the store.
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path) as s:
        directory = runtime_dir_of(s)
        store = s.store_pid()
        s.wait_workers_booted(2)
        everyone = [s.pid, *descendants(s.pid)]
        for pid in everyone:
            os.kill(pid, signal.SIGTERM)
        assert s.wait_exit() == 0, s.log()
        assert wait_until(lambda: not any(alive(p) for p in everyone), 5.0), s.log()
        log = s.log()
        assert "Traceback" not in log, log
        assert "restarting" not in log, log
        assert "SIGTERM ignored" in log, log
        assert not directory.exists()
        assert not alive(store)


@pytest.mark.parametrize(
    ("change", "reason"),
    [("loosened", "is not private"), ("symlink", "replaced by a symlink")],
)
def test_runtime_directory_that_changed_is_refused_not_recreated(
    tmp_path: Path, change: str, reason: str
):
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path) as s:
        directory = runtime_dir_of(s)
        decoy = tmp_path / "decoy"
        decoy.mkdir(mode=0o700)
        if change == "loosened":
            os.chmod(directory, 0o777)
        else:
            directory.rename(tmp_path / "moved")
            directory.symlink_to(decoy)
        # The store dies; the master must not bind in what is there now.
        os.kill(s.store_pid(), signal.SIGKILL)
        try:
            assert wait_until(lambda: reason in s.log(), 5.0), s.log()
            assert "not restarted" in s.log()
            # Not even the warm standby stays: nothing may bind there any more.
            assert wait_until(lambda: not s.store_processes(), 5.0), s.log()
            assert not list(decoy.iterdir())
        finally:
            if change == "symlink":
                directory.unlink()
                (tmp_path / "moved").rename(directory)


def test_password_reaches_neither_logs_nor_command_lines(tmp_path: Path):
    secret = "pa55-" + uuid.uuid4().hex
    (tmp_path / "gunicorn.conf.py").write_text(f"blinkstore_password = {secret!r}\n")
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path) as s:
        assert get(f"{s.url}/set?key=k&value=v")["wrapped"] is True
        s.wait_workers_booted(2)
        workers = set(s.worker_pids())
        s.signal(signal.SIGHUP)
        assert wait_until(lambda: not set(s.worker_pids()) & workers, 20.0), s.log()
        assert wait_until(lambda: "reload keeps the store" in s.log(), 20.0), s.log()
        os.kill(s.store_pid(), signal.SIGKILL)
        assert wait_until(lambda: "restarting" in s.log(), 20.0), s.log()
        s.store_pid()
        for pid in [s.pid, *descendants(s.pid)]:
            assert secret not in cmdline(pid), pid
        assert secret not in s.log()
        assert "password=***" in s.log()


@pytest.mark.parametrize(
    ("worker_class", "app"),
    [
        ("sync", "wsgi_app:app"),
        ("gthread", "wsgi_app:app"),
        ("gevent", "wsgi_app:app"),
        ("uvicorn_worker.UvicornWorker", "asgi_app:app"),
        ("asgi", "asgi_app:app"),
    ],
)
def test_master_sigkill_leaves_no_process_and_no_bound_port(
    tmp_path: Path, worker_class: str, app: str
):
    args = [*CONF, "-w", "2", "-k", worker_class, "--graceful-timeout", "3", app]
    with gunicorn(args, tmp_path) as s:
        # Keep the workers busy with an open keep-alive connection, as real traffic does.
        client = httpx.Client(base_url=s.url, timeout=10.0)
        client.get("/env")
        # Both workers booted, the store and its warm standby running.
        assert wait_until(
            lambda: len(s.worker_pids()) == 2 and len(s.store_processes()) == 2, 10.0
        ), s.log()
        everyone = descendants(s.pid)
        assert len(everyone) == 4, [cmdline(p) for p in everyone]
        os.kill(s.pid, signal.SIGKILL)
        try:
            assert wait_until(lambda: not any(alive(p) for p in everyone), 10.0), (
                [(p, cmdline(p)) for p in everyone if alive(p)],
                s.log(),
            )
            assert wait_until(lambda: port_is_free(s.port), 5.0)
        finally:
            client.close()
