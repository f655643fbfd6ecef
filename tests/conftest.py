"""Fixtures every test can use: real ``blinkstore serve`` and ``redis-server`` processes.

* ``blinkstore_unix`` / ``blinkstore_tcp``: a store on a Unix socket / on 127.0.0.1 (random port)
* ``blinkstore``: the same test once over each (``store.connect()`` picks the right socket)
* ``blinkstore_factory``: ``start(*flags, unix=True, tcp=False, env=None) -> StoreProcess`` for
  custom settings; every store it started is stopped after the test
* ``redis_server``: a real redis-server on a Unix socket (skipped when it is not installed)
* ``shm_path``: the test once with the region's C helper, once with the pure-Python reference
  (``BLINKSTORE_NATIVE``, which the stores a test starts inherit)
* ``short_tmp``: a private directory under /tmp, short enough to hold Unix sockets
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blinkstore_gunicorn.client._core import reset_fallback_warning
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.native import native
from harness.processes import (
    REDIS_SERVER,
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
    short_tempdir,
    start_blinkstore,
)

StoreFactory = Callable[..., StoreProcess]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every test marked ``heavy`` in one pytest-xdist group: under ``--dist loadgroup``
    (``make test``) they run on one worker, one after the other, so that no two of them load
    the machine at once. Before xdist's own hook, which reads the groups."""
    for item in items:
        if item.get_closest_marker("heavy") is not None:
            item.add_marker(pytest.mark.xdist_group("heavy"))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private (0700) directory under /tmp for this test, removed after it: for a runtime
    directory or anything else that holds Unix sockets. ``tmp_path`` is too long for that under
    xdist (``/tmp/pytest-of-USER/pytest-N/popen-gwN/TEST_NAME0``), past the 107-byte limit."""
    with short_tempdir() as path:
        yield path


@pytest.fixture
def blinkstore_unix() -> Iterator[StoreProcess]:
    """A ``blinkstore serve --unix`` process for this test."""
    with blinkstore_process(unix=True) as store:
        yield store


@pytest.fixture
def blinkstore_tcp() -> Iterator[StoreProcess]:
    """A ``blinkstore serve --tcp 127.0.0.1:0`` process for this test."""
    with blinkstore_process(unix=False, tcp=True) as store:
        yield store


@pytest.fixture(params=["unix", "tcp"])
def blinkstore(request: pytest.FixtureRequest) -> Iterator[StoreProcess]:
    """A store listening on a Unix socket, then (second run) on TCP only."""
    with blinkstore_process(unix=request.param == "unix", tcp=request.param == "tcp") as store:
        yield store


@pytest.fixture
def blinkstore_factory() -> Iterator[StoreFactory]:
    """Start stores with custom flags; all are stopped (and their dirs removed) afterwards."""
    started: list[StoreProcess] = []
    with short_tempdir() as root:

        def start(
            *flags: str,
            unix: bool = True,
            tcp: bool = False,
            env: dict[str, str] | None = None,
            directory: Path | None = None,
        ) -> StoreProcess:
            where = directory
            if where is None:
                where = root / str(len(started))
                where.mkdir()
            store = start_blinkstore(*flags, directory=where, unix=unix, tcp=tcp, env=env)
            started.append(store)
            return store

        try:
            yield start
        finally:
            for store in started:
                store.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A real redis-server on a Unix socket (``--save "" --appendonly no --port 0``)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    with redis_server_process() as redis:
        yield redis


@pytest.fixture
def no_store_configured(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No ``BLINKSTORE_URL``, the once-per-process fallback warning not given yet, and the
    client's warnings captured by ``caplog``: the setting of the "no store configured" tests."""
    monkeypatch.delenv("BLINKSTORE_URL", raising=False)
    reset_fallback_warning()
    caplog.set_level(logging.WARNING, logger="blinkstore_gunicorn.client")


@pytest.fixture(params=["native", "python"])
def shm_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the region's C helper, then with the pure-Python reader and writer.

    Readers and writers choose their path when made (``shm.native.native``), and the stores a
    test starts inherit the variable, so everything in the test runs the one path. The C run
    is skipped only where the helper is not built (``test_shm_native`` fails then, wherever a
    C compiler is at hand).
    """
    monkeypatch.setenv(NATIVE_ENV, "1" if request.param == "native" else "0")
    if request.param == "native" and native() is None:
        pytest.skip("the C helper (blinkstore_gunicorn/shm/_native.c) is not built")
    return str(request.param)
