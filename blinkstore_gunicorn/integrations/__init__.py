"""Framework integrations: ASGI/WSGI middleware, FastAPI dependency, Flask extension.

The framework modules (``.fastapi``, ``.flask``) import their framework, so import them
explicitly; this package itself needs no web framework.
"""

from blinkstore_gunicorn.integrations.middleware import (
    ENVIRON_KEY,
    STATE_KEY,
    BlinkStoreMiddleware,
    detect_interface,
)

__all__ = ["ENVIRON_KEY", "STATE_KEY", "BlinkStoreMiddleware", "detect_interface"]
