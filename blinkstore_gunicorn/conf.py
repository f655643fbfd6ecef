"""The gunicorn config module: ``gunicorn -c python:blinkstore_gunicorn.conf app:app``.

It starts a shared store in the master before the app is loaded (``--preload`` included) and
before the workers fork, exports ``BLINKSTORE_URL``,
supervises the store, and wraps every worker's app in ``BlinkStoreMiddleware``. An existing
``gunicorn.conf.py`` in the working directory (or the file ``$BLINKSTORE_GUNICORN_CONFIG``
names) is read first: its settings apply and its hooks run alongside ours. ``blinkstore_*``
variables there (``blinkstore_memory_limit = "256MB"``) configure the store.

See ``docs/gunicorn.md``.
"""

from blinkstore_gunicorn.gunicorn.hooks import build_config as _build_config
from blinkstore_gunicorn.gunicorn.hooks import load_user_config as _load_user_config

globals().update(_build_config(_load_user_config()))
