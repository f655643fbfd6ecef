"""``blinkstore stats / ls`` find the running stores of this user without ``--url``."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from blinkstore_gunicorn import Cache
from blinkstore_gunicorn.cli import main
from blinkstore_gunicorn.registry import REGISTRY_ENV, running_stores
from harness.gunicorn import wait_until
from harness.processes import StoreProcess
from tests.conftest import StoreFactory


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private registry directory for this test (other tests' stores are not in it)."""
    directory = tmp_path / "registry"
    monkeypatch.setenv(REGISTRY_ENV, str(directory))
    monkeypatch.delenv("BLINKSTORE_URL", raising=False)
    yield directory


def start(factory: StoreFactory, registry: Path, *flags: str, **env: str) -> StoreProcess:
    store = factory(*flags, env={REGISTRY_ENV: str(registry), **env})
    assert wait_until(lambda: store.pid in [s.pid for s in running_stores(registry)], 10.0), (
        store.log_text()
    )
    return store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in out.splitlines())


def test_no_store_speaks_cli(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("stats", "ping"):
        code, out, err = run(capsys, command)
        assert (code, out) == (2, "")
        assert err.startswith(f"blinkstore {command}: error: no store found")
        for hint in ("--url", "BLINKSTORE_URL", "blinkstore ls", str(registry)):
            assert hint in err
        assert "url='memory://'" not in err
    assert run(capsys, "ls") == (0, "", "no store of this user is running on this host\n")


def test_the_one_running_store_is_found_and_listed(
    registry: Path, blinkstore_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    store = start(blinkstore_factory, registry, "--memory-limit", "32MiB")
    assert run(capsys, "set", "greeting", "hello")[:2] == (0, "OK\n")
    assert run(capsys, "get", "greeting")[:2] == (0, "hello\n")
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert rows(out)["url"] == store.url
    assert rows(out)["memory_limit"] == "32 MiB"

    code, out, _ = run(capsys, "ls")
    header, line = out.splitlines()
    assert header.split() == ["PID", "PARENTS", "UPTIME", "KEYS", "MEMORY", "URL"]
    assert line.split()[0] == str(store.pid)
    assert line.endswith(store.url) and "/ 32 MiB" in line
    code, out, _ = run(capsys, "ls", "--json")
    (listed,) = json.loads(out)
    assert listed["pid"] == store.pid and listed["keys"] == 1
    assert listed["memory_limit"] == 32 * 2**20

    # The entry is private to this user, and goes away when the store stops.
    (entry,) = registry.iterdir()
    assert os.stat(registry).st_mode & 0o777 == 0o700
    assert os.stat(entry).st_mode & 0o777 == 0o600
    assert store.stop() == 0
    assert list(registry.iterdir()) == []


def test_several_stores_need_a_pid(
    registry: Path,
    blinkstore_factory: StoreFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = start(blinkstore_factory, registry)
    second = start(blinkstore_factory, registry)
    code, out, err = run(capsys, "stats")
    assert (code, out) == (2, "")
    assert "2 stores are running" in err and "--pid" in err
    assert f"pid {first.pid}" in err and f"pid {second.pid}" in err
    code, out, _ = run(capsys, "stats", "--pid", str(second.pid))
    assert code == 0 and rows(out)["url"] == second.url
    # A parent's pid works too: both stores are children of this test process.
    code, _, err = run(capsys, "stats", "--pid", str(os.getpid()))
    assert code == 2 and "2 stores are running" in err
    code, _, err = run(capsys, "stats", "--pid", "999999999")
    assert code == 2 and "no running store is pid 999999999" in err
    # BLINKSTORE_URL is an explicit choice: it wins over the registry (not over --pid).
    monkeypatch.setenv("BLINKSTORE_URL", first.url)
    assert rows(run(capsys, "stats")[1])["url"] == first.url
    assert rows(run(capsys, "stats", "--pid", str(second.pid))[1])["url"] == second.url


def test_a_killed_store_is_not_listed_and_its_entry_is_removed(
    registry: Path, blinkstore_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    store = start(blinkstore_factory, registry)
    store.stop(signal.SIGKILL)
    assert [path.name for path in registry.iterdir()] == [f"{store.pid}.json"]
    assert run(capsys, "ls")[0] == 0
    assert list(registry.iterdir()) == []


def test_a_password_store_is_reached_without_typing_the_password(
    registry: Path, blinkstore_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    start(blinkstore_factory, registry, BLINKSTORE_PASSWORD="s3cret")
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "s3cret" not in out
    code, out, _ = run(capsys, "ls")
    assert code == 0 and "s3cret" not in out and "not answering" not in out


def test_an_unsafe_registry_is_refused(
    registry: Path, blinkstore_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.mkdir(mode=0o755)
    registry.chmod(0o755)  # the umask may have narrowed it
    store = blinkstore_factory(env={REGISTRY_ENV: str(registry)})
    assert wait_until(lambda: "not listed for `blinkstore ls`" in store.log_text(), 10.0)
    assert "mode 0755" in store.log_text()
    assert list(registry.iterdir()) == []
    code, _, err = run(capsys, "ls")
    assert code == 2 and "mode 0755, open to other users" in err


def test_stats_are_for_people(
    registry: Path, blinkstore_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    store = start(blinkstore_factory, registry, "--memory-limit", "1MiB")
    with Cache(store.url) as cache:
        for _ in range(6):
            cache.incr("n")
        summary = rows(run(capsys, "stats")[1])
        assert (summary["hits"], summary["misses"]) == ("0", "0")
        assert summary["hit_ratio"].startswith("- (no reads yet")
        assert int(summary["commands"]) >= 6
        cache.get("n")
        cache.get("missing")
        cache.set("big", "x" * 300_000)
    summary = rows(run(capsys, "stats")[1])
    assert summary["hit_ratio"] == "50.0% of 2 reads"
    assert re.fullmatch(r"29\d\.\d KiB \(2\d% of the limit\)", summary["used_memory"])
    assert summary["memory_limit"] == "1 MiB"
    assert json.loads(run(capsys, "stats", "--json")[1])["hit_ratio"] == 0.5
