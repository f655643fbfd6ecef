"""The gunicorn plugin: the master starts, supervises and stops a shared store.

Use ``gunicorn -c python:blinkstore_gunicorn.conf app:app``, or end an existing
``gunicorn.conf.py`` with ``from blinkstore_gunicorn.gunicorn import adopt; adopt(globals())``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["adopt"]


def adopt(namespace: MutableMapping[str, Any]) -> None:
    """Chain the plugin's hooks into a gunicorn config namespace (see :func:`.hooks.adopt`)."""
    # Imported here so the store keeper (``python -m blinkstore_gunicorn.gunicorn.child``) does
    # not load the hooks, the middleware and the client just by being in this package.
    from blinkstore_gunicorn.gunicorn.hooks import adopt as _adopt

    _adopt(namespace)
