"""gunicorn server hooks that run the store, chained with the user's own hooks.

:func:`adopt` installs them into a config namespace (the one-line adoption at the end of an
existing ``gunicorn.conf.py``); :func:`build_config` does the same for a copy of the user's
config, which is what ``blinkstore_gunicorn.conf`` exports. Both the user's hook and ours run;
ours come first where the user's hook may want the store (``nworkers_changed``,
``on_starting``, ``on_reload``, ``post_fork``) and last where the user's hook may still use it or
wrap the app itself (``post_worker_init``, ``worker_exit``, ``on_exit``).

The store starts in the first ``nworkers_changed`` call: gunicorn makes it in
``Arbiter.setup``, after ``daemon`` forked the master away and before ``preload_app`` imports the
application, so a module-level client in a preloaded app finds ``BLINKSTORE_URL``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pwd
import runpy
from collections.abc import Callable, MutableMapping
from typing import Any

from blinkstore_gunicorn.client.url import mask_url
from blinkstore_gunicorn.config import unknown_variable_warnings
from blinkstore_gunicorn.gunicorn.orphans import leave_with_master
from blinkstore_gunicorn.gunicorn.settings import PluginSettings, load_settings
from blinkstore_gunicorn.supervision import supervisor

__all__ = ["CONFIG_ENV", "URL_ENV", "adopt", "build_config", "load_user_config", "store_user"]

#: Names another gunicorn config file to chain with (default: ``./gunicorn.conf.py``).
CONFIG_ENV = "BLINKSTORE_GUNICORN_CONFIG"
#: Where the workers' clients find the store.
URL_ENV = "BLINKSTORE_URL"
# Marks a namespace whose hooks are already chained with ours.
_ADOPTED = "__blinkstore_adopted__"

Hook = Callable[..., Any]

# Settings resolved in the master's on_starting; forked workers inherit them.
_settings: PluginSettings | None = None


def _resolve(hook: Any) -> Hook:
    # gunicorn accepts "package.module.function" strings for hooks, and so do we.
    if isinstance(hook, str):
        module_name, _, attribute = hook.rpartition(".")
        resolved: Hook = getattr(importlib.import_module(module_name), attribute)
        return resolved
    return hook  # type: ignore[no-any-return]


def store_user(cfg: Any) -> supervisor.StoreUser | None:
    """The user the store must run as: the workers' (``user``/``group``), when they differ.

    Only a root master can hand the store to another user; gunicorn refuses the same change
    for its workers otherwise.
    """
    uid, gid = cfg.uid, cfg.gid
    if os.geteuid() != 0 or (uid, gid) == (os.geteuid(), os.getegid()):
        return None
    groups: tuple[int, ...] = ()
    if cfg.initgroups:
        with contextlib.suppress(KeyError):
            groups = tuple(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    return supervisor.StoreUser(uid, gid, groups)


def _start_store(namespace: MutableMapping[str, Any], server: Any) -> None:
    global _settings
    if supervisor.current() is not None:
        return
    # gunicorn applies its `raw_env` (--env) after this point; settings given there count.
    environ = {**os.environ, **server.cfg.env}
    settings = load_settings(namespace, environ)
    for warning in unknown_variable_warnings(environ):
        server.log.warning("blinkstore: %s", warning)
    sup = supervisor.StoreSupervisor(
        server.log,
        settings.serve_args(),
        start_timeout=settings.start_timeout,
        runtime_parent=settings.runtime_dir,
        password=settings.store.password,
        upstream=settings.store.upstream,
        user=store_user(server.cfg),
    )
    url = sup.start()
    _settings = settings
    previous = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = url
    if previous and previous != url:
        server.log.info(
            # Not the old value itself: it may hold a password.
            "blinkstore: %s was already set; workers now use this master's store",
            URL_ENV,
        )
    server.log.info("blinkstore: store ready at %s", sup.socket_path)


def _nworkers_changed(
    namespace: MutableMapping[str, Any], server: Any, new_value: Any, old_value: Any
) -> None:
    if old_value is None:
        _start_store(namespace, server)


def _on_starting(namespace: MutableMapping[str, Any], server: Any) -> None:
    # Normally started already (nworkers_changed); gunicorn's raw_env may have replaced the
    # URL since, and ours must win for the workers.
    _start_store(namespace, server)
    _export_url()
    _note_store_exits_first(server)


def _note_store_exits_first(server: Any) -> None:
    # The arbiter reaps every child with waitpid(-1) and logs ours only at debug level, as
    # unknown; the supervisor reads the store's exit status (OOM kill? crash?) just before.
    reap_workers = getattr(server, "reap_workers", None)
    if reap_workers is None or getattr(reap_workers, "_blinkstore", False):
        return

    def reap_after_noting_store_exits() -> None:
        sup = supervisor.current()
        if sup is not None:
            sup.note_exits()
        reap_workers()

    reap_after_noting_store_exits._blinkstore = True  # type: ignore[attr-defined]
    server.reap_workers = reap_after_noting_store_exits


def _export_url() -> None:
    sup = supervisor.current()
    if sup is not None:
        os.environ[URL_ENV] = sup.url


def _on_reload(server: Any) -> None:
    sup = supervisor.current()
    if sup is not None:
        # A reload re-applies gunicorn's raw_env; our URL must win for the new workers.
        _export_url()
        server.log.info("blinkstore: reload keeps the store and its data (%s)", mask_url(sup.url))


def _post_fork(server: Any, worker: Any) -> None:
    supervisor.close_inherited()
    leave_with_master(server.pid, float(server.cfg.graceful_timeout), worker.log.info)


def _route_package_logs(worker: Any) -> None:
    # The client's "store unreachable / reachable again" lines belong in gunicorn's error log,
    # as uvicorn's worker does for uvicorn's loggers; a logger the user configured is kept.
    package_logger = logging.getLogger("blinkstore_gunicorn")
    error_log = getattr(worker.log, "error_log", None)
    if package_logger.handlers or logging.getLogger().handlers or error_log is None:
        return
    package_logger.handlers = list(error_log.handlers)
    package_logger.setLevel(error_log.level)
    package_logger.propagate = False


def _post_worker_init(worker: Any) -> None:
    _route_package_logs(worker)
    if _settings is None or _settings.wrap_app:
        # Imported in the worker only: it pulls in the middleware and the client.
        from blinkstore_gunicorn.gunicorn.wrap import wrap_worker_app

        wrap_worker_app(worker, worker.log)


def _worker_exit(server: Any, worker: Any) -> None:
    from blinkstore_gunicorn.gunicorn.wrap import close_worker_app

    close_worker_app(worker)


def _on_exit(server: Any) -> None:
    sup = supervisor.current()
    if sup is None:
        return
    sup.stop()
    if os.environ.get(URL_ENV) == sup.url:
        del os.environ[URL_ENV]
    server.log.info("blinkstore: store stopped, %s removed", sup.runtime_dir)


def _chain_first(ours: Hook, theirs: Any) -> Hook:
    def chained(*args: Any) -> None:
        ours(*args)
        if theirs is not None:
            _resolve(theirs)(*args)

    return chained


def _chain_last(ours: Hook, theirs: Any) -> Hook:
    def chained(*args: Any) -> None:
        try:
            if theirs is not None:
                _resolve(theirs)(*args)
        finally:
            ours(*args)

    return chained


def _fixed_arity(hook: Hook, arity: int, name: str) -> Hook:
    # gunicorn checks a hook's arity, so the chained function must declare its parameters.
    wrapper: Hook
    if arity == 1:

        def wrapper(a: Any) -> None:
            hook(a)

    elif arity == 2:

        def wrapper(a: Any, b: Any) -> None:
            hook(a, b)

    else:

        def wrapper(a: Any, b: Any, c: Any) -> None:
            hook(a, b, c)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = f"blinkstore's {name} hook, chained with the config's own."
    return wrapper


def adopt(namespace: MutableMapping[str, Any]) -> None:
    """Chain the plugin's hooks into a gunicorn config namespace, in place.

    Call it as the last line of an existing ``gunicorn.conf.py``::

        from blinkstore_gunicorn.gunicorn import adopt; adopt(globals())

    Hooks defined above it keep running; the plugin's run with them. Calling it twice on the
    same namespace does nothing the second time.
    """
    if namespace.get(_ADOPTED):
        return
    hooks: dict[str, tuple[Hook, int, bool]] = {
        # name: (ours, arity, ours first?)
        "nworkers_changed": (
            lambda server, new, old: _nworkers_changed(namespace, server, new, old),
            3,
            True,
        ),
        "on_starting": (lambda server: _on_starting(namespace, server), 1, True),
        "on_reload": (_on_reload, 1, True),
        "post_fork": (_post_fork, 2, True),
        "post_worker_init": (_post_worker_init, 1, False),
        "worker_exit": (_worker_exit, 2, False),
        "on_exit": (_on_exit, 1, False),
    }
    for name, (ours, arity, first) in hooks.items():
        theirs = namespace.get(name)
        chained = _chain_first(ours, theirs) if first else _chain_last(ours, theirs)
        namespace[name] = _fixed_arity(chained, arity, name)
    namespace[_ADOPTED] = True


def load_user_config(
    environ: MutableMapping[str, str] | None = None, cwd: str | None = None
) -> dict[str, Any]:
    """The variables of the user's own gunicorn config, or ``{}`` when there is none.

    ``$BLINKSTORE_GUNICORN_CONFIG`` names it (a file path, or ``python:module``); otherwise
    ``gunicorn.conf.py`` in the working directory is used when present, the file gunicorn
    itself would have read without ``-c``.
    """
    env = os.environ if environ is None else environ
    location = env.get(CONFIG_ENV)
    if location:
        if location.startswith("python:"):
            module = importlib.import_module(location[len("python:") :])
            return _public(vars(module))
        path = location[len("file:") :] if location.startswith("file:") else location
        if not os.path.isfile(path):
            raise RuntimeError(f"{CONFIG_ENV}={location!r}: no such file")
    else:
        path = os.path.join(cwd or os.getcwd(), "gunicorn.conf.py")
        if not os.path.isfile(path):
            return {}
    return _public(runpy.run_path(path, run_name="__config__"))


def _public(variables: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if not k.startswith("__") or k == _ADOPTED}


def build_config(user_config: MutableMapping[str, Any]) -> dict[str, Any]:
    """The user's config with the plugin's hooks chained in (a new dict)."""
    namespace = dict(user_config)
    adopt(namespace)
    return namespace
