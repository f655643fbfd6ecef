"""The store registry: entries, liveness, and the directory checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blinkstore_gunicorn.registry import RegistryError, register, running_stores, unregister


def test_an_entry_describes_this_process(tmp_path: Path) -> None:
    directory = tmp_path / "reg"
    path = register(["tcp://127.0.0.1:1", "unix:///tmp/a b.sock"], "p@ss", directory=directory)
    (entry,) = running_stores(directory)
    assert entry.pid == os.getpid() and os.getppid() in entry.ancestors
    assert entry.url == "unix:///tmp/a b.sock"
    assert entry.client_url == "unix:///tmp/a b.sock?password=p%40ss"
    assert entry.matches(os.getppid()) and not entry.matches(1)
    unregister(path)
    unregister(path)  # twice is fine
    assert running_stores(directory) == []


def test_a_recycled_pid_is_not_taken_for_the_store(tmp_path: Path) -> None:
    path = register(["unix:///tmp/x.sock"], directory=tmp_path / "reg")
    raw = json.loads(path.read_text())
    raw["process_start"] = "1"  # the same pid, started at another time: another process
    path.write_text(json.dumps(raw))
    assert running_stores(path.parent) == []
    assert not path.exists()


def test_a_damaged_entry_is_skipped_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "reg"
    directory.mkdir(mode=0o700)
    (directory / "123.json").write_text("{not json")
    assert running_stores(directory) == []
    assert (directory / "123.json").exists()


def test_unsafe_directories_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(RegistryError, match="not a directory"):
        register(["unix:///tmp/x.sock"], directory=link)
    with pytest.raises(RegistryError, match="not a directory"):
        running_stores(link)
    if os.geteuid() == 0:  # root can hand the directory to someone else
        os.chown(real, 65534, -1)
        with pytest.raises(RegistryError, match="belongs to uid 65534"):
            running_stores(real)
    assert running_stores(tmp_path / "absent") == []
