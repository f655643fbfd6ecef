"""Wrap the application a gunicorn worker loaded in :class:`BlinkStoreMiddleware`.

Where the app lives and what kind it is depends on the worker class (gunicorn 27):

* gunicorn's native ``asgi`` worker (``gunicorn.workers.gasgi.ASGIWorker``) keeps it in
  ``worker.asgi``, and it is ASGI;
* ``uvicorn_worker.UvicornWorker`` and the deprecated ``uvicorn.workers.UvicornWorker`` keep it
  in ``worker.wsgi`` (read again in ``_serve``, after ``post_worker_init``), and it is ASGI unless
  the worker's uvicorn config says ``interface="wsgi"``;
* ``sync``, ``gthread``, ``gevent``, ``eventlet``, ``tornado`` keep a WSGI app in ``worker.wsgi``.

Every one of them reads the attribute after ``post_worker_init``, so replacing it there is
enough. The worker class decides the interface; the app's own shape is only a consistency check.
"""

from __future__ import annotations

from typing import Any, Literal

from blinkstore_gunicorn.integrations.middleware import BlinkStoreMiddleware, detect_interface

__all__ = ["close_worker_app", "worker_app_slot", "wrap_worker_app"]

Interface = Literal["asgi", "wsgi"]


def worker_app_slot(worker: Any) -> tuple[str, Interface]:
    """The attribute holding ``worker``'s application and the interface it must speak."""
    if hasattr(worker, "asgi"):
        return "asgi", "asgi"
    for cls in type(worker).__mro__:
        if cls.__name__ == "UvicornWorker":
            config = getattr(worker, "config", None)
            interface = getattr(config, "interface", "auto")
            return "wsgi", "wsgi" if interface == "wsgi" else "asgi"
    return "wsgi", "wsgi"


def wrap_worker_app(worker: Any, log: Any) -> bool:
    """Wrap the worker's app in place; return whether it was wrapped.

    An app that is already a :class:`BlinkStoreMiddleware` is left alone, and so is one whose
    shape contradicts the worker class (it would fail anyway, and the warning says why).
    """
    attribute, interface = worker_app_slot(worker)
    app = getattr(worker, attribute, None)
    if app is None or isinstance(app, BlinkStoreMiddleware):
        return False
    try:
        shape = detect_interface(app)
    except TypeError:
        shape = None
    if shape != interface:
        log.warning(
            "blinkstore: not wrapping %r: %s expects a%s %s app",
            app,
            type(worker).__name__,
            "n" if interface == "asgi" else "",
            interface.upper(),
        )
        return False
    setattr(worker, attribute, BlinkStoreMiddleware(app, interface=interface))
    log.debug("blinkstore: wrapped the %s app of worker %s", interface.upper(), worker.pid)
    return True


def close_worker_app(worker: Any) -> None:
    """Close the WSGI middleware's client when a worker exits.

    The ASGI middleware closes its client at lifespan shutdown, on its own event loop.
    """
    attribute, _ = worker_app_slot(worker)
    app = getattr(worker, attribute, None)
    if isinstance(app, BlinkStoreMiddleware) and app.interface == "wsgi":
        app.close()  # type: ignore[attr-defined]
