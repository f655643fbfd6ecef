"""``BlinkStoreMiddleware``: hands every request the shared cache, for ASGI and WSGI apps alike.

One name serves both worlds because the gunicorn plugin wraps whatever application it loaded
without knowing which kind it is. The kind is decided once, at construction: an application whose
``__call__`` is a coroutine function is ASGI, anything else WSGI (``interface=`` overrides it).
The instance returned is of a private subclass whose ``__call__`` has the right shape, so servers
that inspect it (uvicorn, gunicorn's ``asgi`` worker, Starlette's ``TestClient``) see a proper
ASGI 3 or WSGI callable.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, overload

from blinkstore_gunicorn.client import AsyncCache, Cache
from blinkstore_gunicorn.integrations._common import DEFAULT_ON_ERROR, OnError, logger, resolve_url

if sys.version_info >= (3, 14):
    from inspect import iscoroutinefunction
else:
    # Before 3.14 only asyncio's version honours the marker that asgiref's
    # markcoroutinefunction sets, and it is the test uvicorn applies itself.
    from asyncio import iscoroutinefunction

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

__all__ = [
    "ENVIRON_KEY",
    "STATE_KEY",
    "ASGIBlinkStoreMiddleware",
    "BlinkStoreMiddleware",
    "WSGIBlinkStoreMiddleware",
    "detect_interface",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Interface = Literal["asgi", "wsgi"]
ClientT = TypeVar("ClientT", Cache, AsyncCache)

#: Key of the cache in ``scope["state"]``, hence ``request.state.cache`` in Starlette/FastAPI.
STATE_KEY = "cache"
#: Key of the cache in the WSGI environ.
ENVIRON_KEY = "blinkstore.cache"

_SHUTDOWN_REPLIES = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


def detect_interface(app: object) -> Interface:
    """Say whether ``app`` is an ASGI 3 application (``async`` callable) or a WSGI one."""
    if not callable(app):
        raise TypeError(f"BlinkStoreMiddleware needs a callable application, got {app!r}")
    if iscoroutinefunction(app) or iscoroutinefunction(app.__call__):
        return "asgi"
    return "wsgi"


class _Options(TypedDict, total=False):
    """The keyword arguments besides ``app`` and ``interface`` (for the overloads' types)."""

    url: str | None
    namespace: str | None
    on_error: OnError
    client_options: Mapping[str, Any] | None


class BlinkStoreMiddleware:
    """Give every request the shared cache, in ASGI ``scope["state"]`` or the WSGI environ.

    ASGI apps get an :class:`~blinkstore_gunicorn.client.AsyncCache` in
    ``scope["state"]["cache"]`` (HTTP and websocket scopes); it is opened at lifespan startup
    and closed at lifespan shutdown, or opened on first use when the server sends no lifespan.
    WSGI apps get a :class:`~blinkstore_gunicorn.client.Cache` in ``environ["blinkstore.cache"]``.

    ``BlinkStoreMiddleware(app)`` returns an :class:`ASGIBlinkStoreMiddleware` or a
    :class:`WSGIBlinkStoreMiddleware` (both subclasses of this class).

    ``url`` defaults to ``$BLINKSTORE_URL``, else ``memory://`` with one warning per process.
    ``on_error="miss"`` (the default) turns a store outage into cache misses instead of errors.
    A cache already present (an outer ``BlinkStoreMiddleware``) is left in place, so wrapping an
    app twice, in code and by the gunicorn config, still uses one client.
    ``client_options`` are more keyword arguments for the client (``serializer``, ``timeout``...).
    """

    interface: Interface
    app: Any
    _url: str | None
    _client_options: dict[str, Any]

    # The overloads let type checkers see the flavour: an ASGI app in, an ASGI callable out.
    @overload
    def __new__(
        cls, app: ASGIApp, *, interface: Literal["auto", "asgi"] = ..., **options: Unpack[_Options]
    ) -> ASGIBlinkStoreMiddleware: ...

    @overload
    def __new__(
        cls,
        app: WSGIApplication,
        *,
        interface: Literal["auto", "wsgi"] = ...,
        **options: Unpack[_Options],
    ) -> WSGIBlinkStoreMiddleware: ...

    @overload
    def __new__(
        cls, app: Any, *, interface: Interface | Literal["auto"] = ..., **options: Unpack[_Options]
    ) -> BlinkStoreMiddleware: ...

    # The one setup path of both flavours. It is __new__, not __init__, because type checkers
    # take the constructor's signature from __init__ when a class defines both, and the
    # overloads above would be lost; the flavours define no __init__ of their own.
    def __new__(
        cls,
        app: Any,
        *,
        interface: Interface | Literal["auto"] = "auto",
        url: str | None = None,
        namespace: str | None = None,
        on_error: OnError = DEFAULT_ON_ERROR,
        client_options: Mapping[str, Any] | None = None,
    ) -> BlinkStoreMiddleware:
        """Make the ASGI or WSGI flavour for ``app``; its client is created on first use."""
        flavour = cls if cls is not BlinkStoreMiddleware else _flavour(app, interface)
        self = super().__new__(flavour)
        self.app = app
        self._url = url
        self._client_options = {
            **(client_options or {}),
            "namespace": namespace,
            "on_error": on_error,
        }
        return self

    def _new_client(self, client_class: type[ClientT]) -> ClientT:
        """A client for this middleware's store; the URL is resolved now, at first use."""
        return client_class(resolve_url(self._url), **self._client_options)

    def __repr__(self) -> str:
        return f"<BlinkStoreMiddleware {self.interface} app={self.app!r}>"


def _flavour(app: Any, interface: str) -> type[BlinkStoreMiddleware]:
    """The middleware class for ``app``: ``interface`` as given, or detected when ``"auto"``."""
    if interface == "auto":
        interface = detect_interface(app)
    if interface == "asgi":
        return ASGIBlinkStoreMiddleware
    if interface == "wsgi":
        return WSGIBlinkStoreMiddleware
    raise ValueError(f"interface must be 'auto', 'asgi' or 'wsgi', not {interface!r}")


class ASGIBlinkStoreMiddleware(BlinkStoreMiddleware):
    """The ASGI 3 flavour of :class:`BlinkStoreMiddleware` (``interface`` is ignored here)."""

    interface: Interface = "asgi"
    _cache: AsyncCache | None = None
    # An AsyncCache belongs to the event loop it was first used on; a test client that runs
    # each request on a fresh loop must not inherit a dead loop's connections.
    _cache_loop: asyncio.AbstractEventLoop | None = None

    @property
    def cache(self) -> AsyncCache:
        """This process's client for the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        if self._cache is None or self._cache_loop is not loop:
            self._cache = self._new_client(AsyncCache)
            self._cache_loop = loop
        return self._cache

    async def aclose(self) -> None:
        """Close the client this middleware created (lifespan shutdown calls it)."""
        cache, self._cache, self._cache_loop = self._cache, None, None
        if cache is not None:
            await cache.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: lifespan, http or websocket."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind in ("http", "websocket"):
            state = scope.get("state")
            if state is None:
                state = scope["state"] = {}
            if STATE_KEY not in state:
                state[STATE_KEY] = self.cache
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The lifespan state is what servers copy into every request's scope["state"], so a
        # client put there at startup reaches all requests (and the app's own lifespan code).
        state = scope.get("state")

        async def receive_and_open() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and (
                state is not None and STATE_KEY not in state
            ):
                state[STATE_KEY] = self.cache
            return message

        async def close_then_send(message: Message) -> None:
            if message["type"] in _SHUTDOWN_REPLIES and self._cache is not None:
                try:
                    await self.aclose()
                except Exception:
                    # Failing to close a cache must never turn a clean shutdown into a failed one.
                    logger.exception("closing the cache client at lifespan shutdown failed")
            await send(message)

        await self.app(scope, receive_and_open, close_then_send)


class WSGIBlinkStoreMiddleware(BlinkStoreMiddleware):
    """The WSGI flavour of :class:`BlinkStoreMiddleware` (``interface`` is ignored here)."""

    interface: Interface = "wsgi"
    _cache: Cache | None = None
    # Taken only while a process creates or drops a middleware's client (once per middleware),
    # so one lock serves every instance.
    _lock = threading.Lock()

    @property
    def cache(self) -> Cache:
        """This process's client, created on first use (threads share it)."""
        cache = self._cache
        if cache is None:
            with self._lock:
                cache = self._cache
                if cache is None:
                    cache = self._cache = self._new_client(Cache)
        return cache

    def close(self) -> None:
        """Close the client this middleware created."""
        with self._lock:
            cache, self._cache = self._cache, None
        if cache is not None:
            cache.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one WSGI request."""
        if ENVIRON_KEY not in environ:
            environ[ENVIRON_KEY] = self.cache
        response: Iterable[bytes] = self.app(environ, start_response)
        return response
