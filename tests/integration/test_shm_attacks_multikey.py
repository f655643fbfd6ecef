"""Multi-key writes are atomic to readers (issue 23, item 8): ``Cache.get_many`` of keys one
MSET (or one MULTI/EXEC) wrote never returns values of two different writes."""

from __future__ import annotations

import pytest
import redis

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.shm import handout
from harness.processes import StoreProcess
from tests.conftest import StoreFactory
from tests.integration.shm_attack_support import redis_client, started_child

pytestmark = [
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
    pytest.mark.usefixtures("shm_path"),  # the C helper's path, then the Python reference
]

KEYS = [f"basket:{n}" for n in range(8)]
READS = 20_000
BOUND = 120.0


def _write_versions(path: str, rounds: int) -> int:
    """Write every key with one version per write: MSET and MULTI/EXEC in turn."""
    client = redis.Redis(unix_socket_path=path, socket_timeout=30)
    for version in range(1, rounds + 1):
        if version % 2:
            client.mset(dict.fromkeys(KEYS, version))
        else:
            with client.pipeline(transaction=True) as pipe:
                for key in KEYS:
                    pipe.set(key, version)
                pipe.execute()
    return rounds


def _mixed_reads(url: str, reads: int) -> tuple[int, int]:
    """``(get_many calls that mixed versions, calls that found every key)``."""
    cache = Cache(url)
    mixed = whole = 0
    for _ in range(reads):
        found = cache.get_many(KEYS)
        if len(found) == len(KEYS):
            whole += 1
            mixed += len(set(found.values())) > 1
    return mixed, whole


def test_get_many_never_mixes_two_multi_key_writes(blinkstore_factory: StoreFactory) -> None:
    store: StoreProcess = blinkstore_factory()
    assert store.unix_path is not None
    with redis_client(store) as client:
        hits_before = client.info()["shm_keyspace_hits"]
    with (
        started_child(_write_versions, store.unix_path, 1_000_000) as writer,
        started_child(_mixed_reads, store.url, READS) as first,
        started_child(_mixed_reads, store.url, READS) as second,
    ):
        results = []
        for reader in (first, second):
            assert reader.poll(BOUND), f"{READS} get_many calls did not end"
            results.append(reader.recv())
        assert not writer.poll(0), f"the writer stopped early: {writer.recv()}"
    assert all(outcome == "ok" for outcome, _ in results), results
    mixed = sum(counts[0] for _, counts in results)
    whole = sum(counts[1] for _, counts in results)
    assert whole > READS // 2, "the readers found the keys"
    assert mixed == 0, f"{mixed} of {whole} get_many calls mixed two writes"
    with redis_client(store) as client:
        assert client.info()["shm_keyspace_hits"] > hits_before, "read from the region"
