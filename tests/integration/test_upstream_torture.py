"""The near cache's coherence under load (short here; ``python -m bench.nearcache --torture``
runs it longer and measures the invalidation delay the check allows for).

Writers on every host and straight on Redis store increasing versions; readers on every host
read in tight loops. No read that starts after a write's acknowledgement plus the allowance
returns an older version, no value is ever torn or foreign, and the run survives a kill of
every host's tracking connection.
"""

from __future__ import annotations

import pytest

from bench.nearcache import torture
from blinkstore_gunicorn import Cache
from harness.nearcache import near_hosts
from harness.processes import REDIS_SERVER

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

#: Seconds a read may lag an acknowledged write on another host: generous, for a loaded
#: 2-core machine (the measured p99 on loopback is about a millisecond). A host writes every
#: PACE * HOST_EVERY * 2 = 1 s, so a store that missed invalidations would be caught.
ALLOWANCE = 0.25
PACE = 0.01
HOST_EVERY = 50


def test_versions_never_go_back_and_values_are_never_torn() -> None:
    with near_hosts(2) as hosts:
        caches = [Cache(store.url) for store in hosts.stores]
        try:
            found = torture(hosts, caches, 6.0, ALLOWANCE, pace=PACE, host_every=HOST_EVERY)
        finally:
            for cache in caches:
                cache.close()
        assert found["reads"] > 0, found
        assert found["torn"] == 0, found
        assert found["older"] == 0, found
        for index in range(2):
            assert int(hosts.store_info(index)["upstream_link_losses"]) >= 1
