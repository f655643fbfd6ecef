"""The C ``redis.call`` and reply encoder (``scripting/_luacall.c``) against the sandbox's Lua
functions, the reference: the same random scripts through both give the same replies, in RESP2
and RESP3, and leave the same data, TTLs and engine counts behind.
"""

from __future__ import annotations

import random

import pytest

from blinkstore_gunicorn.server.dispatch import Client
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from tests.unit.test_commands import Harness

pytest.importorskip("lupa")
pytest.importorskip("greenlet")

KEYS = ("k1", "k2", "h", "l")
#: Lua expressions of arguments: strings, integral and other numbers as Lua prints them
#: (%.14g), and values a call refuses.
NUMBERS = ("1", "-3", "2.5", "1e20", "2^53", "2^63", "-2^63", "0/0", "1/0", "-1/0", "0.1", "-0")
REFUSED = ("{}", "true", "nil")
#: Commands with argument shapes (a few of them wrong): 'K' a key, 'N' a number, 'S' a string.
CALLS = (
    ("GET", "K"),
    ("GET", ""),
    ("get", "KS"),
    ("SET", "KS"),
    ("set", "KN"),
    ("SET", "KSSS"),
    ("INCR", "K"),
    ("incrby", "KN"),
    ("DECR", "K"),
    ("DECRBY", "KN"),
    ("MGET", "KK"),
    ("MSET", "KSKN"),
    ("MSET", "KSK"),
    ("EXPIRE", "KN"),
    ("PEXPIRE", "KN"),
    ("TTL", "K"),
    ("DEL", "K"),
    ("EXISTS", "KK"),
    ("TYPE", "K"),
    ("HSET", "KSS"),
    ("HGETALL", "K"),
    ("LPUSH", "KS"),
    ("LRANGE", "KNN"),
    ("nosuch", "K"),
    ("CLIENT", "S"),
    ("PING", ""),
    ("GeT", "K"),
    ("INCRBYFLOAT", "KN"),
    ("EXEC", ""),
)


def _argument(rng: random.Random, kind: str) -> str:
    if kind == "K":
        return repr(rng.choice(KEYS))
    if kind == "N" or rng.random() < 0.1:
        return rng.choice(NUMBERS)
    if rng.random() < 0.03:
        return rng.choice(REFUSED)
    return repr(rng.choice(("v", "12", "-7", "abc", "", "x\ny")))


def _call(rng: random.Random) -> str:
    name, shape = rng.choice(CALLS)
    args = ", ".join([repr(name), *(_argument(rng, kind) for kind in shape)])
    how = rng.random()
    if how < 0.5:
        return f"redis.pcall({args})"
    if how < 0.8:
        # redis.call raises a failure: caught here, the error table is what the script keeps.
        return f"select(2, pcall(redis.call, {args}))"
    return f"redis.call({args})"


def _returned(rng: random.Random, depth: int = 0) -> str:
    """A Lua expression of what a script returns: every kind the conversion rules name."""
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        items = ", ".join(_returned(rng, depth + 1) for _ in range(rng.randint(0, 4)))
        return "{" + items + "}"
    if roll < 0.4:
        return f"r[{rng.randint(1, 4)}]"
    return rng.choice(
        (
            "3.99",
            "-3.99",
            "1e30",
            "-1e30",
            "0/0",
            "2^63",
            "-2^63",
            "7",
            "'s'",
            "''",
            "true",
            "false",
            "nil",
            "{ok='fine\\r\\nok'}",
            "{err='E x\\ny'}",
            "{err=5}",
            "{ok={}}",
            "{1, nil, 3}",
            "{foo='bar'}",
            "redis.status_reply('S')",
            "redis.error_reply('E')",
            "function() end",
            "r",
        )
    )


def _script(rng: random.Random) -> str:
    lines = ["local r = {}"]
    for _ in range(rng.randint(1, 6)):
        lines.append(f"r[#r + 1] = {_call(rng)}")
    lines.append(f"return {_returned(rng)}")
    return "\n".join(lines)


def _state(h: Harness) -> list[object]:
    """What a script can have changed: each key's value and TTL, and the engine's counts."""
    engine = h.engine
    keys = [(key, h("DUMP", key), h("PTTL", key)) for key in KEYS]
    return [keys, engine._used, engine._hits, engine._misses]


def _harness(monkeypatch: pytest.MonkeyPatch, native: bool) -> tuple[Harness, Client]:
    """A harness whose scripting layer has the C bridge (``native``) or not, and a RESP3
    client of it besides its RESP2 one."""
    monkeypatch.setenv(NATIVE_ENV, "1" if native else "0")
    h = Harness()
    h("SCRIPT", "LOAD", "return 1")  # makes the scripting layer, which chooses its bridge now
    assert h.d.scripting is not None
    assert h.d.scripting.native is native
    resp3 = h.d.new_client()
    assert h("HELLO", "3", client=resp3).startswith(b"%")
    return h, resp3


@pytest.mark.parametrize("seed", range(6))
def test_random_scripts_give_the_same_replies_and_data(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    pytest.importorskip("blinkstore_gunicorn.server.scripting._luacall")
    native, native3 = _harness(monkeypatch, True)
    lua, lua3 = _harness(monkeypatch, False)
    rng = random.Random(seed)
    for number in range(150):
        script = _script(rng)
        resp3 = rng.random() < 0.3
        got = native("EVAL", script, "0", client=native3 if resp3 else None)
        expected = lua("EVAL", script, "0", client=lua3 if resp3 else None)
        assert got == expected, f"script {number} of seed {seed}:\n{script}"
        if number % 10 == 0:
            assert _state(native) == _state(lua), f"after script {number} of seed {seed}"
    assert _state(native) == _state(lua)


def test_read_only_scripts_and_what_a_script_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    # The two rules the C bridge applies itself before handing a write to the C runner.
    pytest.importorskip("blinkstore_gunicorn.server.scripting._luacall")
    for native in (True, False):
        h, _ = _harness(monkeypatch, native)
        assert h("EVAL_RO", "return redis.pcall('incr', 'n')['err']", "0") == (
            b"$58\r\nERR Write commands are not allowed from read-only scripts.\r\n"
        )
        assert h("EVAL_RO", "return redis.call('get', 'n')", "0") == b"$-1\r\n"
        assert h("GET", "n") == b"$-1\r\n"
        scripting = h.d.scripting
        assert scripting is not None
        # A wrong arity is refused before the script counts as having written.
        assert h("EVAL", "return redis.pcall('incr')['err']", "0").startswith(b"$58\r\nERR Wrong")
        assert h("EVAL", "return redis.call('incr', 'n')", "0") == b":1\r\n"


def test_running_out_of_lua_memory_around_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    # Replies of 1 MiB turned into Lua strings until the state's 64 MiB are used up: the
    # failed allocation may come inside redis.call's conversion (a Lua error thrown past the C
    # function) or in the script's own code; either way the script fails as out of memory and
    # the state serves the next scripts.
    for native in (True, False):
        h, _ = _harness(monkeypatch, native)
        script = (
            "local t = {} for i = 1, 200 do "
            "redis.call('SET', 'k', ARGV[1] .. i) t[i] = redis.call('GET', 'k') end"
        )
        reply = h("EVAL", script, "0", "x" * 2**20)
        assert reply.startswith(b"-ERR Error running script: not enough memory"), reply[:200]
        assert h("EVAL", "return redis.call('GET', 'k') == ARGV[1]", "0", "v") == b"$-1\r\n"
        assert (
            h("EVAL", "return {redis.call('INCR', 'n'), 'ok'}", "0") == b"*2\r\n:1\r\n$2\r\nok\r\n"
        )


def test_the_bridge_installs_only_into_the_state_holding_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lua_State address comes from Lua's own print of a coroutine; it is trusted only once
    # the registry read through it holds the token the sandbox put there.
    luacall = pytest.importorskip("blinkstore_gunicorn.server.scripting._luacall")
    from lupa import lua51

    luacall.load(lua51.__file__)
    h, _ = _harness(monkeypatch, False)
    assert h.d.scripting is not None
    lua = h.d.scripting.lua
    co, printed = lua._attach(b"the sandbox's token")
    assert printed.startswith(b"thread: 0x")
    bridge = luacall.Bridge(lambda args: b"+OK\r\n", None, {}, h.d.scripting, h.d, h.client)
    with pytest.raises(ValueError, match="token"):
        bridge.install(int(printed.rpartition(b" ")[2], 16), b"another token", 128)
    del co
    # Nothing was installed: the sandbox's Lua functions still serve.
    assert h("EVAL", "return redis.call('PING')", "0") == b"+PONG\r\n"
