"""``redis.setresp(3)`` and the RESP3 conversions of scripts, against redis-server 7.0: the same
scripts sent by a RESP2 and a RESP3 client, replies compared byte for byte. Replies of the
commands a script calls reach it converted as Redis converts them (map, set, double, null,
boolean, verbatim), and what a script returns reaches the client in the client's protocol."""

from __future__ import annotations

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import compare

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]

pytestmark = pytest.mark.redis
pytest.importorskip("lupa")

SETUP = [
    ["HSET", "h", "field", "value"],
    ["SADD", "s", "member"],
    ["ZADD", "z", "1.5", "a"],
    ["SET", "n", "10"],
]

#: Each runs after ``redis.setresp(3)`` and again after ``redis.setresp(2)``.
CALLS = [
    "return redis.call('hgetall', 'h')",
    "return redis.call('hgetall', 'h')['map']['field']",
    "return redis.call('smembers', 's')",
    "return redis.call('smembers', 's')['set']['member']",
    "return type(redis.call('get', 'missing'))",
    "return redis.call('get', 'missing')",
    "return redis.call('zscore', 'z', 'a')",
    "return redis.call('zscore', 'z', 'a')['double'] * 2",
    "return redis.call('incrbyfloat', 'n', '0.5')",
    "return {redis.call('zrange', 'z', 0, -1, 'withscores')}",
    "return redis.call('ping')",
    "return redis.pcall('incr', 'h')",
    "return redis.call('exists', 'h')",
    "return {true, false, 1}",
    "return false",
    "return {double=3.141}",
    "return {double=1/0}",
    "return {big_number='123\\r\\n123'}",
    "return {verbatim_string={format='txt', string='verbatim'}}",
    "return {map={key={1, 2}}}",
    "return {set={only=true}}",
    "return {double='not a number'}",
    "return {}",
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_resp3_inside_scripts_converts_as_redis(redis_and_store: Servers, protocol: int) -> None:
    script = [list(command) for command in SETUP]
    for resp in (3, 2):
        script += [["EVAL", f"redis.setresp({resp}); {call}", "0"] for call in CALLS]
    # Each script starts in RESP2, whatever the script before it asked.
    script.append(["EVAL", "redis.setresp(3); return 1", "0"])
    script.append(["EVAL", "return redis.call('hgetall', 'h')", "0"])
    assert compare(redis_and_store, script, protocol) == []


@pytest.mark.parametrize("protocol", [2, 3])
def test_setresp_takes_only_two_or_three(redis_and_store: Servers, protocol: int) -> None:
    script = [["EVAL", f"redis.setresp({arg}) return 1", "0"] for arg in ("1", "4", "'3'", "")]
    assert compare(redis_and_store, script, protocol) == []
