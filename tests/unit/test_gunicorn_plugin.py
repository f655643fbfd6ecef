"""The gunicorn plugin's pure parts: settings, hook chaining, app-slot detection, runtime dirs."""

from __future__ import annotations

import logging
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from blinkstore_gunicorn.gunicorn import adopt
from blinkstore_gunicorn.gunicorn.hooks import build_config, load_user_config, store_user
from blinkstore_gunicorn.gunicorn.settings import PluginSettingsError, load_settings
from blinkstore_gunicorn.gunicorn.wrap import worker_app_slot, wrap_worker_app
from blinkstore_gunicorn.integrations import BlinkStoreMiddleware
from blinkstore_gunicorn.supervision.runtime import (
    RuntimeDirError,
    check_reachable,
    create_runtime_dir,
    describe_status,
    ping,
    remove_runtime_dir,
    verify_runtime_dir,
)
from blinkstore_gunicorn.supervision.supervisor import StoreSupervisor, StoreUser

# --- settings ---------------------------------------------------------------------------------


def test_settings_from_config_variables_become_serve_flags():
    settings = load_settings(
        {"blinkstore_memory_limit": "256MB", "blinkstore_max_connections": 50, "workers": 4}, {}
    )
    assert settings.store.memory_limit == 256 * 2**20
    args = settings.serve_args()
    assert args[args.index("--memory-limit") + 1] == str(256 * 2**20)
    assert args[args.index("--max-connections") + 1] == "50"
    assert settings.wrap_app is True
    assert settings.start_timeout == 10.0


def test_environment_wins_over_the_config_file():
    settings = load_settings(
        {"blinkstore_memory_limit": "256MB", "blinkstore_wrap_app": True},
        {"BLINKSTORE_MEMORY_LIMIT": "1GB", "BLINKSTORE_WRAP_APP": "false"},
    )
    assert settings.store.memory_limit == 2**30
    assert settings.wrap_app is False


def test_password_travels_in_the_environment_not_in_argv():
    settings = load_settings({"blinkstore_password": "s3cret"}, {})
    assert "s3cret" not in settings.serve_args()
    sup = StoreSupervisor(logging.getLogger("test"), settings.serve_args(), password="s3cret")
    assert sup.store_env["BLINKSTORE_PASSWORD"] == "s3cret"


@pytest.mark.parametrize(
    ("namespace", "environ", "message"),
    [
        ({"blinkstore_memory_limit": "lots"}, {}, "blinkstore_memory_limit: invalid size 'lots'"),
        ({}, {"BLINKSTORE_MEMORY_LIMIT": "-1"}, "BLINKSTORE_MEMORY_LIMIT: invalid size"),
        ({"blinkstore_memroy_limit": 1}, {}, "blinkstore_memroy_limit: unknown setting"),
        ({"blinkstore_unix": "/tmp/x.sock"}, {}, "blinkstore_unix: the gunicorn plugin chooses"),
        ({"blinkstore_wrap_app": "maybe"}, {}, "blinkstore_wrap_app: expected True or False"),
        ({"blinkstore_start_timeout": 0}, {}, "blinkstore_start_timeout: must be a positive"),
        ({"blinkstore_max_connections": 1.5}, {}, "blinkstore_max_connections: expected a string"),
        ({"blinkstore_tcp": "0.0.0.0:9000"}, {}, "blinkstore_tcp: refusing to listen"),
    ],
)
def test_invalid_settings_name_their_source(namespace, environ, message):
    with pytest.raises(PluginSettingsError, match="^" + message.replace("(", r"\(")) as info:
        load_settings(namespace, environ)
    # gunicorn prints RuntimeErrors from on_starting as "Error: <message>" without a traceback.
    assert isinstance(info.value, RuntimeError)


# --- hook chaining ------------------------------------------------------------------------------


class FakeWorker:
    def __init__(self, app: Any) -> None:
        self.wsgi = app
        self.pid = 1
        self.log = FakeLog()


class FakeLog:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: object) -> None:
        self.warnings.append(msg % args)

    def debug(self, msg: str, *args: object) -> None:
        pass


def wsgi_app(environ, start_response):
    start_response("200 OK", [])
    return [b""]


def test_adopt_chains_hooks_in_the_documented_order():
    calls: list[str] = []

    def post_worker_init(worker):
        # The user's hook runs first and still sees the bare app.
        calls.append(f"user:{type(worker.wsgi).__name__}")

    def on_exit(server):
        calls.append("user-exit")

    namespace: dict[str, Any] = {"post_worker_init": post_worker_init, "on_exit": on_exit}
    adopt(namespace)
    chained = namespace["post_worker_init"]
    adopt(namespace)  # a second adoption changes nothing
    assert namespace["post_worker_init"] is chained
    worker = FakeWorker(wsgi_app)
    namespace["post_worker_init"](worker)
    assert calls == ["user:function"]
    assert isinstance(worker.wsgi, BlinkStoreMiddleware)
    namespace["on_exit"](object())  # no store in this process: only the user's part runs
    assert calls[-1] == "user-exit"
    for name in ("on_starting", "on_reload", "post_fork", "worker_exit"):
        assert callable(namespace[name])


def test_hook_arity_matches_what_gunicorn_checks():
    from gunicorn.config import Config

    config = Config()
    for name, value in build_config({}).items():
        if name in config.settings:
            config.set(name, value)  # raises TypeError on a wrong arity


def test_user_config_is_read_from_the_working_directory_or_the_env(tmp_path: Path):
    assert load_user_config({}, str(tmp_path)) == {}
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\n_private = 1\n")
    assert load_user_config({}, str(tmp_path)) == {"workers": 3, "_private": 1}
    other = tmp_path / "other.py"
    other.write_text("workers = 5\n")
    assert load_user_config({"BLINKSTORE_GUNICORN_CONFIG": str(other)}, "/")["workers"] == 5
    with pytest.raises(RuntimeError, match="BLINKSTORE_GUNICORN_CONFIG"):
        load_user_config({"BLINKSTORE_GUNICORN_CONFIG": str(tmp_path / "nope.py")}, "/")


# --- where the app lives ------------------------------------------------------------------


def test_app_slot_per_worker_class():
    from gunicorn.workers.gasgi import ASGIWorker
    from gunicorn.workers.sync import SyncWorker
    from uvicorn_worker import UvicornWorker

    asgi_worker = ASGIWorker.__new__(ASGIWorker)
    asgi_worker.asgi = None
    assert worker_app_slot(asgi_worker) == ("asgi", "asgi")
    assert worker_app_slot(UvicornWorker.__new__(UvicornWorker)) == ("wsgi", "asgi")
    assert worker_app_slot(SyncWorker.__new__(SyncWorker)) == ("wsgi", "wsgi")


def test_mismatched_app_is_left_alone_with_a_warning():
    async def asgi_app(scope, receive, send):
        pass

    worker = FakeWorker(asgi_app)  # an ASGI app under a WSGI worker
    assert wrap_worker_app(worker, worker.log) is False
    assert worker.wsgi is asgi_app
    assert "expects a WSGI app" in worker.log.warnings[0]
    wrapped = FakeWorker(BlinkStoreMiddleware(wsgi_app))
    assert wrap_worker_app(wrapped, wrapped.log) is False  # never wrapped twice


# --- runtime -------------------------------------------------------------------------------


def test_runtime_dir_is_private_and_unique(short_tmp: Path):
    first, second = create_runtime_dir(str(short_tmp)), create_runtime_dir(str(short_tmp))
    assert first != second
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o700
    assert not ping(os.path.join(first, "store.sock"), 0.1)
    remove_runtime_dir(first)
    remove_runtime_dir(first)
    assert not os.path.exists(first)


def test_runtime_dir_check_refuses_any_change(short_tmp: Path):
    path = create_runtime_dir(str(short_tmp))
    uid = os.geteuid()
    verify_runtime_dir(path, uid)
    with pytest.raises(RuntimeDirError, match="owned by uid"):
        verify_runtime_dir(path, uid + 1)
    os.chmod(path, 0o755)
    with pytest.raises(RuntimeDirError, match="mode 755"):
        verify_runtime_dir(path, uid)
    os.rename(path, path + "-moved")
    os.symlink(path + "-moved", path)
    with pytest.raises(RuntimeDirError, match="symlink"):
        verify_runtime_dir(path, uid)
    os.unlink(path)
    with pytest.raises(RuntimeDirError, match="not recreating it"):
        verify_runtime_dir(path, uid)
    assert not os.path.exists(path)


def test_runtime_dir_in_a_parent_others_may_write_is_refused(short_tmp: Path):
    shared = short_tmp / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # no sticky bit: anyone could rename our directory away
    with pytest.raises(RuntimeDirError, match="not sticky"):
        create_runtime_dir(str(shared))
    assert not list(shared.iterdir())
    os.chmod(shared, 0o1777)
    remove_runtime_dir(create_runtime_dir(str(shared)))


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another user needs root")
def test_runtime_dir_handed_to_the_workers_user_must_be_reachable(short_tmp: Path):
    nobody = pwd.getpwnam("nobody")
    owner = (nobody.pw_uid, nobody.pw_gid)
    open_parent = short_tmp / "open"
    open_parent.mkdir()
    # short_tmp is private to root (0700): create_runtime_dir works, the check does not.
    path = create_runtime_dir(str(open_parent), owner=owner)
    assert os.stat(path).st_uid == nobody.pw_uid
    verify_runtime_dir(path, nobody.pw_uid)
    with pytest.raises(RuntimeDirError, match="cannot enter"):
        check_reachable(path, nobody.pw_uid, (nobody.pw_gid,))
    check_reachable("/tmp/blinkstore-x", nobody.pw_uid, (nobody.pw_gid,))  # /tmp and /


def test_store_user_follows_gunicorn_user_and_group():
    class Cfg:
        uid, gid, initgroups = os.geteuid(), os.getegid(), False

    assert store_user(Cfg()) is None  # the workers run as the master's user
    Cfg.uid, Cfg.gid = 65534, 65534
    expected = StoreUser(65534, 65534) if os.geteuid() == 0 else None
    assert store_user(Cfg()) == expected


def test_describe_status():
    assert describe_status(9) == "signal SIGKILL"
    assert describe_status(3 << 8) == "exit code 3"
    assert "unknown" in describe_status(None)


def record_exit(server):
    """A hook the next test names as a string, as gunicorn allows."""
    server.append("string-hook")


def test_hooks_given_as_import_strings_are_chained():
    namespace: dict[str, Any] = {"on_exit": f"{__name__}.record_exit"}
    adopt(namespace)
    calls: list[str] = []
    namespace["on_exit"](calls)
    assert calls == ["string-hook"]
