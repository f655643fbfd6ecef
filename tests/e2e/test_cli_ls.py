"""``blinkstore ls / stats`` find the store that gunicorn or ``blinkstore run`` started."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from blinkstore_gunicorn.registry import REGISTRY_ENV, running_stores
from harness.gunicorn import gunicorn, wait_until
from tests.e2e.test_cli_run import blinkstore

pytestmark = pytest.mark.slow

CONF = ["-c", "python:blinkstore_gunicorn.conf"]


def test_the_store_of_a_gunicorn_master_is_found_by_its_pid(tmp_path: Path):
    registry = tmp_path / "registry"
    # A typo on the way: reported in gunicorn's log by the store it starts.
    env = {**os.environ, REGISTRY_ENV: str(registry), "BLINKSTORE_MEMORYLIMIT": "1GB"}
    env.pop("BLINKSTORE_URL", None)
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path, env=env) as server:
        store_pid = server.store_pid()
        assert wait_until(lambda: [s.pid for s in running_stores(registry)] == [store_pid], 10.0)
        listed = blinkstore(["ls", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        (entry,) = json.loads(listed.stdout)
        assert entry["pid"] == store_pid and server.pid in entry["parents"]
        assert entry["memory_limit"] == 64 * 2**20
        stats = blinkstore(["stats", "--pid", str(server.pid)], env)
        assert stats.returncode == 0, stats.stderr
        assert "memory_limit  64 MiB" in stats.stdout
        assert "did you mean BLINKSTORE_MEMORY_LIMIT?" in server.log()
    assert wait_until(lambda: running_stores(registry) == [], 10.0)


def test_the_store_of_blinkstore_run_is_found(short_tmp: Path):
    registry = short_tmp / "registry"
    env = {**os.environ, REGISTRY_ENV: str(registry), "BLINKSTORE_RUNTIME_DIR": str(short_tmp)}
    env.pop("BLINKSTORE_URL", None)
    # CMD asks by pid: its parent is `blinkstore run`, which started the store.
    script = (
        "import os, subprocess, sys\n"
        "args = [sys.executable, '-m', 'blinkstore_gunicorn', 'stats', '--pid', "
        "str(os.getppid())]\n"
        "sys.exit(subprocess.run(args, env={k: v for k, v in os.environ.items() "
        "if k != 'BLINKSTORE_URL'}).returncode)\n"
    )
    command = ["run", "--memory-limit", "8MiB", "--", sys.executable, "-c", script]
    result = blinkstore(command, env)
    assert result.returncode == 0, result.stderr
    assert "memory_limit  8 MiB" in result.stdout
    assert running_stores(registry) == []
