"""Numbers read as Redis 7.0 reads them (docs/protocol.md, "Numbers"): each input below was
answered by redis-server 7.0.15, and the same calls must get the same bytes from redis-server
and from ``blinkstore serve``, in RESP2 and RESP3.

One probe per rule Redis has, each a command that uses it: ``string2d`` (ZADD then ZSCORE:
ZINCRBY and WEIGHTS share it), ``zslParseRange`` (ZCOUNT: every score range), ``string2ld``
(INCRBYFLOAT: HINCRBYFLOAT and the stored values they read share it), the blocking timeout
(``ceill(string2ld * 1000)``, BLPOP on a list that holds an element, so nothing waits) and
SORT's own ``strtod`` check.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

import pytest

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import RawConnection

Server = StoreProcess | RedisProcess

NOT_FLOAT = b"-ERR value is not a valid float\r\n"
NOT_RANGE = b"-ERR min or max is not a float\r\n"
NAN_OR_INF = b"-ERR increment would produce NaN or Infinity\r\n"
TIMEOUT_NOT_FLOAT = b"-ERR timeout is not a float or out of range\r\n"
TIMEOUT_NEGATIVE = b"-ERR timeout is negative\r\n"
SORT_ERROR = b"-ERR One or more scores can't be converted into double\r\n"
SERVED = b"*2\r\n$1\r\nl\r\n$1\r\ne\r\n"

#: (input, ZSCORE after ``ZADD z input m`` (None: refused), ``ZCOUNT z input +inf`` of
#: {a: 1, b: 2} (None: refused), INCRBYFLOAT's result (None: not a float; INF: NaN or
#: Infinity; (prefix, length) for a long one), BLPOP's timeout (True: valid; NEG: "negative";
#: None: not a float), SORT accepts it) - as redis-server 7.0.15 answers.
INF = "inf"
NEG = "negative"
Incremented = bytes | str | tuple[bytes, int] | None
Row = tuple[bytes, bytes | None, int | None, Incremented, bool | str | None, bool]
TABLE: list[Row] = [
    # hex floats: strtod reads them, Python's float() does not
    (b"0x10", b"16", 0, b"16", True, True),
    (b"0X1P4", b"16", 0, b"16", True, True),
    (b"-0x1.8p1", b"-3", 2, b"-3", NEG, True),
    (b"0x.8", b"0.5", 2, b"0.5", True, True),
    (b"0x", None, None, None, None, False),
    (b"0x1p", None, None, None, None, False),
    (b"0xg", None, None, None, None, False),
    # infinities, every spelling strtod has; NaN never
    (b"inf", b"inf", 0, INF, NEG, True),
    (b"+inf", b"inf", 0, INF, NEG, True),
    (b"-inf", b"-inf", 2, INF, NEG, True),
    (b"infinity", b"inf", 0, INF, NEG, True),
    (b"Infinity", b"inf", 0, INF, NEG, True),
    (b"-INFINITY", b"-inf", 2, INF, NEG, True),
    (b"infinit", None, None, None, None, False),
    (b"nan", None, None, None, None, False),
    (b"NaN", None, None, None, None, False),
    (b"-nan", None, None, None, None, False),
    (b"nan(1)", None, None, None, None, False),
    # out of a double's range: refused by string2d, infinite or 0 in a range, finite in a
    # long double
    (b"1e400", None, 0, (b"1000000000000000000028188", 401), NEG, False),
    (b"-1e400", None, 2, (b"-100000000000000000002818", 402), NEG, False),
    (b"1e-400", None, 2, b"0", True, False),
    (b"4.9e-324", b"4.9406564584124654e-324", 2, b"0", True, False),
    (b"2e-324", None, 2, b"0", True, False),
    (b"0x1.8p-1074", b"9.8813129168249309e-324", 2, b"0", True, False),
    (b"0x1p-1074", b"4.9406564584124654e-324", 2, b"0", True, True),
    (b"2.2250738585072011e-308", b"2.2250738585072009e-308", 2, b"0", True, False),
    (b"1.7976931348623159e308", None, 0, (b"1797693134862315900030507", 309), NEG, False),
    (b"1e5000", None, 0, None, None, False),
    (b"1.19e4932", None, 0, None, None, False),
    (b"0x1p16383", None, 0, (b"5948657476786158825428796", 4932), NEG, False),
    (b"0x1p99999", None, 0, None, None, False),
    (b"3.6e-4951", None, 2, b"0", True, False),
    (b"1e-4952", None, 2, None, None, False),
    (b"0e999", b"0", 2, b"0", True, True),
    # white space, signs, dots, exponents, the empty string, NUL bytes
    (b" 1", None, 2, None, None, True),
    (b"\t1", None, 2, None, None, True),
    (b"1 ", None, None, None, None, False),
    (b"1_0", None, None, None, None, False),
    (b"+1", b"1", 2, b"1", True, True),
    (b".5", b"0.5", 2, b"0.5", True, True),
    (b"5.", b"5", 0, b"5", True, True),
    (b".", None, None, None, None, False),
    (b"1e5", b"100000", 0, b"100000", True, True),
    (b"1E+5", b"100000", 0, b"100000", True, True),
    (b"", None, 2, None, None, True),
    (b"1e", None, None, None, None, False),
    (b"1e+", None, None, None, None, False),
    (b"-", None, None, None, None, False),
    (b"(", None, 2, None, None, False),
    (b"1\x002", None, 2, None, None, True),
    (b"\x00", None, 2, None, None, True),
    (b"-0", b"0", 2, b"0", True, True),
    # long digit strings: a double overflows at 309 digits, a long double at 4,933;
    # string2ld reads at most 5,119 bytes
    (b"1" * 400, None, 0, (b"1111111111111111111089493", 400), NEG, False),
    (b"1" * 5119, None, 0, None, None, False),
    (b"1" * 5120, None, 0, None, None, False),
    (b"0." + b"0" * 5000 + b"1", None, 2, None, None, False),
    (b"1." + b"0" * 100_000, b"1", 2, None, None, True),
    (b"0." + b"0" * 320 + b"1" + b"0" * 100_000, b"9.9801260459931802e-322", 2, None, None, False),
    # precision: 17 significant digits for a double, %.17Lf of a long double
    (b"0.1", b"0.10000000000000001", 2, b"0.1", True, True),
    (b"3.0000000000000000001", b"3", 0, b"3", True, True),
    (b"-0.001", b"-0.001", 2, b"-0.001", True, True),
    (b"-0.0011", b"-0.0011000000000000001", 2, b"-0.0011", NEG, True),
    (b"9223372036854775.807", b"9223372036854776", 0, b"9223372036854775.806640625", True, True),
    (b"9223372036854775.808", b"9223372036854776", 0, b"9223372036854775.8076171875", NEG, True),
]


def _label(row: Row) -> str:
    text = row[0]
    return repr(text) if len(text) < 30 else f"{text[:8]!r}...({len(text)} bytes)"


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def connections(
    request: pytest.FixtureRequest, redis_and_store: tuple[Server, Server]
) -> Iterator[tuple[int, list[RawConnection]]]:
    """The protocol, and a connection in it to redis-server and one to the store (flushed)."""
    opened = [RawConnection(server, request.param) for server in redis_and_store]
    for connection in opened:
        assert connection("FLUSHALL") == b"+OK\r\n"
    yield request.param, opened
    for connection in opened:
        connection.close()


def _bulk_or_double(text: bytes, resp3: bool) -> bytes:
    return b",%b\r\n" % text if resp3 else b"$%d\r\n%b\r\n" % (len(text), text)


def _replies(control: RawConnection, text: bytes) -> list[bytes]:
    """The probes' replies to ``text``, in the order of a TABLE row."""
    control("DEL", "z", "k", "l", "sorted")
    control("ZADD", "range", "1", "a", "2", "b")
    zadd = control("ZADD", "z", text, "m")
    replies = [zadd if zadd.startswith(b"-") else control("ZSCORE", "z", "m")]
    replies.append(control("ZCOUNT", "range", text, "+inf"))
    replies.append(control("INCRBYFLOAT", "k", text))
    control("RPUSH", "l", "e")
    replies.append(control("BLPOP", "l", text))
    control("RPUSH", "sorted", text, "2")
    replies.append(control("SORT", "sorted"))
    return replies


def _expected(row: Row, resp3: bool) -> list[bytes | tuple[bytes, int]]:
    _, score, count, incremented, timeout, sortable = row
    expected: list[bytes | tuple[bytes, int]] = [
        NOT_FLOAT if score is None else _bulk_or_double(score, resp3),
        NOT_RANGE if count is None else b":%d\r\n" % count,
    ]
    if incremented is None:
        expected.append(NOT_FLOAT)
    elif incremented == INF:
        expected.append(NAN_OR_INF)
    elif isinstance(incremented, tuple):
        expected.append(incremented)
    else:
        assert isinstance(incremented, bytes)
        expected.append(_bulk_or_double(incremented, resp3=False))
    if timeout is None:
        expected.append(TIMEOUT_NOT_FLOAT)
    else:
        expected.append(TIMEOUT_NEGATIVE if timeout == NEG else SERVED)
    expected.append(b"*2\r\n" if sortable else SORT_ERROR)
    return expected


def _matches(reply: bytes, expected: bytes | tuple[bytes, int]) -> bool:
    if isinstance(expected, tuple):  # a long INCRBYFLOAT result: its start and length
        prefix, length = expected
        head = b"$%d\r\n" % length
        return reply.startswith(head + prefix) and len(reply) == len(head) + length + 2
    if expected == b"*2\r\n":  # SORT's two elements, in whichever order the number gives
        return reply.startswith(expected)
    return reply == expected


@pytest.mark.parametrize("row", TABLE, ids=[_label(row) for row in TABLE])
def test_numbers_are_read_as_redis_reads_them(
    connections: tuple[int, Sequence[RawConnection]], row: Row
) -> None:
    protocol, opened = connections
    for connection in opened:
        replies = _replies(connection, row[0])
        for reply, expected in zip(replies, _expected(row, protocol == 3), strict=True):
            assert _matches(reply, expected), (connection, row[0][:40], reply[:80], expected)


#: The other commands of each rule, with their own error texts, and arithmetic in long double
#: (``0.35 + 1e30 - 1e30`` is 0, as 64 bits of precision make it): redis-server's replies.
SCRIPT = [
    ("ZADD z 1 a 2 b 3 c", b":3\r\n"),
    ("ZINCRBY new -0 m", b"$2\r\n-0\r\n"),  # answered as read, stored as 0
    ("ZSCORE new m", b"$1\r\n0\r\n"),
    ("ZUNION 1 new WEIGHTS -1 WITHSCORES", b"*2\r\n$1\r\nm\r\n$2\r\n-0\r\n"),
    ("ZUNIONSTORE new 1 new WEIGHTS -1", b":1\r\n"),
    ("ZSCORE new m", b"$1\r\n0\r\n"),
    ("ZINCRBY z 0x1p1 a", b"$1\r\n3\r\n"),
    ("ZADD z INCR 0X.8 b", b"$3\r\n2.5\r\n"),
    ("ZADD z INCR 1e400 b", b"-ERR value is not a valid float\r\n"),
    ("ZADD z INCR -inf b", b"$4\r\n-inf\r\n"),
    ("ZADD z INCR +INF b", b"-ERR resulting score is not a number (NaN)\r\n"),
    ("ZRANGEBYSCORE z (0x1p1 +inf", b"*2\r\n$1\r\na\r\n$1\r\nc\r\n"),
    (
        "ZRANGE z 0x1p1 infinity BYSCORE WITHSCORES",
        b"*4\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\nc\r\n$1\r\n3\r\n",
    ),
    ("ZREMRANGEBYSCORE z -infinity (0x1.8p1", b":1\r\n"),
    ("ZRANGE z 0 -1 WITHSCORES", b"*4\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\nc\r\n$1\r\n3\r\n"),
    ("ZUNIONSTORE u 1 z WEIGHTS 0x10", b":2\r\n"),
    ("ZUNIONSTORE u 1 z WEIGHTS 1e400", b"-ERR weight value is not a float\r\n"),
    ("ZINTERSTORE u 1 z WEIGHTS nan", b"-ERR weight value is not a float\r\n"),
    ("ZRANGE u 0 -1 WITHSCORES", b"*4\r\n$1\r\na\r\n$2\r\n48\r\n$1\r\nc\r\n$2\r\n48\r\n"),
    ("SET k 0x10", b"+OK\r\n"),
    ("INCRBYFLOAT k 0.1", b"$4\r\n16.1\r\n"),
    ("INCRBYFLOAT k 0.2", b"$4\r\n16.3\r\n"),
    ("INCRBYFLOAT k 1e-20", b"$4\r\n16.3\r\n"),
    ("SET k 1e400", b"+OK\r\n"),
    ("INCRBYFLOAT k -1e400", b"$1\r\n0\r\n"),
    ("SET k 1e4932", b"+OK\r\n"),
    ("INCRBYFLOAT k 1e4932", b"-ERR increment would produce NaN or Infinity\r\n"),
    ("HSET h f 0x1p-2", b":1\r\n"),
    ("HINCRBYFLOAT h f 0.1", b"$4\r\n0.35\r\n"),
    ("HINCRBYFLOAT h f inf", b"-ERR value is NaN or Infinity\r\n"),
    ("HINCRBYFLOAT h f 1e30", b"$31\r\n1000000000000000000024696061952\r\n"),
    ("HINCRBYFLOAT h f -1e30", b"$1\r\n0\r\n"),
    ("HSET h g nan", b":1\r\n"),
    ("HINCRBYFLOAT h g 1", b"-ERR hash value is not a float\r\n"),
    ("HSET h g 0x", b":0\r\n"),
    ("HINCRBYFLOAT h g 1", b"-ERR hash value is not a float\r\n"),
    ("HINCRBYFLOAT h g x", b"-ERR value is not a valid float\r\n"),
    ("BZPOPMIN z 0x1p-4", b"*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n3\r\n"),
    ("BZPOPMIN z infinity", b"-ERR timeout is negative\r\n"),
    ("BLMOVE a b LEFT LEFT 0x", b"-ERR timeout is not a float or out of range\r\n"),
    ("BZMPOP -1e-5 1 z MIN", b"*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nc\r\n$1\r\n3\r\n"),
]


def test_every_command_of_a_rule_reads_as_redis(redis_and_store: tuple[Server, Server]) -> None:
    for server in redis_and_store:
        connection = RawConnection(server)
        try:
            connection("FLUSHALL")
            for command, reply in SCRIPT:
                assert connection(*command.split()) == reply, (server, command)
        finally:
            connection.close()


def _parked(control: RawConnection) -> bool:
    return b"blocked_clients:1\r\n" in control("INFO", "clients")


def test_a_timeout_past_the_end_of_time_waits_for_a_push(
    redis_and_store: tuple[Server, Server],
) -> None:
    # Redis's deadline (now + 2**63 - 1 ms) wraps round to a time its timer never reaches.
    for server in redis_and_store:
        control, waiting = RawConnection(server), RawConnection(server)
        try:
            control("FLUSHALL")
            waiting.send("BLPOP", "list", "9223372036854775.807")
            assert wait_until(partial(_parked, control), timeout=20)
            assert control("RPUSH", "list", "a") == b":1\r\n"
            assert waiting.reply() == b"*2\r\n$4\r\nlist\r\n$1\r\na\r\n"
        finally:
            control.close()
            waiting.close()
