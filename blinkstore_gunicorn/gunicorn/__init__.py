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
    # Imported here: the hooks import this package's other modules, which would otherwise
    # find it half-initialised.
    from blinkstore_gunicorn.gunicorn.hooks import adopt as _adopt

    _adopt(namespace)
