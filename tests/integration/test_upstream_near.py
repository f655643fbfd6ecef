"""The store as a near cache of Redis (``BLINKSTORE_UPSTREAM``): three "hosts" (three stores,
each read through its own shared region by a ``Cache``) in front of one redis-server.

Reads after a write elsewhere are waited for with a deadline: another host sees a write once
its invalidation arrived (``bench/nearcache.py`` measures that delay); the same host sees its
own write at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from blinkstore_gunicorn import Cache, CacheUpstreamError
from blinkstore_gunicorn.cli import main
from blinkstore_gunicorn.protocol import resp
from harness.gunicorn import free_port, wait_until
from harness.nearcache import NearHosts, kill_tracking, near_hosts
from harness.processes import (
    REDIS_SERVER,
    redis_server_process,
    resp_command,
    short_tempdir,
    start_blinkstore,
)

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

DEADLINE = 10.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[NearHosts]:
    """One redis-server and three stores for the module's tests (starting them is most of a
    test's time); :func:`hosts` empties them between tests."""
    with near_hosts(3) as found:
        yield found


@pytest.fixture
def hosts(fleet: NearHosts) -> NearHosts:
    """The fleet, empty: FLUSHALL upstream, and every store's copy dropped by it."""
    fleet.wait_tracking()
    marker = f"fixture:{uuid.uuid4().hex}"  # never read before: no host holds it yet
    fleet.call("SET", marker, "x")
    for store in fleet.stores:
        with store.connect() as sock:
            sock.sendall(resp_command("GET", marker))
            assert _reply(sock) == b"x"  # now tracked on every host
    fleet.call("FLUSHALL")
    # The flush reaches a store as one invalidation of everything: once the marker is gone
    # there, so is the rest.
    for store in fleet.stores:
        with store.connect() as sock:

            def flushed(sock: socket.socket = sock) -> bool:
                sock.sendall(resp_command("GET", marker))
                return _reply(sock) is None

            assert wait_until(flushed, DEADLINE)
    return fleet


def misses(hosts: NearHosts, index: int) -> int:
    """How many fetches store ``index`` made so far."""
    return int(hosts.store_info(index)["near_misses"])


@pytest.fixture
def caches(hosts: NearHosts) -> Iterator[list[Cache]]:
    opened = [Cache(store.url) for store in hosts.stores]
    try:
        yield opened
    finally:
        for cache in opened:
            cache.close()


def sees(cache: Cache, key: str, expected: object) -> bool:
    """Wait until ``cache`` reads ``expected`` under ``key``."""
    return wait_until(lambda: cache.get(key) == expected, DEADLINE)


def test_write_on_one_host_is_read_on_the_others(caches: list[Cache]) -> None:
    a, b, c = caches
    a.set("greeting", "hello")
    assert b.get("greeting") == "hello"  # fetched: never seen on B before
    assert c.get("greeting") == "hello"
    a.set("greeting", "bonjour")
    assert a.get("greeting") == "bonjour"  # read-your-writes on the writing host
    assert sees(b, "greeting", "bonjour")
    assert sees(c, "greeting", "bonjour")


def test_a_host_serves_hot_keys_locally_and_fetches_once(
    hosts: NearHosts, caches: list[Cache]
) -> None:
    a, b, _ = caches
    a.set("hot", "value")
    before = misses(hosts, 1)
    for _ in range(200):
        assert b.get("hot") == "value"
    info = hosts.store_info(1)
    assert int(info["near_misses"]) == before + 1, info
    assert "password" not in str(info)


def test_blinkstore_stats_shows_the_upstream(
    hosts: NearHosts, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--all", "--url", hosts.stores[0].url]) == 0
    rows = (line.partition(" ") for line in capsys.readouterr().out.splitlines())
    shown = {name: value.strip() for name, _, value in rows}
    assert shown["upstream"] == hosts.upstream_url
    assert shown["upstream_link"] == "up"
    for name in ("near_hits", "near_misses", "near_invalidations", "near_fetched_bytes"):
        assert shown[name].isdigit(), shown


#: Keeps Redis busy for 0.3 s (a fetch sent meanwhile waits behind it).
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 300000
"""


def test_concurrent_misses_on_a_host_share_one_fetch(hosts: NearHosts) -> None:
    hosts.call("SET", "flight", "value")
    before = misses(hosts, 1)
    readers = 16
    with contextlib.ExitStack() as stack:
        busy = stack.enter_context(socket.create_connection(("127.0.0.1", hosts.port)))
        busy.sendall(resp_command("EVAL", BUSY_SCRIPT, "0"))
        sockets = [stack.enter_context(hosts.stores[1].connect()) for _ in range(readers)]
        for sock in sockets:
            sock.sendall(resp_command("GET", "flight"))
        for sock in sockets:
            assert _reply(sock) == b"value"
        assert _reply(busy) is None
    # Whatever the interleaving: a reader either joined the fetch or found its result.
    assert misses(hosts, 1) == before + 1


def test_the_local_copy_is_bounded_and_an_evicted_key_is_fetched_again() -> None:
    limit = 2 * 2**20
    with near_hosts(1, store_args=("--memory-limit", str(limit))) as hosts:
        keys = [f"big:{n}" for n in range(500)]  # 5 MB: more than twice what the host keeps

        def value(key: str) -> bytes:
            return key.encode() + b":" + b"v" * 10_000

        hosts.call("MSET", *(part for key in keys for part in (key, value(key))))
        store = redis.Redis(unix_socket_path=hosts.stores[0].unix_path)
        hot = keys[:20]  # read first, so evicted by the time the scan ends
        try:
            for key in keys:
                assert store.get(key) == value(key)
            memory = store.info("memory")
            stats = store.info("stats")
            for key in hot:
                assert store.get(key) == value(key)  # fetched again
            fetched = int(hosts.store_info(0)["near_misses"])
            for _ in range(3):
                for key in hot:
                    assert store.get(key) == value(key)  # kept now
        finally:
            store.close()
        assert memory["used_memory"] <= limit, memory
        assert stats["evicted_keys"] > 0, stats
        assert len(keys) < fetched <= len(keys) + len(hot)
        assert int(hosts.store_info(0)["near_misses"]) == fetched


def test_the_blink_text_protocol_reads_and_writes_through_the_upstream(hosts: NearHosts) -> None:
    def lines(index: int, *requests: bytes) -> list[bytes]:
        with hosts.stores[index].connect() as sock:
            sock.sendall(b"".join(requests))
            received = b""
            while received.count(b"\n") < len(requests):
                received += sock.recv(4096)
        return received.splitlines()

    assert lines(0, b"SET t hello world\n", b"GET t\n") == [b"OK", b"VALUE aGVsbG8gd29ybGQ="]
    assert hosts.call("GET", "t") == b"hello world"
    assert lines(1, b"GET t\n", b"DELETE t\n", b"DELETE t\n", b"GET t\n") == [
        b"VALUE aGVsbG8gd29ybGQ=",
        b"OK",
        b"NOT_FOUND",
        b"NOT_FOUND",
    ]
    assert hosts.call("EXISTS", "t") == 0


def test_get_many_is_read_through_the_near_cache(hosts: NearHosts, caches: list[Cache]) -> None:
    a, b, _ = caches
    a.set_many({"m1": "one", "m2": "two"})
    wanted = {"m1": "one", "m2": "two"}
    before = misses(hosts, 1)
    assert b.get_many(["m1", "m2", "m3"]) == wanted
    assert b.get_many(["m1", "m2", "m3"]) == wanted
    assert misses(hosts, 1) == before + 3  # one fetch per key, then local
    hosts.call("SET", "m3", "three")
    assert wait_until(lambda: b.get_many(["m1", "m3"]) == {"m1": "one", "m3": b"three"}, DEADLINE)


def test_writes_straight_to_redis_reach_every_host(hosts: NearHosts, caches: list[Cache]) -> None:
    hosts.call("SET", "outside", "one")
    assert all(cache.get("outside") == b"one" for cache in caches)
    hosts.call("SET", "outside", "two")
    assert all(sees(cache, "outside", b"two") for cache in caches)
    hosts.call("DEL", "outside")
    assert all(sees(cache, "outside", None) for cache in caches)


def test_expire_and_flushdb_upstream(hosts: NearHosts, caches: list[Cache]) -> None:
    a, b, _ = caches
    a.set("short", "lived")
    a.set("other", "x")
    assert b.get("short") == "lived" and b.get("other") == "x"
    hosts.call("PEXPIRE", "short", "50")
    assert sees(b, "short", None)
    assert b.get("other") == "x"
    hosts.call("FLUSHDB")
    assert sees(b, "other", None)
    assert sees(a, "other", None)


def test_the_upstream_ttl_is_kept(caches: list[Cache]) -> None:
    a, b, _ = caches
    a.set("ttl", "v", ttl=30)
    assert b.get("ttl") == "v"
    ttl = b.ttl("ttl")
    assert ttl is not None and 0 < ttl <= 30


def test_eviction_upstream_invalidates() -> None:
    with near_hosts(2, "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as hosts:
        a, b = (Cache(store.url) for store in hosts.stores)
        try:
            a.set("first", "x" * 1000)
            assert b.get("first") == "x" * 1000
            filler = b"y" * 10_000

            def evicted() -> bool:
                for index in range(50):
                    hosts.call("SET", f"fill:{evicted.n}:{index}", filler)  # type: ignore[attr-defined]
                evicted.n += 1  # type: ignore[attr-defined]
                return hosts.call("EXISTS", "first") == 0

            evicted.n = 0  # type: ignore[attr-defined]
            assert wait_until(evicted, DEADLINE)
            assert sees(b, "first", None)
        finally:
            a.close()
            b.close()


def test_killed_tracking_link_between_write_and_read(hosts: NearHosts, caches: list[Cache]) -> None:
    a, b, _ = caches
    a.set("k", "old")
    assert b.get("k") == "old"
    losses = int(hosts.store_info(1)["upstream_link_losses"])
    kill_tracking(hosts)
    hosts.call("SET", "k", "new")
    assert sees(b, "k", b"new")
    assert wait_until(lambda: int(hosts.store_info(1)["upstream_link_losses"]) > losses, DEADLINE)
    hosts.wait_tracking()
    hosts.call("SET", "k", "newer")
    assert sees(b, "k", b"newer")


def test_redis_restart_between_write_and_read() -> None:
    with near_hosts(2) as hosts:
        a, b = (Cache(store.url) for store in hosts.stores)
        try:
            a.set("k", "before")
            assert b.get("k") == "before"
            hosts.redis.stop()
            with near_hosts(0, port=hosts.port) as restarted:
                restarted.call("SET", "k", "after")
                assert sees(b, "k", b"after")
                hosts.wait_tracking()
                a.set("k", "again")
                assert sees(b, "k", "again")
        finally:
            a.close()
            b.close()


def test_counters_and_locks_are_fleet_wide(caches: list[Cache]) -> None:
    per_host = 100

    def work(cache: Cache) -> None:
        for _ in range(per_host):
            cache.incr("hits")
            with cache.lock("guard", timeout=10):
                value = cache.get("guarded") or 0
                cache.set("guarded", value + 1)

    with concurrent.futures.ThreadPoolExecutor(len(caches)) as pool:
        list(pool.map(work, caches))
    assert caches[0].get("hits") == per_host * len(caches)
    assert all(cache.get("guarded") == per_host * len(caches) for cache in caches)


def test_a_lock_held_on_one_host_blocks_another(caches: list[Cache]) -> None:
    a, b, _ = caches
    held = a.lock("door", timeout=30)
    assert held.acquire()
    assert not b.lock("door", timeout=30).acquire(blocking=False)
    held.release()
    assert b.lock("door", timeout=30).acquire(blocking=False)


def test_rate_limit_counts_on_every_host(caches: list[Cache]) -> None:
    allowed = sum(
        cache.rate_limit("api", limit=10, period=60).allowed for _ in range(10) for cache in caches
    )
    assert allowed == 10


def test_get_or_set_runs_one_loader_for_the_whole_fleet(caches: list[Cache]) -> None:
    loads: list[int] = []
    started = threading.Barrier(len(caches) * 2)

    def loader() -> str:
        loads.append(1)
        return "computed"

    def read(cache: Cache) -> object:
        started.wait(DEADLINE)  # every reader misses at about the same moment
        return cache.get_or_set("expensive", loader, ttl=60)

    with concurrent.futures.ThreadPoolExecutor(len(caches) * 2) as pool:
        results = list(pool.map(read, caches * 2))
    # Whatever the interleaving: a caller either held the fleet's lease or read its value.
    assert results == ["computed"] * len(results)
    assert len(loads) == 1


def test_an_acl_user_reaches_the_upstream_and_its_password_stays_out_of_the_log() -> None:
    user = ("--user", "app", "on", ">app-s3cret", "~*", "&*", "+@all")
    with near_hosts(1, *user, credentials="app:app-s3cret@") as hosts:
        with Cache(hosts.stores[0].url) as cache:
            cache.set("acl", "v")
            assert cache.get("acl") == "v"
        listing = hosts.call("CLIENT", "LIST")
        assert isinstance(listing, bytes)
        names = {
            fields["name"]: fields["user"]
            for fields in (
                dict(item.split("=", 1) for item in line.split() if "=" in item)
                for line in listing.decode().splitlines()
            )
        }
        assert names["blinkstore-tracking"] == "app", names
        assert "app-s3cret" not in hosts.stores[0].log_text()


def test_pubsub_reaches_subscribers_on_other_hosts(hosts: NearHosts, caches: list[Cache]) -> None:
    a, b, c = caches
    with (
        socket.create_connection(("127.0.0.1", hosts.port), timeout=DEADLINE) as direct,
        b.subscribe("news") as on_b,
        b.subscribe("news") as on_b2,
        c.subscribe("news") as on_c,
    ):
        # Subscribed means subscribed upstream too (the store waited for Redis's
        # confirmation): a message published at once, on a connection open already,
        # is received. Redis counts one subscriber per host, not per local subscriber.
        direct.sendall(resp_command("PUBLISH", "news", "from redis"))
        assert direct.recv(64) == b":2\r\n"
        a.publish("news", "hello")
        for subscription in (on_b, on_b2, on_c):
            first = subscription.get(timeout=DEADLINE)
            second = subscription.get(timeout=DEADLINE)
            assert first is not None and second is not None
            assert (first.data, second.data) == (b"from redis", "hello")


def test_pattern_subscriptions_across_hosts_deliver_as_redis_does(caches: list[Cache]) -> None:
    a, b, c = caches
    with (
        b.subscribe(patterns=["news.*"]) as on_b,
        c.subscribe("news.sport", patterns=["news.*"]) as on_c,
    ):
        a.publish("news.sport", "goal")
        a.publish("weather", "rain")  # nobody listens
        a.publish("news.sport", "end")
        seen_b = [on_b.get(timeout=DEADLINE) for _ in range(2)]
        seen_c = [on_c.get(timeout=DEADLINE) for _ in range(4)]
        assert [(m.data, m.pattern) for m in seen_b if m] == [("goal", "news.*"), ("end", "news.*")]
        # One delivery per matching subscription, as in Redis: the channel and the pattern.
        assert sorted((m.data, m.pattern or "") for m in seen_c if m) == [
            ("end", ""),
            ("end", "news.*"),
            ("goal", ""),
            ("goal", "news.*"),
        ]
        assert on_b.get(timeout=0.2) is None and on_c.get(timeout=0.2) is None


def test_transactions_and_watch_run_upstream(hosts: NearHosts) -> None:
    a, b = (redis.Redis(unix_socket_path=store.unix_path) for store in hosts.stores[:2])
    try:
        a.set("x", "1")
        assert b.get("x") == b"1"  # now in B's near cache
        with b.pipeline() as transaction:
            transaction.set("x", "2")
            transaction.get("x")
            transaction.incr("n")
            assert transaction.execute() == [True, b"2", 1]
        assert b.get("x") == b"2" and a.get("x") == b"2"
        with b.pipeline() as watched:
            watched.watch("x")  # type: ignore[no-untyped-call]
            assert watched.get("x") == b"2"
            a.set("x", "changed on A")
            watched.multi()
            watched.set("x", "from B")
            with pytest.raises(redis.WatchError):
                watched.execute()
        assert b.get("x") == b"changed on A"
    finally:
        a.close()
        b.close()


def test_back_to_back_transactions_each_get_their_reply(hosts: NearHosts) -> None:
    # The connection a transaction was pinned to is closed once EXEC's reply is in, not as
    # soon as EXEC is sent (which lost about one reply in six).
    client = redis.Redis(unix_socket_path=hosts.stores[0].unix_path)
    try:
        for round_ in range(1, 101):
            with client.pipeline() as transaction:
                transaction.incr("round")
                transaction.get("round")
                assert transaction.execute() == [round_, str(round_).encode()]
            with client.pipeline() as watched:
                watched.watch("round")  # type: ignore[no-untyped-call]
                watched.multi()
                watched.set("watched", round_)
                assert watched.execute() == [True]
        assert hosts.call("GET", "watched") == b"100"
    finally:
        client.close()


def test_commands_that_would_take_over_a_shared_connection_are_refused(hosts: NearHosts) -> None:
    # Forwarded on a connection the host's workers share, their stream of replies (or a
    # reset protocol) would answer the other workers' requests.
    other = redis.Redis(unix_socket_path=hosts.stores[0].unix_path)
    try:
        for command in (("MONITOR",), ("SSUBSCRIBE", "shard"), ("RESET",), ("SYNC",)):
            with hosts.stores[0].connect() as sock:
                sock.sendall(resp_command(*command))
                reply = sock.recv(4096)
            assert reply.startswith(b"-ERR '" + command[0].lower().encode()), reply
            assert b"not available through a near cache" in reply
            for index in range(5):
                other.set("after", index)
                assert other.incr("after") == index + 1
    finally:
        other.close()


def test_blocking_pops_wait_fleet_wide_and_a_gone_waiter_frees_its_connection(
    hosts: NearHosts,
) -> None:
    def blocked() -> int:
        listing = hosts.call("CLIENT", "LIST")
        assert isinstance(listing, bytes)
        return listing.count(b"cmd=blpop")

    with hosts.stores[0].connect() as waiter:
        waiter.sendall(resp_command("BLPOP", "jobs", "0"))
        assert wait_until(lambda: blocked() == 1, DEADLINE)
        hosts.call("RPUSH", "jobs", "job-1")
        assert waiter.recv(64) == b"*2\r\n$4\r\njobs\r\n$5\r\njob-1\r\n"
    with hosts.stores[1].connect() as gone:
        gone.sendall(resp_command("BLPOP", "jobs", "0"))
        assert wait_until(lambda: blocked() == 1, DEADLINE)
    assert wait_until(lambda: blocked() == 0, DEADLINE)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_a_tls_upstream_is_read_and_invalidated_over_tls() -> None:
    with short_tempdir() as directory:
        cert, key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        port = free_port()
        tls = ("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
        with redis_server_process(*tls, "--tls-auth-clients", "no") as upstream:
            # The store verifies the server's certificate against this file (no TCP port
            # without TLS: "--port 0").
            env = {
                "BLINKSTORE_UPSTREAM": f"rediss://127.0.0.1:{port}/0",
                "SSL_CERT_FILE": str(cert),
            }
            store = start_blinkstore(directory=directory, env=env)
            direct = redis.Redis(unix_socket_path=upstream.unix_path)
            try:
                with Cache(store.url) as cache:
                    cache.set("tls", "one")
                    assert cache.get("tls") == "one"
                    direct.set("tls", "two")
                    assert sees(cache, "tls", b"two")
                assert "rediss://127.0.0.1" in store.log_text()
            finally:
                direct.close()
                store.stop()


def test_unreachable_upstream_at_start_reads_miss() -> None:
    port = free_port()  # nobody listens there
    with short_tempdir() as directory:
        env = {"BLINKSTORE_UPSTREAM": f"redis://user:s3cret@127.0.0.1:{port}/0"}
        store = start_blinkstore(directory=directory, env=env)
        try:
            with Cache(store.url, on_error="miss") as cache:
                assert cache.get("anything") is None
                assert cache.set("anything", "v") is False  # skipped, as in a store outage
                assert cache.get_many(["a", "b"]) == {}
            with Cache(store.url) as cache, pytest.raises(CacheUpstreamError):
                cache.set("anything", "v")
            log = store.log_text()
            assert f"redis://user@127.0.0.1:{port}/0 unreachable" in log
            assert "s3cret" not in log
        finally:
            store.stop()


def _reply(sock: socket.socket) -> object:
    reader = resp.ReplyReader()
    while (reply := reader.next_reply()) is resp.NEED_MORE:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the reply"
        reader.feed(chunk)
    return reply
