"""The README's first commands in a fresh virtualenv with the built wheel and no extras.

``pip install blinkstore-gunicorn`` must be enough for ``gunicorn -c
python:blinkstore_gunicorn.conf app:app``: this builds the wheel from a copy of the sources,
installs it (dependencies come from the package index) into a new virtualenv, writes the
README's ``app.py`` and runs the README's command in it, with a bind address added.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import alive, descendants, free_port, kill_all, wait_until
from harness.processes import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Building and installing fetch from the package index: generous, but bounded.
INSTALL_TIMEOUT = 300


def readme_quickstart() -> tuple[str, list[str]]:
    """The README's ``app.py`` block and its gunicorn command (as argv)."""
    readme = (REPO / "README.md").read_text()
    app = re.search(r"```python\n(# app\.py\n.*?)```", readme, re.S)
    command = re.search(r"^\$ (gunicorn -c python:blinkstore_gunicorn\.conf .*)$", readme, re.M)
    assert app is not None and command is not None, "the README's quickstart changed shape"
    return app.group(1), shlex.split(command.group(1))


def run(args: list[str], **kwargs) -> None:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False, **kwargs
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"


def clean_env() -> dict[str, str]:
    """This process's environment without anything that points at the repository or a store."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BLINKSTORE_", "PYTHON", "VIRTUAL_ENV"))
    }


def build_wheel(work: Path) -> Path:
    # From a copy, so the build leaves no build/ or *.egg-info in the working tree.
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "blinkstore_gunicorn",
        source / "blinkstore_gunicorn",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("blinkstore_gunicorn-*.whl")
    return wheel


def test_pip_install_then_the_readme_command_serves_the_readme_app(tmp_path: Path):
    app_code, command = readme_quickstart()
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], env=clean_env())

    site = tmp_path / "site"
    site.mkdir()
    (site / "app.py").write_text(app_code)
    port = free_port()
    log_path = site / "gunicorn.log"
    argv = [str(venv / "bin" / command[0]), *command[1:], "--bind", f"127.0.0.1:{port}", "-w", "2"]
    with open(log_path, "wb") as log:
        master = subprocess.Popen(
            argv,
            cwd=site,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    started: set[int] = set()
    try:
        replies: list[str] = []

        def answered() -> bool:
            assert master.poll() is None, log_path.read_text()
            started.update(descendants(master.pid))
            with contextlib.suppress(httpx.HTTPError):
                reply = httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0)
                replies.append(reply.text)
                return reply.status_code == 200
            return False

        assert wait_until(answered, 60.0, interval=0.1), log_path.read_text()
        # One counter for the whole host: the next replies continue it.
        for _ in range(3):
            assert answered()
        counts = [int(text.split()[-1]) for text in replies[-4:]]
        assert counts == list(range(counts[0], counts[0] + 4)), replies
        assert "listening on unix://" in log_path.read_text()
    finally:
        started.update(descendants(master.pid))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, signal.SIGTERM)
        try:
            master.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(master.pid, signal.SIGKILL)
            master.wait(5)
        wait_until(lambda: not any(alive(pid) for pid in started), 5.0)
        kill_all(list(started))
    assert master.returncode == 0, log_path.read_text()
    assert not any(alive(pid) for pid in started)
