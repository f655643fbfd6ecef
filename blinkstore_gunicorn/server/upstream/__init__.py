"""The store as a coherent near cache in front of Redis/Valkey (the ``upstream`` setting).

``link`` (one pipelined connection), ``wire`` (RESP2/RESP3 replies), ``forward`` (the pools
of forwarding connections), ``near`` (the local copy and its invalidation), ``channels``
(pub/sub across hosts), ``route`` (what is local, near or forwarded) and ``service`` (the
``Upstream`` that ties them to a dispatcher). See docs/outgrowing-one-host.md.
"""

from blinkstore_gunicorn.server.upstream.service import Upstream

__all__ = ["Upstream"]
