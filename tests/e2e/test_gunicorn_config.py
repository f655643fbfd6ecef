"""Adoption forms, chained user hooks and settings, with real gunicorn masters."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import APPS, Gunicorn, cmdline, gunicorn, wait_until

pytestmark = pytest.mark.slow

USER_HOOKS = """
import os

workers = 2

def on_starting(server):
    with open("@DIR@/marker-on_starting", "w") as f:
        f.write(os.environ.get("BLINKSTORE_URL", "unset"))

def post_worker_init(worker):
    with open(f"@DIR@/marker-post_worker_init-{os.getpid()}", "w") as f:
        f.write(type(worker.wsgi).__name__)

def on_exit(server):
    with open("@DIR@/marker-on_exit", "w") as f:
        f.write("done")
"""


def env_of(base: str) -> dict:
    reply = httpx.get(base + "/env", timeout=10.0)
    assert reply.status_code == 200
    body: dict = reply.json()
    return body


def check_user_hooks_ran(cwd: Path, url: str) -> None:
    # Ours ran first: the user's on_starting already saw the store's URL.
    assert (cwd / "marker-on_starting").read_text() == url

    # A booted worker (its signal handlers set) may not have reached post_worker_init yet.
    def both_inits_written() -> bool:
        inits = list(cwd.glob("marker-post_worker_init-*"))
        return len(inits) >= 2 and all(p.read_text() for p in inits)

    assert wait_until(both_inits_written, 30.0), list(cwd.iterdir())
    # The user's post_worker_init ran before ours wrapped the app.
    assert {p.read_text() for p in cwd.glob("marker-post_worker_init-*")} == {"function"}


@pytest.mark.parametrize("form", ["python-module", "literal-file", "adopt-one-line", "env-config"])
def test_adoption_forms_chain_the_users_hooks_and_settings(tmp_path: Path, form: str):
    env: dict[str, str] = {}
    hooks = USER_HOOKS.replace("@DIR@", str(tmp_path))
    if form == "python-module":
        (tmp_path / "gunicorn.conf.py").write_text(hooks + "blinkstore_max_connections = 77\n")
        args = ["-c", "python:blinkstore_gunicorn.conf", "wsgi_app:app"]
    elif form == "literal-file":
        (tmp_path / "gunicorn.conf.py").write_text(hooks + "blinkstore_max_connections = 77\n")
        (tmp_path / "blinkstore_gunicorn.conf").write_text(
            "from blinkstore_gunicorn.conf import *\n"
        )
        args = ["-c", "blinkstore_gunicorn.conf", "wsgi_app:app"]
    elif form == "adopt-one-line":
        (tmp_path / "gunicorn.conf.py").write_text(
            hooks
            + "blinkstore_max_connections = 77\n"
            + "from blinkstore_gunicorn.gunicorn import adopt; adopt(globals())\n"
        )
        args = ["wsgi_app:app"]  # gunicorn reads ./gunicorn.conf.py itself
    else:
        other = tmp_path / "conf" / "service.py"
        other.parent.mkdir()
        other.write_text(hooks + "blinkstore_max_connections = 77\n")
        (tmp_path / "run").mkdir()
        env["BLINKSTORE_GUNICORN_CONFIG"] = str(other)
        args = ["-c", "python:blinkstore_gunicorn.conf", "wsgi_app:app"]
    cwd = tmp_path / "run" if form == "env-config" else tmp_path
    server = Gunicorn(args, cwd, env=env)
    try:
        server.start()
        url = env_of(server.url)["url"]
        assert url.startswith("unix://")
        assert env_of(server.url)["wrapped"] is True
        # `workers = 2` from the user's file applied; both booted before the stop below.
        server.wait_workers_booted(2)
        assert "--max-connections 77" in cmdline(server.store_pid())
        check_user_hooks_ran(tmp_path, url)
        server.signal(15)
        server.wait_exit()
        assert (tmp_path / "marker-on_exit").read_text() == "done"
    finally:
        server.close()


def test_wrapping_can_be_turned_off(tmp_path: Path):
    (tmp_path / "gunicorn.conf.py").write_text("blinkstore_wrap_app = False\n")
    with gunicorn(["-c", "python:blinkstore_gunicorn.conf", "wsgi_app:app"], tmp_path) as s:
        body = env_of(s.url)
        assert body["wrapped"] is False
        assert body["url"].startswith("unix://")  # the store still runs for explicit clients


def start_and_fail(tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """Run gunicorn expecting it to refuse to start; return its output."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--pythonpath",
            str(APPS),
            "--bind",
            "127.0.0.1:0",
            "--no-control-socket",
            "-c",
            "python:blinkstore_gunicorn.conf",
            "wsgi_app:app",
        ],
        check=False,
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("config", "env", "named"),
    [
        ('blinkstore_memory_limit = "lots"\n', {}, "blinkstore_memory_limit"),
        ('blinkstore_memroy_limit = "1MB"\n', {}, "blinkstore_memroy_limit"),
        ("blinkstore_wrap_app = 'maybe'\n", {}, "blinkstore_wrap_app"),
        ("", {"BLINKSTORE_MAX_CONNECTIONS": "-3"}, "BLINKSTORE_MAX_CONNECTIONS"),
    ],
)
def test_invalid_setting_stops_startup_naming_it(tmp_path, config, env, named):
    (tmp_path / "gunicorn.conf.py").write_text(config)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    output = start_and_fail(tmp_path, {**env, "BLINKSTORE_RUNTIME_DIR": str(runtime)})
    assert f"Error: {named}:" in output, output
    assert "Traceback" not in output
    assert not list(runtime.iterdir())


def test_store_that_cannot_start_stops_gunicorn_with_the_reason(tmp_path: Path):
    # A short runtime directory: pytest's tmp_path can be too long for a socket path, which
    # would stop start-up for that reason instead of the one this test is about.
    with tempfile.TemporaryDirectory(prefix="bs-") as short:
        _store_cannot_start(tmp_path, Path(short))


def _store_cannot_start(tmp_path: Path, runtime: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "gunicorn.conf.py").write_text(f"blinkstore_tcp = '127.0.0.1:{port}'\n")
        output = start_and_fail(tmp_path, {"BLINKSTORE_RUNTIME_DIR": str(runtime)})
    assert "Error: blinkstore: could not start the store" in output, output
    assert not list(runtime.iterdir())


def test_password_protected_store_is_shared_without_showing_the_password(tmp_path: Path):
    (tmp_path / "gunicorn.conf.py").write_text("blinkstore_password = 's3cr/et'\nworkers = 2\n")
    with gunicorn(["-c", "python:blinkstore_gunicorn.conf", "wsgi_app:app"], tmp_path) as s:
        assert env_of(s.url)["url"].endswith("?password=s3cr%2Fet")
        reply = httpx.get(f"{s.url}/set?key=p&value=1", timeout=10.0)
        assert reply.status_code == 200
        assert httpx.get(f"{s.url}/get?key=p", timeout=10.0).json()["value"] == "1"
        assert "s3cr" not in cmdline(s.store_pid())
        assert "s3cr" not in s.log()
