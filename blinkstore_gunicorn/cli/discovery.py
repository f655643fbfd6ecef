"""Which store a shell command talks to: ``--url``, ``--pid``, ``$BLINKSTORE_URL`` or the one
running store of this user (from :mod:`blinkstore_gunicorn.registry`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from blinkstore_gunicorn.client import CacheConfigError
from blinkstore_gunicorn.client.url import ENV_VAR
from blinkstore_gunicorn.registry import RegistryError, StoreEntry, registry_dir, running_stores

__all__ = ["find_stores", "store_url"]


def find_stores(pid: int | None = None) -> list[StoreEntry]:
    """The running stores of this user, or those that are ``pid`` or were started by it."""
    try:
        stores = running_stores()
    except RegistryError as exc:
        raise CacheConfigError(f"cannot read the list of running stores: {exc}") from None
    if pid is None:
        return stores
    return [store for store in stores if store.matches(pid)]


def store_url(url: str | None, pid: int | None, environ: Mapping[str, str] | None = None) -> str:
    """The URL to use; raises :class:`CacheConfigError` with what to do when there is no one."""
    if url:
        return url
    env = os.environ if environ is None else environ
    from_env = env.get(ENV_VAR, "").strip()
    if pid is None and from_env:
        return from_env
    stores = find_stores(pid)
    if len(stores) == 1:
        return stores[0].client_url
    if pid is not None and not stores:
        raise CacheConfigError(
            f"no running store is pid {pid} or was started by it; `blinkstore ls` lists the "
            "running stores"
        )
    if stores:
        listing = ", ".join(f"pid {store.pid} on {store.url}" for store in stores)
        raise CacheConfigError(
            f"{len(stores)} stores are running ({listing}): pick one with --pid PID (the "
            "store's, or the gunicorn master's or `blinkstore run`'s that started it) or "
            "--url URL; `blinkstore ls` shows them"
        )
    raise CacheConfigError(
        "no store found: no --url given, BLINKSTORE_URL is not set, and no store of this user "
        f"is running on this host (none listed in {registry_dir()}). Start one (gunicorn -c "
        "python:blinkstore_gunicorn.conf, blinkstore run or blinkstore serve), or point at "
        "one with --url unix:///path/store.sock (or tcp://host:port, redis://...) or "
        "BLINKSTORE_URL; `blinkstore ls` lists the running stores"
    )
