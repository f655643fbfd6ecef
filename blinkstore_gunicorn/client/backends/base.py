"""What :class:`Cache` and :class:`AsyncCache` need from a backend: bytes in, bytes out.

Keys arrive namespaced and values serialized; TTLs arrive as positive milliseconds. Backends
raise only :class:`~blinkstore_gunicorn.client.errors.CacheError` subclasses. The contract is
written once, as :class:`AsyncBackend` in ``base_aio.py``; :class:`SyncBackend` is generated
from it.
"""

from blinkstore_gunicorn.client.backends.base_aio import AsyncBackend
from blinkstore_gunicorn.client.backends.base_sync import SyncBackend

__all__ = ["AsyncBackend", "SyncBackend"]
