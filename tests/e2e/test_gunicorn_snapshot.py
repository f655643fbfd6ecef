"""A warm cache across a full gunicorn restart: the store saves its snapshot when gunicorn stops
(SIGTERM) and the next master's store loads it before the first request (docs/persistence.md)."""

from __future__ import annotations

import os
import pwd
import signal
import stat
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.snapshot import write_file
from harness.gunicorn import CONF, Gunicorn, get, gunicorn, wait_until
from tests.e2e.test_gunicorn_deploy import open_directory

pytestmark = pytest.mark.slow

KEYS = 1000


def store_client(server: Gunicorn) -> redis.Redis:
    """A redis-py client of the master's store (its URL as the workers see it)."""
    return redis.Redis(unix_socket_path=urlsplit(get(server.url + "/env")["url"]).path)


def hit_ratio(server: Gunicorn, http: httpx.Client) -> float:
    """The store's hit ratio (INFO) over one GET request of each key, through the app."""
    r = store_client(server)
    before = r.info("stats")
    for i in range(KEYS):
        assert http.get(f"{server.url}/get?key=k{i}").status_code == 200
    after = r.info("stats")
    hits = after["keyspace_hits"] - before["keyspace_hits"]
    misses = after["keyspace_misses"] - before["keyspace_misses"]
    return hits / (hits + misses)


def stop(server: Gunicorn) -> None:
    server.wait_workers_booted(2)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0, server.log()


#: A key of every type.
TYPES = ("string", "queue", "set", "hash", "zset", "stream")


@pytest.mark.parametrize("snapshot", [True, False])
def test_first_requests_after_a_restart_hit_as_before(tmp_path: Path, snapshot: bool) -> None:
    env = {"BLINKSTORE_SNAPSHOT": str(tmp_path / "cache.rdb")} if snapshot else {}
    args = [*CONF, "-w", "2", "wsgi_app:app"]
    with httpx.Client() as http:
        with gunicorn(args, tmp_path, env=env) as server:
            for i in range(KEYS):
                http.get(f"{server.url}/set?key=k{i}&value=v{i}")
            before = hit_ratio(server, http)
            stop(server)
        with gunicorn(args, tmp_path, env=env) as server:
            after = hit_ratio(server, http)
            assert get(f"{server.url}/get?key=k7")["value"] == ("v7" if snapshot else None)
    assert before == 1.0
    # With a snapshot the first requests hit as before; without one they all miss (the
    # reason for the feature, and proof that this test can tell).
    assert after == (before if snapshot else 0.0)


def test_every_type_and_deadline_survives_sigterm_and_start(tmp_path: Path) -> None:
    env = {"BLINKSTORE_SNAPSHOT": str(tmp_path / "cache.rdb")}
    args = [*CONF, "-w", "2", "wsgi_app:app"]
    with gunicorn(args, tmp_path, env=env) as server:
        r = store_client(server)
        r.set("string", "s")
        r.rpush("queue", "a", "b")
        r.sadd("set", "m")
        r.hset("hash", "f", "v")
        r.zadd("zset", {"x": 1.5})
        r.xadd("stream", {"f": "v"}, id="7-1")
        deadline = (r.time()[0] + 3600) * 1000
        for key in TYPES:
            r.pexpireat(key, deadline)
        stop(server)
    with gunicorn(args, tmp_path, env=env) as server:
        r = store_client(server)
        assert r.get("string") == b"s"
        assert r.lrange("queue", 0, -1) == [b"a", b"b"]
        assert r.smembers("set") == {b"m"}
        assert r.hgetall("hash") == {b"f": b"v"}
        assert r.zrange("zset", 0, -1, withscores=True) == [(b"x", 1.5)]
        assert r.xrange("stream") == [(b"7-1", {b"f": b"v"})]
        for key in TYPES:
            assert 0 < r.pttl(key) <= 3_600_000, key
        assert "snapshot" in server.log() and "loaded" in server.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_under_user_the_file_is_the_workers_users_and_a_foreign_one_is_refused() -> None:
    nobody = pwd.getpwnam("nobody")
    with open_directory() as cwd:
        state = cwd / "state"
        state.mkdir(mode=0o700)
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        path = state / "cache.rdb"
        env = {"BLINKSTORE_SNAPSHOT": str(path)}
        args = [*CONF, "--user", "nobody", "--group", "nogroup", "-w", "2", "wsgi_app:app"]
        with gunicorn(args, cwd, env=env) as server:
            get(f"{server.url}/set?key=kept&value=yes")
            stop(server)
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o600)
        with gunicorn(args, cwd, env=env) as server:
            assert get(f"{server.url}/get?key=kept")["value"] == "yes"
            stop(server)
        # Now root's (readable, so that the owner is the reason): nobody's store must not
        # trust a file another user could have written.
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)
        with gunicorn(args, cwd, env=env) as server:
            assert get(f"{server.url}/get?key=kept")["value"] is None
            get(f"{server.url}/set?key=new&value=1")
            assert get(f"{server.url}/get?key=new")["value"] == "1"
            refusals = [line for line in server.log().splitlines() if "refused" in line]
            assert len(refusals) == 1 and "owned by uid 0" in refusals[0], server.log()


@pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)")
def test_after_a_kill_9_the_region_and_the_snapshot_each_bring_back_their_part(
    tmp_path: Path,
) -> None:
    env = {"BLINKSTORE_SNAPSHOT": str(tmp_path / "cache.rdb"), "BLINKSTORE_SNAPSHOT_INTERVAL": "0"}
    big = b"x" * (64 * 2**10 + 1)  # over the region's threshold: the store's heap
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path, env=env) as server:
        r = store_client(server)
        r.set("string", "old")
        r.rpush("queue", "a")
        r.set("big", big)
        assert r.save()
        r.set("string", "new")  # in the region: adopted
        r.rpush("queue", "b")  # after the snapshot, outside the region: lost
        r.hset("hash", "f", "v")
        assert wait_until(lambda: len(server.store_processes()) == 2, 60.0), server.log()
        store = server.store_pid()
        os.kill(store, signal.SIGKILL)
        assert wait_until(lambda: server.store_pid() != store, 60.0), server.log()
        assert r.get("string") == b"new"
        assert (r.lrange("queue", 0, -1), r.get("big")) == ([b"a"], big)
        assert not r.exists("hash")
        log = server.log()
        assert "shared-memory region" in log and "loaded" in log, log[-3000:]


def test_a_snapshot_that_loads_longer_than_the_start_timeout_still_starts(tmp_path: Path) -> None:
    # 100,000 keys take seconds to load, far over a start timeout of 0.2 s: the master waits
    # for the store's first PONG as much longer as the file is large.
    path = tmp_path / "cache.rdb"
    keys = (rdb.Record(b"k%d" % i, b"string", b"%d" % i, None) for i in range(100_000))
    write_file(str(path), keys)
    env = {
        "BLINKSTORE_SNAPSHOT": str(path),
        "BLINKSTORE_START_TIMEOUT": "0.2",
        "BLINKSTORE_MEMORY_LIMIT": "0",
    }
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path, env=env) as server:
        assert store_client(server).get("k99999") == b"99999"
