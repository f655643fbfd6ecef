"""``blinkstore ping | get | set | del | stats`` against a real store and a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blinkstore_gunicorn.cli import main
from harness.processes import (
    REPO,
    RedisProcess,
    StoreProcess,
)
from tests.support.processes import resp_server_process


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as server_process:
        yield server_process


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ping(server: StoreProcess | RedisProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "ping", "--url", server.url) == (0, "PONG\n", "")


def test_set_get_del_round_trip(
    server: StoreProcess | RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", server.url]
    assert run(capsys, "set", "greeting", "hello world", *url)[:2] == (0, "OK\n")
    assert run(capsys, "get", "greeting", *url)[:2] == (0, "hello world\n")
    assert run(capsys, "set", "n", "41", "--json", "--ttl", "30", *url)[0] == 0
    assert run(capsys, "get", "n", *url)[:2] == (0, "41\n")
    assert run(capsys, "set", "doc", '{"a": [1, 2]}', "--json", *url)[0] == 0
    assert json.loads(run(capsys, "get", "doc", *url)[1]) == {"a": [1, 2]}
    code, out, _ = run(capsys, "set", "greeting", "again", "--nx", *url)
    assert code == 3 and "not written" in out
    assert run(capsys, "set", "ns-key", "v", "--namespace", "app", *url)[0] == 0
    assert run(capsys, "get", "app:ns-key", *url)[:2] == (0, "v\n")
    assert run(capsys, "del", "greeting", "n", "missing", *url)[:2] == (0, "2\n")
    code, out, err = run(capsys, "get", "greeting", *url)
    assert (code, out) == (3, "")
    assert "not found" in err


def test_stats(server: StoreProcess | RedisProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", "--url", server.url)
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["backend"] == "store"
    assert lines["keys"].isdigit()
    code, out, _ = run(capsys, "stats", "--json", "--url", server.url)
    assert code == 0
    assert isinstance(json.loads(out)["used_memory"], int)
    code, out, _ = run(capsys, "stats", "--all", "--url", server.url)
    assert code == 0 and len(out.splitlines()) > 8


def test_unreachable_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "ping", "--url", f"unix://{tmp_path}/none.sock", "--timeout", "0.5"
    )
    assert (code, out) == (1, "")
    assert "cannot connect" in err and "none.sock" in err


def test_configuration_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BLINKSTORE_URL", raising=False)
    monkeypatch.setenv("BLINKSTORE_REGISTRY_DIR", str(tmp_path / "no-stores"))
    code, _, err = run(capsys, "get", "k")
    assert code == 2
    assert "BLINKSTORE_URL" in err
    code, _, err = run(capsys, "get", "k", "--url", "ftp://x")
    assert code == 2 and "unsupported scheme" in err
    code, _, err = run(capsys, "set", "k", "{bad", "--json", "--url", "memory://")
    assert code == 2 and "--json" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["set", "k", "v", "--ttl", "-1", "--url", "memory://"])
    assert exit_info.value.code == 2


def test_error_reply_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # An entry larger than the whole memory limit is refused with an error reply.
    code, out, err = run(capsys, "set", "k", "x" * 4096, "--url", "memory://?memory_limit=1KB")
    assert (code, out) == (2, "")
    assert "memory limit" in err


def test_entry_point_uses_environment(server: StoreProcess | RedisProcess) -> None:
    env = {**os.environ, "BLINKSTORE_URL": server.url, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "blinkstore_gunicorn", "ping"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
        cwd=REPO,
    )
    assert (done.returncode, done.stdout) == (0, "PONG\n"), done.stderr
