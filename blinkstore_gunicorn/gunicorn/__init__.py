"""The gunicorn plugin: the master starts, supervises and stops a shared store.

Use ``gunicorn -c python:blinkstore_gunicorn.conf app:app``, or end an existing
``gunicorn.conf.py`` with ``from blinkstore_gunicorn.gunicorn import adopt; adopt(globals())``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from blinkstore_gunicorn.config import refuse_as_gunicorn_config

__all__ = ["adopt"]

#: gunicorn's hook when this package is mistaken for ``blinkstore_gunicorn.conf``.
on_starting = refuse_as_gunicorn_config(__name__)


def adopt(namespace: MutableMapping[str, Any]) -> None:
    """Chain the plugin's hooks into a gunicorn config namespace (see :func:`.hooks.adopt`)."""
    # Imported here: the hooks import this package's other modules, which would otherwise
    # find it half-initialised.
    from blinkstore_gunicorn.gunicorn.hooks import adopt as _adopt

    _adopt(namespace)
