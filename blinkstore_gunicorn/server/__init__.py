"""The store process: asyncio (+uvloop) server speaking Blink Store text and RESP2.

``StoreServer`` runs inside an event loop you own; ``serve(settings)`` runs one until SIGTERM
or SIGINT (what ``blinkstore serve`` does).
"""

from blinkstore_gunicorn.server.store import StoreServer, serve

__all__ = ["StoreServer", "serve"]
