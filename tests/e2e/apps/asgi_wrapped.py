"""``asgi_app`` wrapped in code, for servers without the gunicorn plugin (``blinkstore run``)."""

import importlib

from blinkstore_gunicorn.integrations import BlinkStoreMiddleware

# Imported by name: uvicorn puts this directory (not the repository) on sys.path.
app = BlinkStoreMiddleware(importlib.import_module("asgi_app").app)
