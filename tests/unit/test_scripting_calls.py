"""``redis.call`` runs a command's handler directly (no trip through ``Dispatcher.execute``):
what a script gets must stay what a client gets, for every spelling of a command name, and the
checks the dispatcher made (arity, WRONGTYPE, write rules) must still be made.

Expected texts are Redis 7.0.15's (the same as in ``test_scripting.py``).
"""

from __future__ import annotations

import pytest

from tests.unit.test_commands import Harness, err
from tests.unit.test_scripting import failed

pytest.importorskip("lupa")
pytest.importorskip("greenlet")


@pytest.fixture
def r(shm_path: str) -> Harness:
    """The C ``redis.call`` (where built), then the sandbox's Lua one."""
    return Harness()


@pytest.mark.parametrize("name", ["get", "GET", "GeT"])
def test_a_script_gets_what_a_client_gets(r: Harness, name: str) -> None:
    # Lower and upper case are bound once and kept; other spellings are looked up each time.
    # Two runs, so the second one goes through what the first one bound.
    r("SET", "s", "v")
    r("HSET", "h", "f", "1")
    for _ in range(2):
        assert r("EVAL", f"return redis.call('{name}', KEYS[1])", "1", "s") == r("GET", "s")
        assert r("EVAL", f"return redis.call('{name}', 'nokey')", "0") == r("GET", "nokey")
        script = f"local x = redis.call('{name}', 'h') return x"
        assert r("EVAL", script, "0") == failed(
            script, "WRONGTYPE Operation against a key holding the wrong kind of value"
        )
        assert r("EVAL", f"return redis.pcall('{name}', 'h')", "0") == err(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        )
        script = f"local x = redis.call('{name}', 'a', 'b') return x"
        assert r("EVAL", script, "0") == failed(
            script, "ERR Wrong number of args calling Redis command from script"
        )


def test_replies_of_every_kind_come_back(r: Harness) -> None:
    script = (
        "return {redis.call('SET', 'k', '5')['ok'], redis.call('INCRBY', 'k', 2),"
        " redis.call('Get', 'k'), redis.call('rpush', 'l', 'a', 'b'),"
        " redis.call('LRANGE', 'l', 0, -1), redis.pcall('incr', 'l')['err']}"
    )
    for _ in range(2):
        r("DEL", "l")
        assert r("EVAL", script, "0") == (
            b"*6\r\n$2\r\nOK\r\n:7\r\n$1\r\n7\r\n:2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
            b"$65\r\nWRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        )


@pytest.mark.parametrize("name", ["set", "SET", "sEt"])
def test_read_only_scripts_refuse_writes_in_any_spelling(r: Harness, name: str) -> None:
    script = f"local x = redis.call('{name}', 'x', 'y') return x"
    for _ in range(2):
        assert r("EVAL_RO", script, "0") == failed(
            script, "ERR Write commands are not allowed from read-only scripts."
        )
    assert r("EXISTS", "x") == b":0\r\n"
    assert r("EVAL", "return redis.call('SET', 'x', 'y')", "0") == b"+OK\r\n"


@pytest.mark.parametrize("name", ["multi", "MULTI", "Multi"])
def test_refused_commands_stay_refused(r: Harness, name: str) -> None:
    script = f"local x = redis.call('{name}') return x"
    for _ in range(2):
        assert r("EVAL", script, "0") == failed(
            script, "ERR This Redis command is not allowed from script"
        )


def test_keys_and_argv_for_any_numkeys(r: Harness) -> None:
    script = "return {#KEYS, #ARGV, KEYS[#KEYS], ARGV[#ARGV]}"
    names = [f"k{i}" for i in range(17)]
    # KEYS[0] is nil: the array stops there.
    assert r("EVAL", script, "0", "a", "b") == b"*2\r\n:0\r\n:2\r\n"
    assert r("EVAL", "return #ARGV", "0", "a", "b") == b":2\r\n"
    assert r("EVAL", "return ARGV[2]", "0", "a", "b") == b"$1\r\nb\r\n"
    assert r("EVAL", script, "2", "a", "b") == b"*3\r\n:2\r\n:0\r\n$1\r\nb\r\n"
    for numkeys in (15, 16, 17):
        reply = r("EVAL", script, str(numkeys), *names[:numkeys], "x")
        key = names[numkeys - 1].encode()
        assert reply == b"*4\r\n:%d\r\n:1\r\n$%d\r\n%b\r\n$1\r\nx\r\n" % (numkeys, len(key), key)
    for bad in ("01", "+1", " 1", "1.0"):
        assert r("EVAL", "return 1", bad) == err("ERR value is not an integer or out of range")
