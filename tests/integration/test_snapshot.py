"""The snapshot file with real processes: ``blinkstore serve --snapshot`` saving and loading it,
redis-server 7.0 loading it and writing one the store loads, bad files refused, periodic saves
under load, and the SAVE/BGSAVE/LASTSAVE commands (docs/persistence.md)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.gunicorn import wait_until
from harness.processes import StoreProcess, redis_server_process
from tests.conftest import StoreFactory
from tests.integration.test_redis_exporter import EXPORTER, exporter_for, scrape

SNAPSHOT = "cache.rdb"
#: One key of every type, as redis-py reads it back.
EXPECTED: dict[str, object] = {
    "string": b"hello",
    "number": b"12345",
    "list": [b"a", b"b", b"c" * 300],
    "set": {b"1", b"-7", b"member"},
    "hash": {b"field": b"value", b"long": b"w" * 200},
    "zset": [(b"low", -1.5), (b"mid", 2.0), (b"top", float("inf"))],
}
#: Keys with a deadline in fill().
EXPIRING = ("number", "list", "set", "hash", "zset", "stream")


def fill_stream(r: redis.Redis, key: str = "stream") -> list[object]:
    """A stream of several nodes: entries with the node's first fields and others, a sequence
    that goes down when the millisecond goes up, deleted entries (the last one too, so its
    last ID is past its entries); return XRANGE's answer."""
    for i in range(250):
        fields: dict[str, str | int] = (
            {"n": i, "v": "x" * (i % 70)} if i % 3 else {"other": -i, "big": i * 70000}
        )
        r.xadd(key, fields, id=f"{1000 + i // 2}-{4 + i % 2 * 5}")  # type: ignore[arg-type]
    r.xdel(key, "1010-9", "1124-9")
    entries = r.xrange(key)
    assert entries
    return list(entries)


def fill_groups(r: redis.Redis, key: str = "stream") -> dict[str, object]:
    """Consumer groups on the stream: pending entries of two consumers (one acknowledged,
    one delivered twice), a consumer with none, a group with no read counter; return XINFO
    STREAM FULL's answer (the nodes too: a loaded stream keeps the file's)."""
    r.xgroup_create(key, "readers", id="0")
    r.xreadgroup("readers", "alice", {key: ">"}, count=5)
    r.xreadgroup("readers", "bob", {key: ">"}, count=3)
    r.xreadgroup("readers", "alice", {key: "0"}, count=1)
    r.xack(key, "readers", "1000-9")  # alice's second
    r.xgroup_create(key, "later", id="1100-0")
    r.xgroup_createconsumer(key, "later", "nobody")
    return stream_info(r, key)


def stream_info(r: redis.Redis, key: str) -> dict[str, object]:
    return dict(r.xinfo_stream(key, full=True))


def check_stream(r: redis.Redis, entries: object, key: str = "stream") -> None:
    assert isinstance(entries, list)
    assert stream_info(r, key) == EXPECTED[f"{key}-info"]
    assert r.xrange(key) == entries
    assert r.xrevrange(key, count=3) == entries[::-1][:3]
    with pytest.raises(redis.ResponseError, match="equal or smaller"):
        r.xadd(key, {"f": "v"}, id="1124-9")  # the deleted last ID is not given out again


def client(store: StoreProcess) -> redis.Redis:
    assert store.unix_path is not None
    return redis.Redis(unix_socket_path=store.unix_path)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fill(r: redis.Redis) -> dict[str, int]:
    """EXPECTED, each key but the string with a deadline an hour away, plus 1,000 plain
    strings; return the deadlines (absolute ms)."""
    r.set("string", "hello")
    r.set("number", 12345)
    r.rpush("list", "a", "b", "c" * 300)
    r.sadd("set", 1, -7, "member")
    r.hset("hash", mapping={"field": "value", "long": "w" * 200})
    r.zadd("zset", {"low": -1.5, "mid": 2, "top": float("inf")})
    EXPECTED["stream"] = fill_stream(r)
    EXPECTED["stream-info"] = fill_groups(r)
    r.xadd("empty-stream", {"f": "v"}, id="5-5")
    r.xdel("empty-stream", "5-5")
    deadline = now_ms() + 3_600_000
    for key in EXPIRING:
        r.pexpireat(key, deadline)
    r.mset({f"k{i}": f"v{i}" for i in range(1000)})
    return dict.fromkeys(EXPIRING, deadline)


def check(r: redis.Redis, deadlines: dict[str, int]) -> None:
    assert r.get("string") == EXPECTED["string"]
    assert r.get("number") == EXPECTED["number"]
    assert r.lrange("list", 0, -1) == EXPECTED["list"]
    assert r.smembers("set") == EXPECTED["set"]
    assert r.hgetall("hash") == EXPECTED["hash"]
    assert r.zrange("zset", 0, -1, withscores=True) == EXPECTED["zset"]
    check_stream(r, EXPECTED["stream"])
    assert (r.xlen("empty-stream"), r.type("empty-stream")) == (0, b"stream")
    assert r.mget([f"k{i}" for i in range(1000)]) == [f"v{i}".encode() for i in range(1000)]
    assert r.ttl("string") == -1
    for key, deadline in deadlines.items():
        # The same absolute deadline: what is left of it is bracketed by the clock around
        # the question.
        before = now_ms()
        left = r.pttl(key)
        after = now_ms()
        assert deadline - after - 1 <= left <= deadline - before + 1, key


def test_stop_and_start_bring_back_every_type_and_deadline(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    deadlines = fill(r)
    assert store.stop() == 0
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, os.geteuid())
    assert not [p.name for p in tmp_path.iterdir() if p.name != SNAPSHOT]  # no temporary left
    store = blinkstore_factory("--snapshot", str(path))
    check(client(store), deadlines)
    assert "loaded" in store.log_text()


def test_a_deadline_passed_while_stopped_drops_the_key(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    r.set("short", "gone", px=300)
    r.set("kept", "here")
    deadline = now_ms() + r.pttl("short")
    assert store.stop() == 0
    assert wait_until(lambda: time.time() * 1000 > deadline, 10.0)
    r = client(blinkstore_factory("--snapshot", str(path)))
    assert (r.get("short"), r.get("kept")) == (None, b"here")


def test_redis_server_loads_the_stores_snapshot(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    deadlines = fill(r)
    assert store.stop() == 0
    # Deep checks of every listpack, so that a malformed stream node would be refused.
    with redis_server_process(
        "--dir", str(tmp_path), "--dbfilename", SNAPSHOT, "--sanitize-dump-payload", "yes"
    ) as server:
        peer = redis.Redis(unix_socket_path=server.unix_path)
        check(peer, deadlines)
        assert {key: peer.pexpiretime(key) for key in deadlines} == deadlines
        assert peer.dbsize() == 1008


def test_the_store_loads_redis_servers_dump(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    with redis_server_process() as server:
        peer = redis.Redis(unix_socket_path=server.unix_path)
        deadlines = fill(peer)
        # The encodings redis-server 7.0 picks for larger objects and values too.
        peer.rpush("biglist", *range(2000))
        peer.rpush("plainlist", "x" * 20000, "y")
        peer.sadd("bigset", *(f"m{i}" for i in range(600)))
        peer.hset("bighash", mapping={f"f{i}": i for i in range(600)})
        peer.zadd("bigzset", {f"m{i}": i / 3 for i in range(300)})
        peer.set("lzf", "ab" * 5000)
        peer.set("negative", -40000)
        long_stream = fill_stream(peer, "long-stream")
        EXPECTED["long-stream-info"] = fill_groups(peer, "long-stream")
        assert peer.save()
        shutil.copy(server.directory / "dump.rdb", tmp_path / SNAPSHOT)
    os.chmod(tmp_path / SNAPSHOT, 0o600)
    store = blinkstore_factory("--snapshot", str(tmp_path / SNAPSHOT), "--memory-limit", "0")
    r = client(store)
    check(r, deadlines)
    assert r.lrange("biglist", 0, -1) == [str(i).encode() for i in range(2000)]
    assert r.lrange("plainlist", 0, -1) == [b"x" * 20000, b"y"]
    assert r.smembers("bigset") == {f"m{i}".encode() for i in range(600)}
    assert r.hgetall("bighash") == {f"f{i}".encode(): str(i).encode() for i in range(600)}
    assert r.zrange("bigzset", 0, -1, withscores=True) == [
        (f"m{i}".encode(), i / 3) for i in range(300)
    ]
    assert (r.get("lzf"), r.get("negative")) == (b"ab" * 5000, b"-40000")
    check_stream(r, long_stream, "long-stream")


LIBRARY = (
    "#!lua name=counters\n"
    "redis.register_function('bump', function(keys, args)\n"
    "  return redis.call('incrby', keys[1], args[1])\n"
    "end)\n"
)


def test_function_libraries_outlive_a_restart_and_move_to_redis_server(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    pytest.importorskip("lupa")
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    assert client(store).function_load(LIBRARY) == b"counters"
    assert store.stop() == 0
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    assert r.fcall("bump", 1, "n", 5) == 5
    assert r.bgsave()  # the forked child writes the libraries too
    assert wait_until(lambda: r.info("persistence")["rdb_bgsave_in_progress"] == 0, 20.0)
    assert store.stop() == 0
    with redis_server_process("--dir", str(tmp_path), "--dbfilename", SNAPSHOT) as server:
        peer = redis.Redis(unix_socket_path=server.unix_path)
        assert peer.fcall("bump", 1, "n", 1) == 6
        (library,) = peer.function_list()  # RESP2: a flat list of names and values
        assert library[:2] == [b"library_name", b"counters"]


def test_the_store_loads_the_function_libraries_of_redis_servers_dump(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    pytest.importorskip("lupa")
    with redis_server_process() as server:
        peer = redis.Redis(unix_socket_path=server.unix_path)
        peer.function_load(LIBRARY)
        peer.function_load(LIBRARY.replace("counters", "other").replace("'bump'", "'other'"))
        assert peer.save()
        shutil.copy(server.directory / "dump.rdb", tmp_path / SNAPSHOT)
    os.chmod(tmp_path / SNAPSHOT, 0o600)
    r = client(blinkstore_factory("--snapshot", str(tmp_path / SNAPSHOT)))
    assert (r.fcall("bump", 1, "n", 2), r.fcall("other", 1, "n", 3)) == (2, 5)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-30])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    path.write_bytes(b"REDIS0011" + path.read_bytes()[9:])


def _loose(path: Path) -> None:
    os.chmod(path, 0o644)


def _not_mine(path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)


def _symlink(path: Path) -> None:
    target = path.with_name("elsewhere.rdb")
    path.rename(target)
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_truncate, "truncated"),
        (_flip, "corrupted"),
        (_foreign, "RDB version 11"),
        (_loose, "mode 0644"),
        (_not_mine, "owned by uid"),
        (_symlink, "cannot open it"),
    ],
)
def test_a_bad_snapshot_is_refused_in_one_line_and_the_store_serves(
    blinkstore_factory: StoreFactory,
    tmp_path: Path,
    spoil: Callable[[Path], None],
    reason: str,
) -> None:
    if spoil is _not_mine and os.geteuid() != 0:
        pytest.skip("giving a file away needs root")
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    fill(client(store))
    assert store.stop() == 0
    spoil(path)
    store = blinkstore_factory("--snapshot", str(path))
    r = client(store)
    assert r.dbsize() == 0  # nothing of it, not a part
    assert r.set("after", "works") and r.get("after") == b"works"
    refusals = [line for line in store.log_text().splitlines() if "refused" in line]
    assert len(refusals) == 1, store.log_text()
    assert str(path) in refusals[0] and reason in refusals[0], refusals


def saved_everything(r: redis.Redis) -> bool:
    """Whether no change is left unsaved: a save that started after the last write is done."""
    info = r.info("persistence")
    return not info["rdb_bgsave_in_progress"] and not info["rdb_changes_since_last_save"]


def test_periodic_snapshots_under_load_survive_a_kill(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0.2")
    r = client(store)
    written: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        w = client(store)
        i = 0
        while not stop.is_set() and i < 200_000:
            w.set(f"w{i}", i)
            w.rpush("queue", i)
            written.append(i)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wait_until(lambda: r.info("persistence")["rdb_saves"] >= 3, 60.0), store.log_text()
    finally:
        stop.set()
        thread.join()

    assert wait_until(lambda: saved_everything(r), 30.0), store.log_text()
    assert r.info("persistence")["rdb_last_bgsave_status"] == "ok"
    store.stop(signal.SIGKILL)  # no save on the way out
    r = client(blinkstore_factory("--snapshot", str(path)))
    assert r.llen("queue") == len(written)
    assert r.mget([f"w{i}" for i in written]) == [str(i).encode() for i in written]


def test_a_push_after_a_periodic_save_survives_a_kill(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    # The failure test_periodic_snapshots_under_load_survive_a_kill once met, its interleaving
    # forced: the list's last push comes after the save that holds the list's other items.
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0.2")
    r = client(store)
    r.rpush("queue", 0)
    assert wait_until(lambda: saved_everything(r), 30.0), store.log_text()
    r.rpush("queue", 1)
    assert wait_until(lambda: saved_everything(r), 30.0), store.log_text()
    store.stop(signal.SIGKILL)  # no save on the way out
    assert client(blinkstore_factory("--snapshot", str(path))).lrange("queue", 0, -1) == [
        b"0",
        b"1",
    ]


@pytest.mark.parametrize(
    "write",
    [
        # The plain pushes and adds _fasttypes.c answers, then writes the engine's Python does.
        "RPUSH list b",
        "LPUSH list b",
        "SADD set b",
        "HSET hash g w",
        "ZADD zset 2 b",
        "LSET list 0 b",
        "LPOP list",
        "SREM set a",
    ],
)
def test_a_write_to_an_existing_container_is_a_change_to_save(
    blinkstore_factory: StoreFactory, tmp_path: Path, write: str
) -> None:
    # No key is WATCHed: the change count once skipped these writes then, and a periodic save
    # taken between a writer's SET and RPUSH left the push out of every later snapshot.
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    r.rpush("list", "a", "z")
    r.sadd("set", "a", "z")
    r.hset("hash", "f", "v")
    r.zadd("zset", {"a": 1})
    assert r.save()
    command, key, *rest = write.split()
    before = r.dump(key)
    r.execute_command(command, key, *rest)  # type: ignore[no-untyped-call]
    assert r.dump(key) != before
    assert r.info("persistence")["rdb_changes_since_last_save"] == 1


@pytest.mark.parametrize(
    "command",
    [
        ["FUNCTION", "LOAD", "#!lua name=other\nredis.register_function('g', function() end)"],
        ["FUNCTION", "DELETE", "lib"],
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "RESTORE", "payload", "FLUSH"],
    ],
)
def test_a_change_of_the_function_libraries_is_a_change_to_save(
    blinkstore_factory: StoreFactory, tmp_path: Path, command: list[str]
) -> None:
    # Snapshots hold the libraries, so a periodic save must follow their changes too (Redis
    # counts each as one).
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    r.function_load("#!lua name=lib\nredis.register_function('f', function() return 1 end)")
    payload = r.function_dump()
    assert r.save()
    r.execute_command(*(payload if word == "payload" else word for word in command))  # type: ignore[no-untyped-call]
    assert r.info("persistence")["rdb_changes_since_last_save"] == 1


def test_save_bgsave_lastsave_and_info(blinkstore_factory: StoreFactory, tmp_path: Path) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    r.set("a", "1")
    assert r.info("persistence")["rdb_changes_since_last_save"] == 1
    assert r.save()
    assert path.exists()
    info = r.info("persistence")
    assert (info["rdb_changes_since_last_save"], info["snapshot_keys"]) == (0, 1)
    assert info["rdb_last_save_time"] == int(r.lastsave().timestamp())
    r.set("b", "2")
    assert r.bgsave()
    assert wait_until(lambda: r.info("persistence")["rdb_bgsave_in_progress"] == 0, 30.0)
    assert r.info("persistence")["snapshot_keys"] == 2
    bare = client(blinkstore_factory())
    with pytest.raises(redis.ResponseError, match="no snapshot file is configured"):
        bare.save()
    assert bare.info("persistence")["rdb_bgsave_in_progress"] == 0


def blinkstore_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blinkstore_gunicorn", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_snapshot_save_and_info(blinkstore_factory: StoreFactory, tmp_path: Path) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    client(store).mset({"a": "1", "b": "2"})
    saved = blinkstore_cli("snapshot", "save", "--url", store.url)
    assert (saved.returncode, saved.stdout) == (0, f"saved 2 keys to {path}\n"), saved.stderr
    assert path.exists()
    info = blinkstore_cli("snapshot", "info", "--url", store.url)
    assert info.returncode == 0, info.stderr
    shown = {line[:14].strip(): line[14:] for line in info.stdout.splitlines()}
    assert (shown["path"], shown["keys"], shown["last status"]) == (str(path), "2", "ok")
    assert shown["size"].endswith(" B")
    bare = blinkstore_factory()
    refused = blinkstore_cli("snapshot", "save", "--url", bare.url)
    assert refused.returncode == 2
    assert "no snapshot file" in refused.stderr


def test_a_snapshot_directory_that_is_missing_stops_the_start_naming_the_setting(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing" / SNAPSHOT
    socket_path = str(tmp_path / "store.sock")
    started = blinkstore_cli("serve", "--unix", socket_path, "--snapshot", str(missing))
    assert started.returncode == 2
    assert "--snapshot (BLINKSTORE_SNAPSHOT)" in started.stderr
    assert f"directory {missing.parent} does not exist" in started.stderr


def test_a_near_cache_refuses_a_snapshot(tmp_path: Path) -> None:
    # Refused at start, before the upstream is reached (none listens on port 1).
    socket_path = str(tmp_path / "store.sock")
    snapshot = str(tmp_path / SNAPSHOT)
    args = ("--unix", socket_path, "--snapshot", snapshot, "--upstream", "redis://127.0.0.1:1")
    started = blinkstore_cli("serve", *args)
    assert started.returncode == 2
    assert "--snapshot (BLINKSTORE_SNAPSHOT)" in started.stderr
    assert "a near cache (--upstream) keeps no snapshot" in started.stderr


@pytest.mark.skipif(EXPORTER is None, reason="prometheus-redis-exporter is not installed")
def test_redis_exporter_persistence_metrics(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    path = tmp_path / SNAPSHOT
    store = blinkstore_factory("--snapshot", str(path), "--snapshot-interval", "0")
    r = client(store)
    with exporter_for(f"unix://{store.unix_path}", tmp_path / "exporter.log") as url:
        r.set("a", "1")
        before = scrape(url)
        assert before["redis_rdb_changes_since_last_save"] == 1
        assert before["redis_rdb_bgsave_in_progress"] == 0
        assert r.save()
        after = scrape(url)
    assert after["redis_rdb_changes_since_last_save"] == 0
    assert after["redis_rdb_last_bgsave_status"] == 1
    assert after["redis_rdb_last_save_timestamp_seconds"] == int(r.lastsave().timestamp())
