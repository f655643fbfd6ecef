"""Lua scripts over real sockets: each test runs against ``blinkstore serve`` and redis-server
and must pass on both. redis-py's ``register_script`` and ``Lock``, ``limits`` with
``redis://`` (EVALSHA), django-redis's ``incr`` script under threads, error replies, sandbox
escapes, and BUSY with SCRIPT KILL on an endless loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from limits import RateLimitItemPerHour
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess, blinkstore_process
from tests.support.processes import resp_server_process

pytest.importorskip("lupa")
pytest.importorskip("greenlet")

Server = StoreProcess | RedisProcess


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture
def client(server: Server) -> Iterator[redis.Redis]:
    assert server.unix_path is not None
    with redis.Redis(unix_socket_path=server.unix_path) as connection:
        connection.flushall()
        connection.script_flush()
        yield connection


def test_register_script_loads_once_then_uses_evalsha(client: redis.Redis) -> None:
    add = client.register_script("return redis.call('incrby', KEYS[1], ARGV[1]) + 0")
    assert add(keys=["n"], args=[5]) == 5
    assert add(keys=["n"], args=[2]) == 7
    assert client.script_exists(add.sha) == [True]
    client.script_flush()
    assert add(keys=["n"], args=[1]) == 8  # NOSCRIPT, then redis-py loads it again
    with pytest.raises(redis.exceptions.NoScriptError):
        client.evalsha("0" * 40, 0)


def test_redis_py_lock(client: redis.Redis, server: Server) -> None:
    assert server.unix_path is not None
    first = client.lock("resource", timeout=30, blocking=False)
    with redis.Redis(unix_socket_path=server.unix_path) as other_connection:
        second = other_connection.lock("resource", timeout=30, blocking=False)
        assert first.acquire()
        assert not second.acquire()
        assert first.owned() and not second.owned()
        assert first.extend(10)
        second.local.token = b"not the owner's token"  # the release script must refuse
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            second.release()
        second.local.token = b"not the owner's token"
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            second.extend(10)
        second.local.token = None
        first.release()
        assert second.acquire()
        assert second.reacquire()
        second.release()
    assert client.get("resource") is None


def test_limits_fixed_window_over_redis_urls(client: redis.Redis, server: Server) -> None:
    storage = storage_from_string(f"redis+unix://{server.unix_path}")
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerHour(3)
    assert [limiter.hit(item, "alice") for _ in range(5)] == [True] * 3 + [False] * 2
    assert limiter.hit(item, "bob")
    assert limiter.get_window_stats(item, "alice").remaining == 0
    limiter.clear(item, "alice")
    assert limiter.hit(item, "alice")


# django-redis's ``incr``: increment only an existing key, atomically.
INCR = """
local exists = redis.call('EXISTS', KEYS[1])
if (exists == 1) then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
else return false
end
"""


def test_incr_script_is_atomic_under_threads(client: redis.Redis, server: Server) -> None:
    assert server.unix_path is not None
    client.set("counter", 0)
    assert client.eval(INCR, 1, "missing", 1) is None

    def worker() -> None:
        with redis.Redis(unix_socket_path=server.unix_path) as connection:
            script = connection.register_script(INCR)
            for _ in range(100):
                script(keys=["counter"], args=[1])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert int(client.get("counter") or 0) == 800


def _error(client: redis.Redis, script: str, numkeys: int, *args: str) -> str:
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        client.eval(script, numkeys, *args)
    return str(caught.value)


def test_error_replies_match_redis(client: redis.Redis) -> None:
    client.set("s", "v")
    sha = client.script_load("local n = redis.call('incr', 's') return n")
    assert _error(client, "local n = redis.call('incr', 's') return n", 0) == (
        f"value is not an integer or out of range script: {sha}, on @user_script:1."
    )
    assert _error(client, "return redis.pcall('incr', 's')", 0) == (
        "value is not an integer or out of range"
    )
    assert _error(client, "return redis.error_reply('MY failure')", 0) == "MY failure"
    assert client.eval("return redis.status_reply('FINE')", 0) == b"FINE"
    assert _error(client, "return 1", -1) == "Number of keys can't be negative"
    assert _error(client, "return 1", 2, "a") == (
        "Number of keys can't be greater than number of args"
    )
    assert _error(client, "return (", 0).startswith("Error compiling script (new function): ")
    assert client.eval("return {1, 2, 3.7, 'a', nil, 4}", 0) == [1, 2, 3, b"a"]
    assert client.eval("return redis.call('get', 'nothing') == false", 0) == 1


@pytest.mark.parametrize(
    ("script", "message", "line"),
    [
        ("return redis.call('subscribe', 'x')", "This Redis command is not allowed from script", 1),
        ("\nreturn redis.call('nosuch')", "Unknown Redis command called from script", 2),
        ("return redis.call('incr', 's')", "value is not an integer or out of range", 1),
        (
            "local function get()\n  return redis.call('get')\nend\nreturn get()",
            "Wrong number of args calling Redis command from script",
            2,
        ),
    ],
    ids=["refused", "unknown", "error-reply", "in-a-function"],
)
def test_a_failed_redis_call_in_a_return_names_its_line(
    client: redis.Redis, script: str, message: str, line: int
) -> None:
    # `return redis.call(...)` is a tail call: the script's own line must still be named.
    client.set("s", "v")
    sha = client.script_load(script)
    assert _error(client, script, 0) == f"{message} script: {sha}, on @user_script:{line}."
    pcall = script.replace("redis.call", "redis.pcall")
    assert _error(client, pcall, 0) == message


@pytest.mark.parametrize(
    "script",
    [
        "return os.execute('true')",
        "return io.open('/etc/passwd')",
        "return require('os')",
        "return loadfile('/etc/passwd')",
        "return dofile('/etc/passwd')",
        "return debug.getinfo(1)",
        "leaked = true",
    ],
)
def test_sandbox_escapes_are_refused(client: redis.Redis, script: str) -> None:
    message = _error(client, script, 0)
    assert message.startswith("user_script:1: ")
    assert (
        "Script attempted to access nonexistent global variable" in message
        or "Attempt to modify a readonly table" in message
    )
    assert client.ping()


def _busy(connection: redis.Redis) -> bool:
    try:
        connection.get("k")
    except redis.exceptions.ResponseError as exc:
        assert str(exc).startswith("BUSY ")
        return True
    return False


#: Endless scripts: a plain loop, and loops that catch the kill error with pcall (in a
#: coroutine too) and go on, which would hold the store for ever.
ENDLESS = {
    "loop": "local i = 0 while true do i = i + 1 end",
    "pcall": "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
    "coroutine": (
        "local co = coroutine.wrap(function() while 1 do pcall(function() while 1 do end end)"
        " end end) while 1 do pcall(co) end"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", list(ENDLESS.values()), ids=list(ENDLESS))
def test_endless_script_gets_busy_then_script_kill(server: Server, script: str) -> None:
    # Both servers answer BUSY once the script has run their default 5 s.
    assert server.unix_path is not None
    outcome: list[BaseException | object] = []

    def run_endless() -> None:
        # redis-py's default 5 s read timeout would resend the EVAL (then BUSY) on timeout.
        with redis.Redis(unix_socket_path=server.unix_path, socket_timeout=120) as connection:
            try:
                outcome.append(connection.eval(script, 0))
            except redis.exceptions.ResponseError as exc:
                outcome.append(exc)

    runner = threading.Thread(target=run_endless)
    runner.start()
    try:
        with redis.Redis(unix_socket_path=server.unix_path, socket_timeout=120) as other:
            assert wait_until(lambda: _busy(other), timeout=60), "no BUSY from the server"
            assert other.script_kill()
            runner.join(60)
            assert len(outcome) == 1 and isinstance(outcome[0], redis.exceptions.ResponseError)
            assert str(outcome[0]).startswith("Script killed by user with SCRIPT KILL...")
            assert other.ping()
            with pytest.raises(redis.exceptions.ResponseError, match="NOTBUSY"):
                other.script_kill()
    finally:
        runner.join(60)


def test_a_script_allocating_without_bound_is_stopped() -> None:
    # Store only: redis-server bounds a script's memory with maxmemory, not per script.
    with blinkstore_process() as store:
        assert store.unix_path is not None
        with redis.Redis(unix_socket_path=store.unix_path) as connection:
            script = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100000) .. i end"
            with pytest.raises(redis.exceptions.ResponseError, match="not enough memory"):
                connection.eval(script, 0)
            assert connection.eval("return 'served'", 0) == b"served"
            assert connection.set("k", "v") and connection.get("k") == b"v"
