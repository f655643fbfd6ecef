"""Lua scripts through the dispatcher (no sockets): the conversion rules, errors as Redis words
them, the sandbox, the script cache, the memory bound, and BUSY with SCRIPT KILL.

Expected replies were checked against redis-server 7.0.15; where a reply carries the script's
position (``script: <sha>, on @user_script:<line>.``), the same text is what Redis sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

import pytest

from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.commands.scripting import NO_SCRIPTING
from blinkstore_gunicorn.server.scripting.busy import CANNOT_PAUSE
from tests.unit.test_commands import Harness, err

pytest.importorskip("lupa")
pytest.importorskip("greenlet")


@pytest.fixture
def r(shm_path: str) -> Harness:
    """A harness whose scripts' ``redis.call`` is the C bridge (``scripting/bridge.py``, where
    built), then the sandbox's Lua functions: every test here holds for both."""
    return Harness()


def sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def failed(script: str, message: str, line: int | None = 1) -> bytes:
    """The error reply of a script that raised ``message`` at ``line``."""
    where = f", on @user_script:{line}." if line is not None else ""
    return err(f"{message} script: {sha(script)}{where}")


def test_tail_calls_return_every_value_and_recurse(r: Harness) -> None:
    # A script's tail calls are compiled as plain calls (so that an error names the line).
    script = (
        "local function f(...) return ... end "
        "local function g(...) return f(...) end "
        "return {g(1, 'a', 3)}"
    )
    assert r("EVAL", script, "0") == b"*3\r\n:1\r\n$1\r\na\r\n:3\r\n"
    down = "local function down(n) if n == 0 then return 'done' end return down(n - 1) end "
    assert r("EVAL", down + "return down(10000)", "0") == b"$4\r\ndone\r\n"
    assert r("EVAL", "return loadstring('return select(2, ...)')(1, 2)", "0") == b":2\r\n"


def test_lua_values_become_replies(r: Harness) -> None:
    assert r("EVAL", "return 1", "0") == b":1\r\n"
    assert r("EVAL", "return 3.99", "0") == b":3\r\n"
    assert r("EVAL", "return -3.99", "0") == b":-3\r\n"
    assert r("EVAL", "return 1e30", "0") == b":-9223372036854775808\r\n"
    assert r("EVAL", "return 'a'", "0") == b"$1\r\na\r\n"
    assert r("EVAL", "return true", "0") == b":1\r\n"
    assert r("EVAL", "return false", "0") == b"$-1\r\n"
    assert r("EVAL", "return nil", "0") == b"$-1\r\n"
    assert r("EVAL", "return {1, 2, 3.7, 'a', nil, 4}", "0") == (
        b"*4\r\n:1\r\n:2\r\n:3\r\n$1\r\na\r\n"
    )
    assert r("EVAL", "return {1, {2, {3}}, 'x'}", "0") == (
        b"*3\r\n:1\r\n*2\r\n:2\r\n*1\r\n:3\r\n$1\r\nx\r\n"
    )
    assert r("EVAL", "return {foo='bar'}", "0") == b"*0\r\n"
    assert r("EVAL", "return {ok='fine'}", "0") == b"+fine\r\n"
    assert r("EVAL", "return {err='x y'}", "0") == err("x y")
    assert r("EVAL", "return redis.status_reply('FOO')", "0") == b"+FOO\r\n"
    assert r("EVAL", "return redis.error_reply('E1')", "0") == err("ERR E1")
    assert r("EVAL", "return redis.error_reply('MY E1')", "0") == err("MY E1")
    assert r("EVAL", "local t = {} t[1] = t return t", "0") == err("ERR reached lua stack limit")


def test_replies_become_lua_values(r: Harness) -> None:
    r("SET", "s", "v")
    assert r("EVAL", "return redis.call('get', 'nokey') == false", "0") == b":1\r\n"
    assert r("EVAL", "return type(redis.call('incr', 'n'))", "0") == b"$6\r\nnumber\r\n"
    assert r("EVAL", "return redis.call('set', 'a', 'b')['ok']", "0") == b"$2\r\nOK\r\n"
    assert r("EVAL", "return redis.pcall('incr', 's')['err']", "0") == (
        b"$43\r\nERR value is not an integer or out of range\r\n"
    )
    assert r("EVAL", "return #redis.call('mget', 's', 'x', 'a')", "0") == b":3\r\n"
    script = "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])"
    assert r("EVAL", script, "1", "kk", "vv") == b"$2\r\nvv\r\n"
    assert r("EVAL", "return redis.call('incrby', 'n', 2.0)", "0") == b":3\r\n"


def test_command_errors_inside_scripts(r: Harness) -> None:
    r("SET", "s", "v")
    script = "local n = redis.call('incr', 's') return n"
    assert r("EVAL", script, "0") == failed(script, "ERR value is not an integer or out of range")
    assert r("EVAL", "return redis.pcall('incr', 's')", "0") == err(
        "ERR value is not an integer or out of range"
    )
    cases = {
        "local x = redis.call('nosuch') return x": "ERR Unknown Redis command called from script",
        "local x = redis.call('incr', 'a', 'b') return x": (
            "ERR Wrong number of args calling Redis command from script"
        ),
        "local x = redis.call() return x": (
            "ERR Please specify at least one argument for this redis lib call"
        ),
        "local x = redis.call('get', {}) return x": (
            "ERR Lua redis lib command arguments must be strings or integers"
        ),
        "local x = redis.call('eval', 'return 1', 0) return x": (
            "ERR This Redis command is not allowed from script"
        ),
        "local x = redis.call('multi') return x": (
            "ERR This Redis command is not allowed from script"
        ),
    }
    for script, message in cases.items():
        assert r("EVAL", script, "0") == failed(script, message), script
    script = "local x = redis.call('set', 'x', 'y') return x"
    assert r("EVAL_RO", script, "0") == failed(
        script, "ERR Write commands are not allowed from read-only scripts."
    )
    assert r("EVAL_RO", "return redis.call('get', 's')", "0") == b"$1\r\nv\r\n"


def test_errors_raised_by_scripts(r: Harness) -> None:
    for script, message in {
        "error('boom')": "ERR user_script:1: boom",
        "error('x', 0)": "ERR x",
        "error({err='My err'})": "My err",
        "local x = 'a' + 1": "ERR user_script:1: attempt to perform arithmetic on a string value",
        "return\n\n'a' .. nil": "ERR user_script:3: attempt to concatenate a nil value",
    }.items():
        line = script.count("\n") + 1
        assert r("EVAL", script, "0") == failed(script, message, line), script
    assert r("EVAL", "return (", "0") == err(
        "ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'"
    )


def test_numkeys_and_noscript(r: Harness) -> None:
    assert r("EVAL", "return 1", "-1") == err("ERR Number of keys can't be negative")
    assert r("EVAL", "return 1", "3", "a") == err(
        "ERR Number of keys can't be greater than number of args"
    )
    assert r("EVAL", "return 1", "x") == err("ERR value is not an integer or out of range")
    assert r("EVAL", "return 1") == err("ERR wrong number of arguments for 'eval' command")
    assert r("EVALSHA", "abc", "0") == err("NOSCRIPT No matching script. Please use EVAL.")
    script = "return {KEYS[1], KEYS[2], ARGV[1], #KEYS, #ARGV}"
    assert r("EVAL", script, "2", "k1", "k2", "a1") == (
        b"*5\r\n$2\r\nk1\r\n$2\r\nk2\r\n$2\r\na1\r\n:2\r\n:1\r\n"
    )
    # KEYS[2] is nil: the array stops there.
    assert r("EVALSHA", sha(script).upper(), "1", "k", "a") == b"*1\r\n$1\r\nk\r\n"


def test_script_subcommands(r: Harness) -> None:
    digest = sha("return 1")
    assert r("SCRIPT", "EXISTS", digest, "abc") == b"*2\r\n:0\r\n:0\r\n"
    assert r("SCRIPT", "LOAD", "return 1") == b"$40\r\n" + digest.encode() + b"\r\n"
    assert r("SCRIPT", "EXISTS", digest, "abc") == b"*2\r\n:1\r\n:0\r\n"
    assert r("EVALSHA", digest, "0") == b":1\r\n"
    assert r("EVALSHA_RO", digest, "0") == b":1\r\n"
    assert r("SCRIPT", "KILL") == err("NOTBUSY No scripts in execution right now.")
    assert r("SCRIPT", "FLUSH", "ASYNC") == b"+OK\r\n"
    assert r("SCRIPT", "EXISTS", digest) == b"*1\r\n:0\r\n"
    assert r("SCRIPT", "FLUSH", "x") == err("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    assert r("SCRIPT", "LOAD") == err("ERR wrong number of arguments for 'script|load' command")
    assert r("SCRIPT", "foo") == err("ERR unknown subcommand 'foo'. Try SCRIPT HELP.")
    assert r("SCRIPT", "LOAD", "return (").startswith(b"-ERR Error compiling script")
    assert r("SCRIPT", "HELP").startswith(b"*15\r\n+SCRIPT <subcommand>")


def test_sandbox_refuses_escapes(r: Harness) -> None:
    for name in ("os", "io", "require", "loadfile", "dofile", "debug", "setfenv", "getfenv", "y"):
        script = f"return {name}"
        message = (
            f"ERR user_script:1: Script attempted to access nonexistent global variable '{name}'"
        )
        assert r("EVAL", script, "0") == failed(script, message), name
    readonly = "Attempt to modify a readonly table"
    for script in ("x = 1", "string.rep = nil", "redis.call = nil", "cjson.encode = nil"):
        assert r("EVAL", script, "0") == failed(script, f"ERR user_script:1: {readonly}"), script
    # Redis raises these from C: the message has no script position.
    for script in ("rawset(_G, 'x', 1)", "setmetatable(_G, nil)"):
        assert r("EVAL", script, "0") == failed(script, f"ERR {readonly}"), script
    # The string metatable would hand out the writable string library.
    assert r("EVAL", "return getmetatable('')", "0") == b"$-1\r\n"
    # loadstring compiles into the sandbox and refuses bytecode.
    assert r("EVAL", "return loadstring('return os')()", "0").startswith(
        b'-ERR [string "return os"]:1: Script attempted to access nonexistent global'
    )
    assert r("EVAL", "return loadstring(string.dump(function() end))", "0") == b"$-1\r\n"
    # A script's locals do not outlive it.
    assert r("EVAL", "local x = 1 return x", "0") == b":1\r\n"
    script = "return x"
    assert r("EVAL", script, "0") == failed(
        script, "ERR user_script:1: Script attempted to access nonexistent global variable 'x'"
    )


def test_libraries(r: Harness) -> None:
    assert r("EVAL", "return cjson.encode({1, 2, {a=1}})", "0") == b'$13\r\n[1,2,{"a":1}]\r\n'
    script = "local t = cjson.decode(ARGV[1]) return {t.a, t.b[2], tostring(t.c == cjson.null)}"
    assert r("EVAL", script, "0", '{"a":"x","b":[1,2],"c":null}') == (
        b"*3\r\n$1\r\nx\r\n:2\r\n$4\r\ntrue\r\n"
    )
    assert r("EVAL", "return cjson.decode('{')", "0").startswith(b"-ERR ")
    assert r("EVAL", "return {bit.band(7, 3), bit.bor(1, 2), bit.bxor(3, 1)}", "0") == (
        b"*3\r\n:3\r\n:3\r\n:2\r\n"
    )
    assert r("EVAL", "return {bit.lshift(1, 31), bit.tobit(2^32 + 5), bit.tohex(255)}", "0") == (
        b"*3\r\n:-2147483648\r\n:5\r\n$8\r\n000000ff\r\n"
    )
    assert r("EVAL", "return redis.sha1hex('')", "0") == (
        b"$40\r\nda39a3ee5e6b4b0d3255bfef95601890afd80709\r\n"
    )
    assert r("EVAL", "return {redis.LOG_DEBUG, redis.LOG_WARNING}", "0") == b"*2\r\n:0\r\n:3\r\n"
    assert r("EVAL", "redis.log(redis.LOG_NOTICE, 'from a script')", "0") == b"$-1\r\n"
    assert r("EVAL", "return coroutine.wrap(function() return 5 end)()", "0") == b":5\r\n"
    script = (
        "local f = coroutine.wrap(function(a) local b = coroutine.yield(a, nil, 2) return b end)"
        " local x, y, z = f(1) return {x, tostring(y), z, f(7)}"
    )
    assert r("EVAL", script, "0") == b"*4\r\n:1\r\n$3\r\nnil\r\n:2\r\n:7\r\n"


def test_memory_of_the_lua_state_is_bounded(r: Harness) -> None:
    script = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100000) .. i end"
    reply = r("EVAL", script, "0")
    assert reply.startswith(b"-ERR Error running script: not enough memory")
    assert r("EVAL", "return 'still here'", "0") == b"$10\r\nstill here\r\n"


def test_scripts_run_inside_exec(r: Harness) -> None:
    assert r("MULTI") == b"+OK\r\n"
    assert r("EVAL", "return redis.call('incr', 'n')", "0") == b"+QUEUED\r\n"
    assert r("EXEC") == b"*1\r\n:1\r\n"


def test_an_endless_script_inside_exec_is_stopped_at_the_threshold(r: Harness) -> None:
    # Inside EXEC a script cannot pause for BUSY replies; without a stop it would hang the store.
    r("EVAL", "return 1", "0")  # makes the scripting layer
    assert r.d.scripting is not None
    r.d.scripting.busy_threshold = 0.0
    assert r("MULTI") == b"+OK\r\n"
    assert r("EVAL", "redis.call('incr', 'n') while true do end", "0") == b"+QUEUED\r\n"
    assert r("EXEC").startswith(b"*1\r\n-" + CANNOT_PAUSE.encode())
    assert r("GET", "n") == b"$1\r\n1\r\n"
    assert r("EVAL", "return 'still here'", "0") == b"$10\r\nstill here\r\n"


def test_the_time_limit_holds_for_every_script_after_a_stop(r: Harness) -> None:
    # The count hook stays set between scripts; a stop swaps it for a line hook, which the
    # next script must not inherit, also when the stopped script caught the error and returned.
    r("EVAL", "return 1", "0")
    assert r.d.scripting is not None
    r.d.scripting.busy_threshold = 0.0
    caught = "local ok = pcall(function() while true do end end) return {ok and 1 or 0}"
    for script in (caught, "return 'next'", "while true do end", "return 'next'"):
        assert r("MULTI") == b"+OK\r\n"
        assert r("EVAL", script, "0") == b"+QUEUED\r\n"
        reply = r("EXEC")
        if script == caught:
            assert reply == b"*1\r\n*1\r\n:0\r\n"
        elif "while" in script:
            assert reply.startswith(b"*1\r\n-" + CANNOT_PAUSE.encode())
        else:
            assert reply == b"*1\r\n$4\r\nnext\r\n"


def test_time(r: Harness) -> None:
    reply = r("TIME")
    assert reply.startswith(b"*2\r\n$10\r\n")
    assert r("EVAL", "return #redis.call('time')", "0") == b":2\r\n"


def test_without_lupa_every_other_command_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lupa", None)
    r = Harness()
    assert r("EVAL", "return 1", "0") == NO_SCRIPTING
    assert b"pip install 'blinkstore-gunicorn[scripting]'" in NO_SCRIPTING
    assert r("SET", "k", "v") == b"+OK\r\n"
    assert r("SCRIPT", "EXISTS", "abc") == b"*1\r\n:0\r\n"


async def _wait_for(condition: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0)


def test_busy_script_answers_busy_and_is_killed(shm_path: str) -> None:
    async def scenario() -> None:
        r = Harness()
        assert r("SCRIPT", "FLUSH") == b"+OK\r\n"
        assert r.d.scripting is None or r.d.scripting.cache == {}
        r("EVAL", "return 1", "0")  # makes the scripting layer
        assert r.d.scripting is not None
        r.d.scripting.busy_threshold = 0.0
        replies: list[bytes] = []
        r.client.deliver = replies.append
        script = "local i = 0 while true do i = i + 1 end"
        assert r("EVAL", script, "0") is DEFERRED
        other = r.d.new_client()
        busy = err(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
        assert r("GET", "k", client=other) == busy
        assert r("EVAL", "return 1", "0", client=other) == busy
        assert r("SCRIPT", "KILL", client=other) == b"+OK\r\n"
        await _wait_for(lambda: replies, "the killed script's reply")
        assert replies == [failed(script, "ERR Script killed by user with SCRIPT KILL...", line=1)]
        assert r("GET", "k", client=other) == b"$-1\r\n"

        # A loop inside a coroutine is watched the same way.
        script = "coroutine.wrap(function() while true do end end)()"
        assert r("EVAL", script, "0") is DEFERRED
        assert r("SCRIPT", "KILL", client=other) == b"+OK\r\n"
        await _wait_for(lambda: len(replies) == 2, "the killed coroutine's reply")
        assert replies.pop().startswith(b"-ERR Script killed by user with SCRIPT KILL...")

        # A script that wrote cannot be killed: it runs to its end.
        script = "redis.call('set', 'w', '1') for i = 1, 3e6 do end return 'done'"
        assert r("EVAL", script, "0") is DEFERRED
        assert r("SCRIPT", "KILL", client=other) == err(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. "
            "You can either wait the script termination or kill the server in a hard way using "
            "the SHUTDOWN NOSAVE command."
        )
        await _wait_for(lambda: len(replies) == 2, "the unkillable script's reply")
        assert replies[1] == b"$4\r\ndone\r\n"
        assert r("GET", "w", client=other) == b"$1\r\n1\r\n"

        # Once busy, the commands a script calls are still answered (by the Python path: the
        # C runner hands over while the dispatcher's busy gate is set).
        script = "for i = 1, 3e6 do end return {redis.call('incr', 'w'), redis.call('get', 'w')}"
        assert r("EVAL", script, "0") is DEFERRED
        await _wait_for(lambda: len(replies) == 3, "the busy script's reply")
        assert replies[2] == b"*2\r\n:2\r\n$1\r\n2\r\n"

    asyncio.run(scenario())


def test_scripts_sent_only_by_eval_are_bounded(r: Harness) -> None:
    from blinkstore_gunicorn.server.scripting.scripts import MAX_EVAL_SCRIPTS

    r("SCRIPT", "LOAD", "return 'pinned'")
    for number in range(MAX_EVAL_SCRIPTS + 1):
        assert r("EVAL", f"return {number}", "0") == b":%d\r\n" % number
    assert r("SCRIPT", "EXISTS", sha("return 0"), sha("return 1")) == b"*2\r\n:0\r\n:1\r\n"
    assert r("EVALSHA", sha("return 'pinned'"), "0") == b"$6\r\npinned\r\n"
