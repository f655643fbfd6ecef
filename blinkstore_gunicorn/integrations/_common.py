"""Pieces every framework integration shares: the error policy and where the cache is."""

from __future__ import annotations

import logging
from typing import Literal

from blinkstore_gunicorn.client._core import configured_url

logger = logging.getLogger("blinkstore_gunicorn.integrations")

OnError = Literal["raise", "miss"]
#: Web integrations turn a store outage into cache misses (never a 5xx) unless told otherwise.
DEFAULT_ON_ERROR: OnError = "miss"


def resolve_url(url: str | None) -> str:
    """``url`` (an empty one counts as unset), else the client's one rule:
    ``$BLINKSTORE_URL``, else an in-process ``memory://`` store with one warning per process."""
    return configured_url(url or None)
