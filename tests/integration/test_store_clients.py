"""CLIENT, HELLO and INFO's version through redis-py and raw sockets: the same code against
redis-server and ``blinkstore serve``; both must give the same answers (RQ finds its worker's
address with CLIENT SETNAME and CLIENT LIST)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess, blinkstore_process, resp_command
from tests.support.processes import resp_server_process

#: The fields of a Redis 7.0 CLIENT LIST line, in its order.
REDIS_7_0_FIELDS = [
    "id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub",
    "multi", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem",
    "tot-mem", "events", "cmd", "user", "redir", "resp",
]  # fmt: skip


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture
def client(server: StoreProcess | RedisProcess) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url, protocol=2, socket_timeout=10) as connection:
        yield connection


def raw_connection(server: StoreProcess | RedisProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(server.url.removeprefix("unix://"))
    return sock


def ask(sock: socket.socket, *args: str) -> bytes:
    sock.sendall(resp_command(*args))
    return sock.recv(65536)


def line_fields(line: str) -> list[str]:
    return [pair.split("=", 1)[0] for pair in line.split()]


def test_client_info_and_list(client: redis.Redis) -> None:
    assert client.client_setname("rq:worker:abc")
    assert client.client_getname() == "rq:worker:abc"
    own_id = client.client_id()
    info = client.client_info()
    assert int(info["id"]) == own_id and info["name"] == "rq:worker:abc"
    assert info["cmd"] == "client|info" and int(info["resp"]) == 2 and int(info["db"]) == 0
    assert (
        int(info["fd"]) > 2
        and int(info["multi"]) == -1
        and "U" in str(info["flags"])
        and str(info["addr"]).endswith(":0")
    )
    raw = client.execute_command("CLIENT", "INFO")  # type: ignore[no-untyped-call]
    assert raw.endswith(b"\n") and line_fields(raw.decode())[: len(REDIS_7_0_FIELDS)] == (
        REDIS_7_0_FIELDS
    )
    # What RQ does: its worker's address, found by name in CLIENT LIST.
    listed = client.client_list()
    mine = [entry for entry in listed if entry.get("name") == "rq:worker:abc"]
    assert len(mine) == 1 and mine[0]["addr"] == info["addr"] and int(mine[0]["id"]) == own_id
    assert mine[0]["cmd"] == "client|list"
    assert [int(entry["id"]) for entry in client.client_list(client_id=[own_id])] == [own_id]
    assert all(int(entry["id"]) != own_id for entry in client.client_list(_type="pubsub"))
    with pytest.raises(redis.ResponseError, match=r"^Unknown client type 'bogus'$"):
        client.execute_command("CLIENT", "LIST", "TYPE", "bogus")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^Invalid client ID$"):
        client.execute_command("CLIENT", "LIST", "ID", "x")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^Client names cannot contain spaces"):
        client.client_setname("two words")
    with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'client"):
        client.execute_command("CLIENT", "INFO", "extra")  # type: ignore[no-untyped-call]
    assert client.ping()


def test_client_list_shows_other_connections(server: StoreProcess | RedisProcess) -> None:
    with raw_connection(server) as other, redis.Redis.from_url(server.url) as client:
        other_id = int(ask(other, "CLIENT", "ID")[1:-2])
        assert ask(other, "SUBSCRIBE", "news").startswith(b"*3\r\n")
        entry = client.client_list(client_id=[other_id])[0]
        assert int(entry["sub"]) == 1 and int(entry["psub"]) == 0 and "P" in entry["flags"]
        assert entry["cmd"] == "subscribe"
        assert [int(e["id"]) for e in client.client_list(_type="pubsub")] == [other_id]


def test_client_kill(server: StoreProcess | RedisProcess) -> None:
    with (
        raw_connection(server) as victim,
        raw_connection(server) as second,
        redis.Redis.from_url(server.url) as client,
    ):
        victim_id = int(ask(victim, "CLIENT", "ID")[1:-2])
        assert client.client_kill_filter(_id=victim_id) == 1
        assert victim.recv(100) == b""  # closed by the store
        second_info = ask(second, "CLIENT", "INFO").decode()
        second_addr = second_info.split(" addr=", 1)[1].split(" ", 1)[0]
        second_id = int(second_info.split("id=", 1)[1].split(" ", 1)[0])
        assert wait_until(
            lambda: victim_id not in [int(e["id"]) for e in client.client_list()], timeout=10
        )
        # Unix sockets share one address (path:0): the old form kills the first client found.
        if not second_addr.endswith(":0"):
            assert client.client_kill(second_addr)
        assert client.client_kill_filter(_id=second_id, skipme=True) == 1
        assert second.recv(100) == b""
        with pytest.raises(redis.ResponseError, match=r"^No such client$"):
            client.client_kill("10.1.2.3:4")
        with pytest.raises(redis.ResponseError, match=r"^client-id should be greater than 0$"):
            client.execute_command("CLIENT", "KILL", "ID", "0")
        with pytest.raises(redis.ResponseError, match=r"^No such user 'nobody'$"):
            client.execute_command("CLIENT", "KILL", "USER", "nobody")
        # SKIPME yes (the default) spares the caller.
        own_id = client.client_id()
        assert client.client_kill_filter(_id=own_id) == 0 and client.ping()


def test_client_setinfo_redis_py_sends(server: StoreProcess | RedisProcess) -> None:
    # redis-py sends CLIENT SETINFO when it connects and ignores an error (Redis 7.0 has no
    # SETINFO: it came with 7.2). The store accepts it and shows it in CLIENT INFO.
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()
        info = client.client_info()
        if isinstance(server, StoreProcess):
            assert info["lib-name"] == "redis-py" and info["lib-ver"] == redis.__version__
        else:
            assert "lib-name" not in info


def test_hello_and_redis_version(server: StoreProcess | RedisProcess) -> None:
    with raw_connection(server) as sock:
        assert ask(sock, "HELLO", "4").startswith(b"-NOPROTO")
        assert ask(sock, "HELLO", "x") == (
            b"-ERR Protocol version is not an integer or out of range\r\n"
        )
    with redis.Redis.from_url(server.url, protocol=2) as client:
        hello = client.execute_command("HELLO", "2")
        fields = dict(zip(hello[::2], hello[1::2], strict=True))
        assert fields[b"server"] == b"redis" and fields[b"proto"] == 2
        assert fields[b"version"] == b"7.0.15" and fields[b"mode"] == b"standalone"
        info = client.info("server")
        assert info["redis_version"] == "7.0.15" and info["redis_mode"] == "standalone"
        assert client.eval("return redis.REDIS_VERSION", 0) == b"7.0.15"
        if isinstance(server, StoreProcess):
            assert info["blinkstore_version"]
    with redis.Redis.from_url(server.url, protocol=3) as client:
        assert client.execute_command("HELLO", "3")[b"proto"] == 3


def test_busy_reply_threshold_is_set_at_run_time(server: StoreProcess | RedisProcess) -> None:
    pytest.importorskip("lupa")
    with redis.Redis.from_url(server.url, socket_timeout=30) as client:
        for name in ("busy-reply-threshold", "lua-time-limit"):
            assert client.config_get(name) == {name: "5000"}
        for value, why in (
            ("abc", "argument couldn't be parsed into an integer"),
            ("-1", "argument must be between 0 and 9223372036854775807 inclusive"),
        ):
            with pytest.raises(redis.ResponseError) as refused:
                client.config_set("busy-reply-threshold", value)
            assert str(refused.value) == (
                "CONFIG SET failed (possibly related to argument 'busy-reply-threshold') - " + why
            )
        with pytest.raises(redis.ResponseError, match=r"^Unknown option or number of arguments"):
            client.config_set("no-such-setting", "1")
        with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'config\|"):
            client.execute_command("CONFIG", "SET", "lua-time-limit")
        assert client.config_set("lua-time-limit", "100")
        try:
            assert client.config_get("busy-reply-threshold") == {"busy-reply-threshold": "100"}
            # A script past 100 ms is busy: another client gets BUSY, SCRIPT KILL stops it.
            outcome: list[str] = []

            def loop() -> None:
                with redis.Redis.from_url(server.url, socket_timeout=30) as runner:
                    try:
                        runner.eval("while true do end", 0)
                    except redis.ResponseError as exc:
                        outcome.append(str(exc))

            thread = threading.Thread(target=loop)
            thread.start()
            try:
                with raw_connection(server) as other:
                    assert wait_until(lambda: ask(other, "PING").startswith(b"-BUSY"), 20)
                    assert ask(other, "SCRIPT", "KILL") == b"+OK\r\n"
            finally:
                thread.join(timeout=30)
            assert outcome and outcome[0].startswith("Script killed by user with SCRIPT KILL")
        finally:
            client.config_set("busy-reply-threshold", "5000")


def test_busy_reply_threshold_setting() -> None:
    with (
        blinkstore_process("--busy-reply-threshold", "250") as store,
        redis.Redis.from_url(store.url) as client,
    ):
        assert client.config_get("lua-time-limit") == {"lua-time-limit": "250"}
        with pytest.raises(redis.ResponseError, match=r"can't set immutable config$"):
            client.config_set("maxmemory", "1")
