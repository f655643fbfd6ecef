"""Pieces every framework integration shares: where the cache lives and how it is chosen."""

from __future__ import annotations

import logging
import os
import threading
from typing import Literal

logger = logging.getLogger("blinkstore_gunicorn.integrations")

OnError = Literal["raise", "miss"]

#: The URL used when neither the caller nor ``BLINKSTORE_URL`` names a store: one in-process
#: store shared by every integration in the process (a name makes ``memory://`` shared, so a
#: middleware's per-event-loop clients and Django's sync and async clients see the same data).
FALLBACK_URL = "memory://blinkstore"

_warned = False
_warn_lock = threading.Lock()


def resolve_url(url: str | None) -> str:
    """Return ``url``, else ``$BLINKSTORE_URL``, else :data:`FALLBACK_URL` (warning once).

    Web integrations prefer a working per-process cache over refusing to start, so that
    ``uvicorn app:app --reload`` and test clients work with no store; the warning makes sure
    nobody mistakes that for the shared cache in production.
    """
    if url:
        return url
    from_env = os.environ.get("BLINKSTORE_URL", "").strip()
    if from_env:
        return from_env
    _warn_per_process()
    return FALLBACK_URL


def _warn_per_process() -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    logger.warning(
        "BLINKSTORE_URL is not set: using an in-process memory:// cache. It is per-process, "
        "so workers do not share it. Run under `gunicorn -c python:blinkstore_gunicorn.conf` "
        "or `blinkstore run -- ...`, or set BLINKSTORE_URL, to share one cache."
    )


def reset_fallback_warning() -> None:
    """Allow the per-process warning to be logged again (tests use this)."""
    global _warned
    with _warn_lock:
        _warned = False
