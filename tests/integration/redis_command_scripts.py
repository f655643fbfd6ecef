"""The command scripts ``test_store_redis_commands.py`` runs on redis-server and ``blinkstore
serve``: one command a line, split like a shell line; only commands whose replies are
deterministic (ZRANDMEMBER with a count covering the set, a set's SORT with an order)."""

from __future__ import annotations

import shlex

__all__ = [
    "BINARY_BITMAPS",
    "BITMAPS",
    "ENCODINGS",
    "MPOP",
    "SORT",
    "SORTED_SET_OPERATIONS",
    "STRINGS_AND_KEYS",
]


def script(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.strip().splitlines()]


SORTED_SET_OPERATIONS = script(
    """
    ZADD z 1 a 2 b 3 c
    ZADD z2 1 x 2 y 5 b
    SADD s b x q
    SET str v
    ZUNIONSTORE out 2 z z2 WEIGHTS 1 2
    ZRANGE out 0 -1 WITHSCORES
    ZINTERSTORE out 2 z z2 AGGREGATE MAX
    ZRANGE out 0 -1 WITHSCORES
    ZINTERSTORE out 2 z z2 AGGREGATE MIN WEIGHTS 2 3
    ZRANGE out 0 -1 WITHSCORES
    ZUNION 2 z z2 WITHSCORES
    ZUNION 3 z z2 s WITHSCORES
    ZINTER 2 z s WITHSCORES
    ZINTER 2 z z2
    ZDIFF 2 z2 z WITHSCORES
    ZDIFF 2 z s
    ZDIFFSTORE out 2 z s
    ZRANGE out 0 -1 WITHSCORES
    ZDIFFSTORE out 2 z z
    EXISTS out
    ZUNION 2 z str
    ZUNION 2 nosuch str
    ZUNIONSTORE out 2 z str
    ZUNION 0 z
    ZUNIONSTORE out 0 z
    ZUNION -1 z
    ZUNION x z
    ZUNION 3 z z2
    ZUNION 1 z WEIGHTS
    ZUNION 1 z WEIGHTS x
    ZUNION 1 z WEIGHTS nan
    ZUNION 1 z WEIGHTS inf WITHSCORES
    ZUNION 2 z z WEIGHTS inf -inf WITHSCORES
    ZUNION 1 z AGGREGATE
    ZUNION 1 z AGGREGATE avg
    ZUNION 1 z WITHSCORES WITHSCORES
    ZUNION 1 z foo
    ZUNIONSTORE out 1 z WITHSCORES
    ZDIFF 1 z WEIGHTS 2
    ZDIFF 1 z AGGREGATE MAX
    ZDIFFSTORE out 1 z WEIGHTS 2
    ZUNION 1
    ZUNIONSTORE out 1
    ZINTERCARD 2 z z2
    ZINTERCARD 2 z s LIMIT 0
    ZINTERCARD 2 z z2 LIMIT 1
    ZINTERCARD 0 z
    ZINTERCARD 3 z
    ZINTERCARD 1 z LIMIT -1
    ZINTERCARD 1 z LIMIT x
    ZINTERCARD 1 z FOO 1
    ZINTERCARD 1 str
    ZINTERCARD x z
    ZRANGESTORE out z 0 -1
    ZRANGE out 0 -1 WITHSCORES
    ZRANGESTORE out z (1 +inf BYSCORE LIMIT 0 1
    ZRANGE out 0 -1 WITHSCORES
    ZRANGESTORE out z +inf -inf BYSCORE REV
    ZRANGESTORE out z 0 -1 WITHSCORES
    ZRANGESTORE out z 5 9
    EXISTS out
    ZRANGESTORE out str 0 -1
    ZRANGESTORE str z 0 -1
    TYPE str
    ZRANGESTORE out z 0
    ZRANGESTORE out z [a [c BYLEX
    ZRANDMEMBER nosuch
    ZRANDMEMBER nosuch 3
    ZRANDMEMBER nosuch 3 WITHSCORES
    ZRANDMEMBER z 5
    ZRANDMEMBER z 3 WITHSCORES
    ZRANDMEMBER z 0
    ZRANDMEMBER z x
    ZRANDMEMBER z 1 FOO
    ZRANDMEMBER z 1 WITHSCORES x
    ZRANDMEMBER z -9223372036854775808
    ZRANDMEMBER z -9223372036854775807 WITHSCORES
    ZADD one 7 m
    ZRANDMEMBER one
"""
)

MPOP = script(
    """
    ZADD z 1 a 2 b 3 c
    ZADD z2 1 x 2 y 5 b
    SET str v
    SADD s b x q
    ZMPOP 1 z MIN
    ZMPOP 2 nosuch z MAX COUNT 2
    ZMPOP 1 z MIN COUNT 5
    EXISTS z
    ZMPOP 1 z MIN
    ZMPOP 0 z MIN
    ZMPOP -1 z MIN
    ZMPOP x z MIN
    ZMPOP 1 z
    ZMPOP 1 z MID
    ZMPOP 2 z MIN
    ZMPOP 1 z MIN COUNT 0
    ZMPOP 1 z MIN COUNT -1
    ZMPOP 1 z MIN COUNT x
    ZMPOP 1 z MIN COUNT
    ZMPOP 1 z MIN COUNT 1 COUNT 1
    ZMPOP 1 z MIN FOO
    ZMPOP 2 nosuch str MIN
    ZMPOP 2 z2 str MIN
    ZMPOP 1 s MIN
    ZMPOP 1
    ZADD z 1 a
    BZMPOP 0.01 1 z MAX
    BZMPOP 0.01 1 z MAX
    BZMPOP x 1 z MAX
    BZMPOP -1 1 z MAX
    BZMPOP 0 0 z MAX
    BZMPOP x 0 z MAX
    BZMPOP 0 1 z MID
    BZMPOP 1 1 str MIN
    BZMPOP 0.01 1
    RPUSH l a b c d
    LMPOP 2 nosuch l LEFT COUNT 2
    LMPOP 1 l RIGHT
    LMPOP 1 l RIGHT COUNT 9
    LMPOP 1 l RIGHT
    LMPOP 0 l LEFT
    LMPOP 1 l UP
    LMPOP 1 l LEFT COUNT 0
    LMPOP 2 l LEFT
    LMPOP 1 str LEFT
    LMPOP x l LEFT
    LMPOP 1 l
    BLMPOP 0.01 1 l LEFT
    BLMPOP x 1 l LEFT
    BLMPOP 0 0 l LEFT
    BLMPOP 1e20 1 l LEFT
    BZMPOP inf 1 z MIN
    BLPOP l 9.3e15
    RPUSH l x
    BLMPOP 0 1 l LEFT COUNT 3
    BLMPOP 0 1 str LEFT
    BLMPOP 0.01 2 l z LEFT
    ZINTERCARD 1 z LIMIT
    ZINTERCARD 1 z LIMIT 1 2
    ZINTERCARD 1 z limit 1 LIMIT 2
    ZINTERCARD 1 z WEIGHTS 1
    ZINTERCARD 1 z WITHSCORES
    ZINTERCARD -5 z
"""
)

STRINGS_AND_KEYS = script(
    """
    SET s 1
    GETSET s 2
    GETSET nosuch 5
    GET nosuch
    SET t v EX 100
    GETSET t w
    TTL t
    HSET h a 1
    GETSET h 1
    GETSET s
    SET n 10
    GETRANGE n 0 1
    GETRANGE n -1 -1
    GETRANGE n -1 -5
    GETRANGE n 5 1
    GETRANGE n 0 100
    GETRANGE n -100 0
    GETRANGE n x 1
    GETRANGE nosuch 0 -1
    GETRANGE h 0 1
    SUBSTR n 0 0
    SET long "Hello World"
    GETRANGE long 3 -3
    GETRANGE long -3 -1
    GETRANGE long -1 -3
    GETRANGE long 100 200
    SETRANGE n 1 xx
    GET n
    SETRANGE n 10 yy
    GET n
    SETRANGE nosuch2 0 ""
    EXISTS nosuch2
    SETRANGE n 0 ""
    SETRANGE n -1 x
    SETRANGE n x x
    SETRANGE h 0 x
    SETRANGE h -1 x
    SETRANGE big 536870912 x
    SETRANGE nosuch3 3 ab
    GET nosuch3
    SET t v EX 100
    SETRANGE t 0 q
    TTL t
    SET a ohmytext
    SET b mynewtext
    LCS a b
    LCS a b LEN
    LCS a b IDX
    LCS a b IDX WITHMATCHLEN
    LCS a b IDX MINMATCHLEN 4
    LCS a b IDX MINMATCHLEN 4 WITHMATCHLEN
    LCS a b IDX MINMATCHLEN -4
    LCS a b IDX MINMATCHLEN x
    LCS a b LEN IDX
    LCS a b FOO
    LCS a b MINMATCHLEN
    LCS a nosuch
    LCS nosuch nosuch IDX
    LCS a h
    LCS h a LEN
    SET c abcabcabc
    SET e bcaxbcaba
    LCS c e IDX WITHMATCHLEN
    LCS e c IDX
    LCS c e
    EXPIRETIME nosuch
    EXPIRETIME a
    PEXPIRETIME a
    EXPIREAT a 2000000000
    EXPIRETIME a
    PEXPIREAT a 2000000000123
    PEXPIRETIME a
    EXPIRETIME a
    PEXPIREAT a 2000000000523
    EXPIRETIME a
    TOUCH a b nosuch a
    TOUCH nosuch
    RANDOMKEY x
    OBJECT ENCODING nosuch
    OBJECT ENCODING a
    OBJECT ENCODING h
    SET i 12345
    OBJECT ENCODING i
    OBJECT REFCOUNT i
    SET i 123
    OBJECT REFCOUNT i
    OBJECT REFCOUNT a
    SET i -0
    OBJECT ENCODING i
    SET i 01
    OBJECT ENCODING i
    SET e44 12345678901234567890123456789012345678901234
    OBJECT ENCODING e44
    SET e45 123456789012345678901234567890123456789012345
    OBJECT ENCODING e45
    RPUSH l a b
    OBJECT ENCODING l
    SADD st 1 2 3
    OBJECT ENCODING st
    SADD st x
    OBJECT ENCODING st
    ZADD z 1 a
    OBJECT ENCODING z
    ZADD z 2 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    OBJECT ENCODING z
    HSET h2 f aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    OBJECT ENCODING h2
    OBJECT FREQ a
    OBJECT FREQ nosuch
    OBJECT IDLETIME a
    OBJECT HELP
    OBJECT HELP x
    OBJECT FOO
    OBJECT
    OBJECT ENCODING
    OBJECT encoding a b
    MEMORY USAGE absent
    MEMORY USAGE nosuch SAMPLES x
    MEMORY USAGE nosuch FOO
    MEMORY USAGE a SAMPLES -1
    MEMORY USAGE a SAMPLES 1 FOO
    MEMORY USAGE
    MEMORY HELP x
    MEMORY FOO
    MEMORY
    WAIT 0 0
    WAIT x 0
    WAIT 0 x
    WAIT 0 -1
    WAIT 1 1
    WAIT 0
"""
)

SORT = script(
    """
    RPUSH l 3 1 2 10 1.5 -4
    SORT l
    SORT l DESC
    SORT l ALPHA
    SORT l ALPHA DESC
    SORT l LIMIT 1 2
    SORT l LIMIT -1 2
    SORT l LIMIT 2 -1
    SORT l LIMIT 10 2
    SORT l LIMIT 0 0
    SORT l LIMIT x 1
    SORT l LIMIT 0
    SORT l FOO
    SORT_RO l
    SORT_RO l STORE x
    SORT l STORE dst
    LRANGE dst 0 -1
    SORT l STORE dst LIMIT 0 0
    EXISTS dst
    SET w_3 30
    SET w_1 100
    SET w_2 20
    HSET h_3 f b
    HSET h_1 f a
    HSET h_10 f c
    SORT l BY w_*
    SORT l BY w_* DESC
    SORT l BY w_* GET # GET h_*->f
    SORT l BY h_*->f ALPHA
    SORT l BY h_*->f ALPHA GET h_*->f GET #
    SORT l BY nosort
    SORT l BY nosort DESC
    SORT l BY nosort LIMIT 1 2
    SORT l BY nosort DESC LIMIT 1 2
    SORT l GET w_*
    SORT l GET nostar
    SORT l GET w_* STORE dst
    LRANGE dst 0 -1
    SORT l BY h_*->f
    RPUSH bad 1 x 2
    SORT bad
    SORT bad ALPHA
    SORT bad BY nosort
    RPUSH odd "" " 5" 0x10 1e3 inf -inf
    SORT odd
    RPUSH odd3 "5 "
    SORT odd3
    RPUSH odd4 nan
    SORT odd4
    SET s x
    SORT s
    SORT nosuch
    SORT nosuch STORE dst
    EXISTS dst
    SADD st 3 1 2
    SORT st
    SORT st DESC
    SORT st ALPHA LIMIT 0 2
    SORT st BY nosort STORE dst2
    LRANGE dst2 0 -1
    SADD st2 b a c
    SORT st2 BY nosort STORE dst2
    LRANGE dst2 0 -1
    ZADD z 1 c 2 b 3 a
    SORT z BY nosort
    SORT z BY nosort DESC
    SORT z ALPHA
    SORT z BY nosort LIMIT 1 1
    SORT z BY nosort DESC LIMIT 1 5
    HSET hh a 1
    SORT hh
    SORT l STORE s
    TYPE s
    SORT
"""
)

BITMAPS = script(
    """
    SETBIT b 7 1
    SETBIT b 7 1
    SETBIT b 7 0
    SETBIT b 100 1
    GET b
    GETBIT b 100
    GETBIT b 99
    GETBIT b 100000
    GETBIT nosuch 0
    SETBIT b -1 1
    SETBIT b x 1
    SETBIT b 4294967296 1
    SETBIT b 1 2
    SETBIT b 1 x
    SETBIT b 1 -1
    SETBIT b x x
    GETBIT b -1
    GETBIT b x
    HSET h a 1
    SETBIT h 1 1
    GETBIT h 1
    SETBIT h x 1
    SET s foobar
    BITCOUNT s
    BITCOUNT s 0 0
    BITCOUNT s 1 1
    BITCOUNT s 1 1 BYTE
    BITCOUNT s 5 30 BIT
    BITCOUNT s -1 -1
    BITCOUNT s -5 -1 BIT
    BITCOUNT s -1 -5
    BITCOUNT s 3 1
    BITCOUNT s 0 100
    BITCOUNT s 0
    BITCOUNT s 0 1 FOO
    BITCOUNT s x 1
    BITCOUNT s 0 1 BIT x
    BITCOUNT nosuch x y
    BITCOUNT h
    BITCOUNT h x
    SET p "\xff\xf0\x00"
    BITPOS p 0
    BITPOS p 1
    BITPOS p 1 2
    BITPOS p 0 0
    SET q "\x00\xff\xf0"
    BITPOS q 1 0
    BITPOS q 1 2 -1 BYTE
    BITPOS q 1 7 15 BIT
    BITPOS q 0 0 -1
    BITPOS q 0 1
    BITPOS q 0 1 1
    BITPOS q 1 20 BIT
    SET z "\x00\x00\x00"
    BITPOS z 1
    BITPOS z 0
    SET f "\xff\xff\xff"
    BITPOS f 0
    BITPOS f 0 0 -1
    BITPOS f 0 0
    BITPOS f 0 2
    BITPOS f 0 3 BIT
    BITPOS f 0 9 17 BIT
    BITPOS f 0 9 BIT
    BITPOS f 0 9 20 BIT
    BITPOS f 1 30 40 BIT
    BITPOS f 0 -3 -5
    BITPOS nosuch 0
    BITPOS nosuch 1
    BITPOS nosuch 2
    BITPOS nosuch x
    BITPOS f 2
    BITPOS f x
    BITPOS f 0 x
    BITPOS f 0 0 x
    BITPOS f 0 0 1 FOO
    BITPOS f 0 0 1 BIT x
    BITPOS h 0
    SET e ""
    BITPOS e 0
    BITPOS e 1
    BITCOUNT e
    BITOP AND dest s f
    GET dest
    BITOP OR dest s nosuch
    GET dest
    BITOP XOR dest s f z
    GET dest
    BITOP NOT dest s
    GET dest
    BITOP NOT dest s f
    BITOP FOO dest s
    BITOP AND dest nosuch nosuch2
    EXISTS dest
    BITOP AND dest h
    BITOP AND dest
    SET t v EX 100
    SETBIT t 1 1
    TTL t
"""
)
BINARY_BITMAPS = [
    ["SET", "p", b"\xff\xf0\x00"],
    ["SET", "q", b"\x00\xff\xf0\x01"],
    *(
        ["BITPOS", key, bit, *span]
        for key in ("p", "q")
        for bit in ("0", "1")
        for span in (
            [],
            ["0"],
            ["1"],
            ["-1"],
            ["0", "-1"],
            ["1", "2"],
            ["3", "20", "BIT"],
            ["9", "BIT"],
            ["12", "12", "BIT"],
            ["0", "0", "BYTE"],
            ["5", "3", "BIT"],
        )
    ),
    *(
        ["BITCOUNT", key, *span]
        for key in ("p", "q")
        for span in (
            [],
            ["0", "-1"],
            ["1", "1"],
            ["3", "20", "BIT"],
            ["-9", "-2", "BIT"],
            ["2", "1"],
        )
    ),
    ["BITOP", "AND", "r", "p", "q"],
    ["GET", "r"],
    ["BITOP", "XOR", "r", "p", "q", "absent"],
    ["GET", "r"],
    ["BITOP", "NOT", "r", "q"],
    ["GET", "r"],
    ["SETBIT", "p", "23", "1"],
    ["GET", "p"],
    ["SETBIT", "p", "30", "1"],
    ["GET", "p"],
    ["LCS", "p", "q", "IDX", "WITHMATCHLEN"],
]

#: OBJECT ENCODING at Redis 7.0's default thresholds, on each side of them.
ENCODINGS = [
    *(
        command
        for n in (512, 513)
        for command in (
            ["HSET", f"h{n}", *(f"{part}{i}" for i in range(n) for part in "fv")],
            ["OBJECT", "ENCODING", f"h{n}"],
        )
    ),
    *(
        command
        for n in (128, 129)
        for command in (
            ["ZADD", f"z{n}", *(f"{part}{i}" for i in range(n) for part in ("1", "m"))],
            ["OBJECT", "ENCODING", f"z{n}"],
        )
    ),
    *(
        command
        for n in (512, 513)
        for command in (["SADD", f"s{n}", *map(str, range(n))], ["OBJECT", "ENCODING", f"s{n}"])
    ),
    *(
        command
        for n in (64, 65)
        for command in (
            ["HSET", f"hv{n}", "f", "v" * n],
            ["OBJECT", "ENCODING", f"hv{n}"],
            ["ZADD", f"zm{n}", "1", "m" * n],
            ["OBJECT", "ENCODING", f"zm{n}"],
        )
    ),
    *(
        command
        for value in ("x" * 44, "x" * 45, "-12", "9223372036854775808", "007", "")
        for command in (["SET", "str", value], ["OBJECT", "ENCODING", "str"])
    ),
    ["RPUSH", "l", "a"],
    ["OBJECT", "ENCODING", "l"],
    ["XADD", "x", "1-1", "f", "v"],
    ["OBJECT", "ENCODING", "x"],
]
