"""RESP2 against a real ``blinkstore serve``: redis-py, redis-cli and redis-benchmark."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from harness.processes import StoreProcess, resp_command

# Plain GET and MGET are answered in C (server/_fastcmd.c), then by the Python reference.
pytestmark = pytest.mark.usefixtures("shm_path")

REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCHMARK = shutil.which("redis-benchmark")


@pytest.fixture
def client(blinkstore: StoreProcess) -> Iterator[redis.Redis]:
    if blinkstore.unix_path is not None:
        conn = redis.Redis(unix_socket_path=blinkstore.unix_path, socket_timeout=10)
    else:
        assert blinkstore.tcp_address is not None
        host, port = blinkstore.tcp_address
        conn = redis.Redis(host=host, port=port, socket_timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def test_redis_py_strings_and_ttls(client: redis.Redis) -> None:
    assert client.ping() is True
    assert client.get("missing") is None
    assert client.set("k", b"\x00binary\r\n")
    assert client.get("k") == b"\x00binary\r\n"
    assert client.set("k", "v2", xx=True)
    assert client.set("fresh", "x", xx=True) is None
    assert client.set("k", "v3", nx=True) is None
    assert client.set("nx", "1", nx=True)
    assert client.set("ex", "1", ex=100)
    assert 99 <= client.ttl("ex") <= 100
    assert client.set("px", "1", px=5000)
    assert 4000 < client.pttl("px") <= 5000
    assert client.ttl("k") == -1
    assert client.ttl("missing") == -2
    assert client.set("k", "v4", get=True) == b"v2"
    assert client.getdel("k") == b"v4"
    assert client.exists("k", "nx", "ex") == 2
    assert client.expire("nx", 50)
    assert client.persist("nx")
    assert client.type("nx") == b"string"
    assert client.delete("nx", "ex", "nope") == 2


def test_redis_py_short_ttl_really_expires(client: redis.Redis) -> None:
    client.set("short", "v", px=50)
    time.sleep(0.3)
    assert client.get("short") is None


def test_redis_py_multi_key_and_counters(client: redis.Redis) -> None:
    assert client.mset({"a": "1", "b": "2", "c": "3"})
    assert client.mget(["a", "x", "c"]) == [b"1", None, b"3"]
    assert client.msetnx({"a": "9", "z": "9"}) is False
    assert client.incr("counter") == 1
    assert client.incrby("counter", 10) == 11
    assert client.decr("counter") == 10
    assert client.decrby("counter", 3) == 7
    assert client.incrbyfloat("float", 1.5) == 1.5
    assert client.append("s", "ab") == 2
    assert client.strlen("s") == 2
    with pytest.raises(redis.ResponseError, match="not an integer"):
        client.incr("s")
    assert client.dbsize() == 6


def test_redis_py_scan_keys_info(client: redis.Redis) -> None:
    for i in range(120):
        client.set(f"scan:{i}", i)
    client.set("unrelated", 1)
    assert len(set(client.scan_iter(match="scan:*", count=17))) == 120
    assert sorted(client.keys("scan:1?")) == sorted(f"scan:{i}".encode() for i in range(10, 20))
    info = client.info()
    assert info["redis_version"] == "7.0.15"
    assert info["db0"]["keys"] == 121
    assert info["used_memory"] > 0
    assert client.info("memory")["maxmemory"] == 64 * 2**20
    assert client.flushdb()
    assert client.dbsize() == 0


def test_redis_py_pipeline_keeps_order(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"p{i}", i)
        pipe.get(f"p{i}")
    results = pipe.execute()
    assert results[1::2] == [str(i).encode() for i in range(500)]


def test_redis_py_client_commands(client: redis.Redis) -> None:
    assert client.client_setname("tester")
    assert client.client_getname() == "tester"
    assert isinstance(client.client_id(), int)
    assert client.echo("hi") == b"hi"
    with pytest.raises(redis.ResponseError, match="unknown command 'LOLWUT'"):
        client.lolwut()
    assert client.ping()  # the connection survives an unknown command


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_both_protocol_versions(blinkstore_unix: StoreProcess, protocol: int) -> None:
    conn = redis.Redis(unix_socket_path=blinkstore_unix.unix_path, protocol=protocol)
    try:
        assert conn.ping()
        assert conn.get("nope") is None
        assert conn.mset({"a": "1", "b": "2"})
        assert conn.mget("a", "nope", "b") == [b"1", None, b"2"]
        assert conn.set("a", "x", nx=True) is None
        assert conn.config_get("maxmemory") == {"maxmemory": str(64 * 2**20)}
        assert conn.info("server")["redis_version"] == "7.0.15"
    finally:
        conn.close()


def test_large_value_round_trip(client: redis.Redis) -> None:
    value = bytes(range(256)) * 4096 * 4  # 4 MiB
    assert client.set("big", value)
    assert client.get("big") == value


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed")
def test_redis_cli(blinkstore_unix: StoreProcess) -> None:
    assert REDIS_CLI is not None and blinkstore_unix.unix_path is not None
    cli = [REDIS_CLI, "-s", blinkstore_unix.unix_path]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*cli, *args], check=False, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("PING") == "PONG\n"
    assert run("set", "a", "b") == "OK\n"
    assert run("get", "a") == "b\n"
    assert "# Keyspace" in run("info")
    assert run("nosuchcommand").startswith("ERR unknown command 'nosuchcommand'")
    # Interactive start-up (COMMAND DOCS) and a session, fed on stdin.
    done = subprocess.run(
        cli, check=False, input="get a\nincr n\n", capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout == "b\n1\n", (done.stdout, done.stderr)


@pytest.mark.skipif(REDIS_BENCHMARK is None, reason="redis-benchmark is not installed")
def test_redis_benchmark(blinkstore_unix: StoreProcess) -> None:
    assert REDIS_BENCHMARK is not None and blinkstore_unix.unix_path is not None
    command = [REDIS_BENCHMARK, "-s", blinkstore_unix.unix_path, "-q", "-n", "2000", "-c", "10"]
    command += ["-t", "ping,set,get,incr,mset"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    output = done.stdout.replace("\r", "\n")
    for test in ("PING_INLINE:", "PING_MBULK:", "SET:", "GET:", "INCR:", "MSET (10 keys):"):
        lines = [line for line in output.splitlines() if line.strip().startswith(test)]
        assert any("requests per second" in line for line in lines), (test, output)
    assert "Protocol error" not in output + done.stderr
    with blinkstore_unix.connect() as sock:
        sock.sendall(resp_command("GET", "counter:__rand_int__"))
        assert sock.recv(100) == b"$4\r\n2000\r\n"
