"""Pipelines against a real ``blinkstore serve``: the C splitter's request reader, hiredis's
(``BLINKSTORE_NATIVE=0``), the pure-Python one (``BLINKSTORE_HIREDIS=0`` too) and redis-server
answer the same pipelined stream, sent in pieces split at random points, with the same bytes.

The split seed is printed (``pytest -s``) and named in a failure; ``RESP_FUZZ_SEED`` replays it.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from bench import pipeline
from blinkstore_gunicorn.protocol.resp_hiredis import ENV, available
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from harness.processes import REDIS_SERVER, RedisProcess, StoreProcess, resp_command
from tests.conftest import StoreFactory
from tests.integration.test_store_too_large import send_in_background
from tests.support.differential import RawConnection

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not available(), reason="hiredis is not installed"),
]

BIG = b"v" * 70_000  # past the 64 KiB from which a reply is written on its own
COMMANDS: list[tuple[bytes | str, ...]] = [
    ("SET", "k", "v"),
    ("GET", "k"),
    ("GET", "missing"),
    ("MSET", *[f"m{i}" if j == 0 else f"value {i}" for i in range(10) for j in range(2)]),
    ("MGET", "m0", "missing", "m9", "k"),
    ("INCR", "n"),
    ("INCR", "k"),
    ("SET", "big", BIG),
    ("GET", "big"),
    ("GET", "big"),
    ("get", "k"),
    ("GET",),
    ("MSET", "a"),
    ("DEL", "k", "m0", "missing"),
    ("SET", "crlf", b"a\r\n*1\r\n$4\r\nPING\r\n"),
    ("GET", "crlf"),
    ("HSET", "h", "f", "v"),
    ("GET", "h"),
    ("MGET", "h", "m1"),
    ("PING",),
]


def answers(server: StoreProcess | RedisProcess, pieces: list[bytes], count: int) -> bytes:
    """Every reply to ``count`` requests sent as ``pieces``, on a fresh database."""
    connection = RawConnection(server)
    try:
        assert connection("FLUSHALL") == b"+OK\r\n"
        # Sent from a thread while the replies are read: a server stops reading a client
        # that leaves its replies unread.
        sender = send_in_background(connection.sock, *pieces)
        try:
            return b"".join(connection.reply() for _ in range(count))
        finally:
            sender.join(30)
    finally:
        connection.close()


def test_a_split_pipeline_gets_redis_servers_answers_from_every_reader(
    blinkstore_factory: StoreFactory, redis_server: RedisProcess
) -> None:
    seed = int(os.environ.get("RESP_FUZZ_SEED", random.randrange(2**32)))
    print(f"RESP_FUZZ_SEED={seed}")
    rnd = random.Random(seed)
    fast = blinkstore_factory()
    hiredis = blinkstore_factory(env={NATIVE_ENV: "0"})
    python = blinkstore_factory(env={ENV: "0", NATIVE_ENV: "0"})  # no C at all
    commands = [rnd.choice(COMMANDS) for _ in range(300)]
    wire = b"".join(resp_command(*command) for command in commands)
    cuts = sorted(rnd.sample(range(1, len(wire)), 40))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    expected = answers(redis_server, pieces, len(commands))
    assert answers(fast, pieces, len(commands)) == expected, f"RESP_FUZZ_SEED={seed}"
    assert answers(hiredis, pieces, len(commands)) == expected, f"RESP_FUZZ_SEED={seed}"
    assert answers(python, pieces, len(commands)) == expected, f"RESP_FUZZ_SEED={seed}"


@pytest.mark.skipif(
    REDIS_SERVER is None or shutil.which("redis-benchmark") is None,
    reason="redis-server or redis-benchmark is not installed",
)
def test_a_tiny_bench_pipeline_run_has_every_peer_and_test() -> None:
    found = pipeline.throughput(rounds=1, requests=2000)
    assert set(found) == set(pipeline.BARS)
    for samples in found.values():
        assert set(samples) == set(pipeline.PEERS)
        assert all(len(runs) == 1 and runs[0][0] > 0 for runs in samples.values())


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        pipeline.main(["--rounds", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_the_in_process_figures_have_every_configuration() -> None:
    found = pipeline.in_process(rounds=1)
    assert set(found) == set(pipeline.STORES)
    assert all(served > 0 and parsed > 0 for served, parsed in found.values())
