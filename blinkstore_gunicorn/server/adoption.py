"""A successor store takes over what its dead predecessor's region held, before it serves.

The supervisor hands the region over with GO (``supervision/handover.py``); which entries can be
trusted is :mod:`~blinkstore_gunicorn.shm.adoption`'s business. Here every trusted entry is
written into the engine with its deadline, which also publishes it into this store's own, fresh
region: the old one is never published again (its readers were told to stop at the revocation),
and it is let go once read.
"""

from __future__ import annotations

import gc
import logging
import os
import time

from blinkstore_gunicorn.engine import Engine, EngineError, MemoryEngine
from blinkstore_gunicorn.shm.adoption import Inheritance, RegionRefused

__all__ = ["adopt_region"]

log = logging.getLogger("blinkstore.server")


def adopt_region(engine: Engine, inheritance: Inheritance, now_ms: int) -> int:
    """Write every entry of ``inheritance`` that checks out into ``engine``; return how many.

    Never raises for the region's content (at worst nothing is adopted); closes its descriptor.
    Logs one line: what was adopted and dropped, and how long it took.
    """
    started = time.perf_counter()
    rejected = 0
    region = engine.region if isinstance(engine, MemoryEngine) else None
    # Millions of new objects and no garbage among them: the cyclic collector would only walk
    # them again and again (a third of the checking pass at 200,000 keys).
    collecting = gc.isenabled()
    gc.disable()
    try:
        entries = inheritance.entries(now_ms, None if region is None else region.reserve)
        for key, value, expire_at in entries:
            try:
                engine.set(key, value, expire_at_ms=expire_at or None)
            except EngineError:
                rejected += 1  # over this store's key, value or memory limit
    except (RegionRefused, OSError, ValueError) as exc:
        log.warning("the previous store's shared-memory region is not adopted: %s", exc)
        return 0
    finally:
        os.close(inheritance.fd)
        if collecting:
            gc.enable()
    counts = inheritance.counts
    kept = counts.kept - rejected
    log.info(
        "adopted %d keys from the previous store's shared-memory region in %.0f ms "
        "(dropped: %d in doubt, %d held outside the region, %d expired, %d over a limit)",
        kept,
        (time.perf_counter() - started) * 1000,
        counts.in_doubt,
        counts.not_held,
        counts.expired,
        rejected,
    )
    return kept
