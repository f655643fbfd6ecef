"""A successor store takes over what its dead predecessor's region held, while it serves.

The supervisor hands the region over with GO (``supervision/handover.py``); which entries can be
trusted is :mod:`~blinkstore_gunicorn.shm.adoption`'s business. Here only the region's header is
checked before the store serves (copying a million entries first took seconds of not serving
at all); the engine then adopts a key's entry on the key's first access
(:meth:`~blinkstore_gunicorn.engine.MemoryEngine.inherit`), and :class:`Adoption` adopts the
others a few milliseconds per event-loop turn, so clients are served between the chunks.
Every entry is written into the engine with its deadline, which also publishes it into this
store's own, fresh region: the old one is never published again (its readers were told to
stop at the revocation), and it is let go once every slot was read.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

from blinkstore_gunicorn.engine import Engine, MemoryEngine
from blinkstore_gunicorn.shm.adoption import Inheritance, InheritedRegion, RegionRefused

__all__ = ["STEP_SECONDS", "Adoption", "start_adoption"]

log = logging.getLogger("blinkstore.server")

#: Seconds of background adoption per event-loop turn: what a client may wait behind it.
STEP_SECONDS = 0.002
# Inherited slots one adopt_some() call goes over (at most a few hundred microseconds' worth,
# so that a step overruns STEP_SECONDS by little).
_SLOTS = 64


def start_adoption(engine: Engine, inheritance: Inheritance) -> Adoption | None:
    """Hand ``inheritance`` to ``engine`` to adopt lazily once its header checks out; None
    (one log line, the descriptor closed) when the region is not adoptable."""
    if not isinstance(engine, MemoryEngine):
        os.close(inheritance.fd)
        log.warning("the previous store's shared-memory region is not adopted: no memory engine")
        return None
    try:
        inherited = InheritedRegion(inheritance)
    except RegionRefused as exc:
        log.warning("the previous store's shared-memory region is not adopted: %s", exc)
        return None
    engine.inherit(inherited)
    return Adoption(engine, inherited)


class Adoption:
    """The background half of an adoption: :meth:`run` adopts what no client asked for yet,
    :data:`STEP_SECONDS` per event-loop turn, and logs one line when nothing is left."""

    def __init__(self, engine: MemoryEngine, inherited: InheritedRegion) -> None:
        self._engine = engine
        self._inherited = inherited
        self._started = time.perf_counter()
        self.done = False
        # Millions of new objects and no garbage among them: the cyclic collector would only
        # walk them again and again (a third of the checking pass at 200,000 keys).
        self._collecting = gc.isenabled()
        gc.disable()

    def run(self, loop: asyncio.AbstractEventLoop) -> None:
        """Adopt the rest in the background of ``loop``."""
        loop.call_soon(self._step, loop)

    def finish(self) -> int:
        """Adopt the rest now; return how many entries were adopted in all."""
        while not self._engine.adopt_some(_SLOTS):
            pass
        self._done()
        counts = self._inherited.counts
        return counts.kept - counts.over_limit

    def _step(self, loop: asyncio.AbstractEventLoop) -> None:
        engine = self._engine
        until = time.perf_counter() + STEP_SECONDS
        while not engine.adopt_some(_SLOTS):
            if time.perf_counter() >= until:
                # call_soon: the loop polls its sockets before it runs the next step.
                loop.call_soon(self._step, loop)
                return
        self._done()

    def _done(self) -> None:
        """Once: the collector back on, and the log line (also after a FLUSHALL ended it)."""
        if self.done:
            return
        self.done = True
        if self._collecting:
            gc.enable()
        inherited = self._inherited
        counts = inherited.counts
        log.info(
            "adopted %d keys from the previous store's shared-memory region in %.0f ms "
            "(dropped: %d in doubt, %d held outside the region, %d expired, %d over a limit%s)",
            counts.kept - counts.over_limit,
            (time.perf_counter() - self._started) * 1000,
            counts.in_doubt,
            counts.not_held,
            counts.expired,
            counts.over_limit,
            "" if inherited.done else "; a FLUSHALL dropped the rest",
        )
