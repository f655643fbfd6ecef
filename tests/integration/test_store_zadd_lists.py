"""ZADD's call without flags and the list replies built from a list's width (issue 20's speed
work), run against redis-server and ``blinkstore serve``: every reply compared byte for byte,
in RESP2 and RESP3.

ZADD: a new key, new and known members, a member named twice, a score that moves a member,
one that changes nothing, bad floats (first pair or a later one: the first goes through the
full parser), nan, inf, an odd count, WRONGTYPE. Lists: LRANGE, LPOP and RPOP with a count on
items of one length and of mixed lengths (empty and over 1 KiB included), after each write
that changes the lengths a list holds.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import compare
from tests.support.processes import resp_server_process

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]


def _script(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.strip().splitlines()]


ZADD = _script(
    """
    ZADD z 1 a
    ZADD z 1 a
    ZADD z 2 b 3 c
    ZADD z 5 a
    ZRANGE z 0 -1 WITHSCORES
    ZADD z 0 c 0 c 7 d
    ZADD z 9 e 4 e
    ZRANGE z 0 -1 WITHSCORES
    ZADD z -0 f 1e3 g +2.5 h .5 i 5. j -inf k +inf l inf m
    ZRANGE z 0 -1 WITHSCORES
    ZSCORE z f
    ZADD z x a
    ZADD z 1 a x b
    ZADD z 1 a nan b
    ZADD z nan a
    ZADD z 1 a 2
    ZADD z 1
    ZADD z 1_0 a
    ZADD z " 1" a
    ZADD z "" a
    ZADD z 1 ""
    ZADD z NX 1 a 2 n
    ZADD z 1 NX
    ZADD z CH 8 a 8 b
    ZADD z CH 30 a 3 cc 4 cc 4 cc
    ZRANGE z 0 -1 WITHSCORES
    SET str v
    ZADD str 1 a
    ZADD str x a
    RPUSH list v
    ZADD list 1 a 2 b
    ZCARD z
    """
)

LISTS = _script(
    f"""
    RPUSH l aaa bbb ccc ddd
    LRANGE l 0 -1
    LRANGE l 1 2
    LRANGE l -100 100
    LRANGE l 3 1
    LPUSH l eee
    RPUSH l ff
    LRANGE l 0 -1
    LPOP l 1
    RPOP l 1
    LRANGE l 0 -1
    LPOP l 2
    RPOP l 9
    EXISTS l
    RPUSH m xx yy
    RPUSH m zzz
    LRANGE m 0 -1
    RPOP m
    LRANGE m 0 -1
    RPUSH m ww vvv
    LRANGE m 0 -1
    LSET m 2 qq
    LRANGE m 0 -1
    LSET m 0 longer
    LRANGE m 0 -1
    LREM m 1 longer
    LRANGE m 0 -1
    LINSERT m BEFORE qq p
    LRANGE m 0 -1
    LTRIM m 0 1
    LRANGE m 0 -1
    LTRIM m 0 0
    RPOPLPUSH m n
    LMOVE n m LEFT RIGHT
    LRANGE m 0 -1
    RPUSH e "" "" ""
    LRANGE e 0 -1
    LPOP e 2
    RPUSH e x
    LRANGE e 0 -1
    RPUSH big {"b" * 1500} {"c" * 1500}
    LRANGE big 0 -1
    RPUSH big d
    LPOP big 2
    LPOP big 5
    LPUSHX big {"e" * 1024}
    LPUSHX nosuch a
    LRANGE nosuch 0 -1
    LPOP nosuch 2
    SADD set a
    LRANGE set 0 -1
    LPOP set 2
    """
)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with resp_server_process("redis") as redis, resp_server_process("store") as store:
        yield redis, store


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("commands", [ZADD, LISTS], ids=["zadd", "lists"])
def test_replies_match_redis(servers: Servers, commands: list[list[str]], protocol: int) -> None:
    assert compare(servers, commands, protocol) == []
