"""The GEO commands against redis-server and ``blinkstore serve``: every reply compared byte
for byte, in RESP2 and RESP3: coordinates, distances and geohashes to the last digit, the
cells a search scans (points near cell edges, the poles' limits, the antimeridian, radii from
0 to the whole earth), orderings, COUNT and ANY, STORE and STOREDIST, every error text in
Redis's order, WRONGTYPE, the read-only variants' refusals, and WATCH on the stored keys."""

from __future__ import annotations

import random
import shlex
from collections.abc import Iterator

import pytest

from bench.abuse.fuzz import run_fuzz
from harness.processes import RedisProcess, StoreProcess
from tests.integration.redis_command_scripts import script
from tests.support.differential import RawConnection, compare
from tests.support.processes import resp_server_process

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]


PLACES = (
    "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania"
    " 12.758489 38.788135 edge1 17.241510 38.788135 edge2"
)

BASICS = script(
    PLACES
    + """
    GEOADD Sicily CH 13.361389 38.115556 Palermo 13.5 38.2 Palermo2
    GEOADD Sicily CH XX 13.4 38.2 Palermo2 1 1 nothere
    GEOADD Sicily NX 13.4 38.3 Palermo2 1 1 new
    GEOADD Sicily ch nx ch 2 2 other
    GEOADD Sicily NX XX 1 1 a
    GEOADD Sicily 1 1
    GEOADD Sicily 1 1 a 2
    GEOADD Sicily XX CH
    GEOADD Sicily GT 1 1 a
    GEOADD Sicily 181 1 a
    GEOADD Sicily 1 85.06 a
    GEOADD Sicily -180 -85.05112878 south 180 85.05112878 north
    GEOADD Sicily inf 1 a
    GEOADD Sicily 1e400 1 a
    GEOADD Sicily x 1 a
    GEOADD Sicily 1 nan a
    GEOADD Sicily 1 2 a 200 2 b
    ZRANGE Sicily 0 -1 WITHSCORES
    GEOPOS Sicily Palermo Catania nosuch south north new other
    GEOPOS Sicily
    GEOPOS nokey a b
    GEOHASH Sicily Palermo Catania nosuch south north edge1
    GEOHASH nokey a
    GEOHASH Sicily
    GEODIST Sicily Palermo Catania
    GEODIST Sicily Palermo Catania km
    GEODIST Sicily Palermo Catania MI
    GEODIST Sicily Palermo Catania ft
    GEODIST Sicily Palermo Catania M
    GEODIST Sicily Palermo Catania parsec
    GEODIST Sicily Palermo Catania km extra
    GEODIST Sicily Palermo Palermo
    GEODIST Sicily Palermo nosuch
    GEODIST Sicily south north km
    GEODIST nokey a b
    GEODIST nokey a b parsec
    ZADD weird inf i -inf ni -5 neg 0.5 half 1e300 big 9007199254740992 two53 4503599627370495 top
    GEOPOS weird i ni neg half big two53 top
    GEOHASH weird i ni neg half big two53 top
    GEODIST weird i neg
    SET str v
    GEOADD str 1 1 a
    GEOPOS str a
    GEOHASH str a
    GEODIST str a b
    GEODIST str a b parsec
    GEORADIUS str 1 1 1 km
    GEORADIUS str 1000 1 1 km
    GEOSEARCH str FROMLONLAT 1 1 BYRADIUS 1 km
    GEOSEARCHSTORE dst str FROMLONLAT 1 1 BYRADIUS 1 km
    GEORADIUSBYMEMBER str a 1 km
    """
)

SEARCHES = script(
    PLACES
    + """
    GEORADIUS Sicily 15 37 200 km
    GEORADIUS Sicily 15 37 200 km ASC
    GEORADIUS Sicily 15 37 200 km DESC WITHDIST
    GEORADIUS Sicily 15 37 200 km WITHCOORD WITHDIST WITHHASH
    GEORADIUS Sicily 15 37 200 km withhash withcoord
    GEORADIUS Sicily 15 37 200 km COUNT 1
    GEORADIUS Sicily 15 37 200 km COUNT 2 DESC
    GEORADIUS Sicily 15 37 200 km COUNT 1 ANY
    GEORADIUS Sicily 15 37 200 km ANY COUNT 3
    GEORADIUS Sicily 15 37 200 km ANY
    GEORADIUS Sicily 15 37 200 km COUNT 0
    GEORADIUS Sicily 15 37 200 km COUNT -1
    GEORADIUS Sicily 15 37 200 km COUNT x
    GEORADIUS Sicily 15 37 200 km COUNT
    GEORADIUS Sicily 15 37 200 km WITHDIST STORE dst
    GEORADIUS Sicily 15 37 200 km STORE
    GEORADIUS Sicily 15 37 200 km STORE dst
    ZRANGE dst 0 -1 WITHSCORES
    GEORADIUS Sicily 15 37 200 km STOREDIST dst
    ZRANGE dst 0 -1 WITHSCORES
    GEORADIUS Sicily 15 37 200 mi STOREDIST dst COUNT 2 DESC
    ZRANGE dst 0 -1 WITHSCORES
    GEORADIUS Sicily 15 37 200 km STORE dst STOREDIST dst2
    EXISTS dst dst2
    GEORADIUS Sicily 0 0 1 km STORE dst2
    EXISTS dst2
    GEORADIUS Sicily 15 37 1 m STORE dst
    EXISTS dst
    GEORADIUS nokey 15 37 200 km STORE dst2
    GEORADIUS nokey 15 37 200 km
    GEORADIUS nokey 15 37 200 km WITHDIST
    GEORADIUS nokey 15 37 -1 km
    GEORADIUS nokey 15 37 1 parsec
    GEORADIUS nokey 200 37 1 km
    GEORADIUS Sicily 15 37 x km
    GEORADIUS Sicily 15 37 -1 km
    GEORADIUS Sicily 15 37 0 km
    GEORADIUS Sicily 15 37 inf km WITHDIST
    GEORADIUS Sicily 15 37 1e308 km
    GEORADIUS Sicily 15 37 1e-300 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX inf 1 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 inf km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1e300 1e300 m
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX inf inf mi WITHDIST
    GEORADIUS Sicily 15 37 1 furlong
    GEORADIUS Sicily 15 37 200 km BOGUS
    GEORADIUS Sicily 15 37 200 km FROMMEMBER Palermo
    GEORADIUS_RO Sicily 15 37 200 km WITHDIST ASC
    GEORADIUS_RO Sicily 15 37 200 km STORE dst
    GEORADIUS_RO Sicily 15 37 200 km STOREDIST dst
    GEORADIUSBYMEMBER Sicily Palermo 200 km WITHDIST
    GEORADIUSBYMEMBER Sicily Palermo 200 km STORE dst
    ZRANGE dst 0 -1 WITHSCORES
    GEORADIUSBYMEMBER Sicily nosuch 200 km
    GEORADIUSBYMEMBER Sicily nosuch -1 parsec
    GEORADIUSBYMEMBER Sicily Palermo -1 km
    GEORADIUSBYMEMBER nokey nosuch -1 parsec
    GEORADIUSBYMEMBER nokey nosuch 1 km BOGUS
    GEORADIUSBYMEMBER nokey nosuch x y STORE dst
    EXISTS dst
    GEORADIUSBYMEMBER_RO Sicily Palermo 200 km COUNT 1 WITHCOORD
    GEORADIUSBYMEMBER_RO Sicily Palermo 200 km STORE dst
    GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHDIST WITHCOORD
    GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 400 400 km DESC WITHHASH
    GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 400 400 km COUNT 2 ANY
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 200 200 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 0 0 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX x 0 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 0 x km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX -1 1 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 1 parsec
    GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 1
    GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 1
    GEOSEARCH Sicily FROMLONLAT 15 BYRADIUS 1 km
    GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 1 km BYBOX 1 1 km
    GEOSEARCH Sicily FROMLONLAT 15 37 FROMMEMBER Palermo BYRADIUS 1 km
    GEOSEARCH Sicily FROMMEMBER Palermo FROMLONLAT 15 37 BYRADIUS 1 km
    GEOSEARCH Sicily FROMMEMBER Palermo FROMMEMBER Catania BYRADIUS 100 km WITHDIST
    GEOSEARCH Sicily BYRADIUS 1 km BYRADIUS 200 km FROMLONLAT 15 37
    GEOSEARCH Sicily FROMMEMBER nosuch BYRADIUS 1 km
    GEOSEARCH Sicily FROMMEMBER nosuch BYRADIUS 1 parsec
    GEOSEARCH Sicily BYRADIUS 1 km WITHDIST
    GEOSEARCH Sicily FROMLONLAT 15 37 WITHDIST ASC
    geosearch Sicily BYRADIUS 1 km WITHDIST
    GeoSearch Sicily FROMLONLAT 15 37 COUNT 1
    GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ANY
    GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km STORE dst
    GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST
    GEOSEARCH nokey FROMMEMBER nosuch BYRADIUS 1 km
    GEOSEARCH nokey FROMMEMBER nosuch BYRADIUS 1 parsec
    GEOSEARCH nokey FROMMEMBER nosuch BYBOX 1 1 km WITHDIST
    GEOSEARCH nokey FROMMEMBER nosuch
    GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km
    ZRANGE dst 0 -1 WITHSCORES
    GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYBOX 400 400 km STOREDIST COUNT 3 DESC
    ZRANGE dst 0 -1 WITHSCORES
    GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHDIST
    GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km STORE x
    GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHCOORD STOREDIST
    GEOSEARCHSTORE dst Sicily FROMLONLAT 0 0 BYRADIUS 1 km
    EXISTS dst
    GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km
    GEOSEARCHSTORE dst nokey FROMMEMBER x BYRADIUS 1 km
    EXISTS dst
    SET str v
    GEORADIUS Sicily 15 37 200 km STORE str
    TYPE str
    GEOSEARCHSTORE Sicily Sicily FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST
    ZRANGE Sicily 0 -1 WITHSCORES
    """
)


def _random_points(seed: int) -> list[list[str]]:
    """Points scattered around a few places (cell edges, near the poles' limits, across the
    antimeridian), then searches of every size around them."""
    rng = random.Random(seed)
    commands = []
    centres = [(13.36, 38.11), (179.9, 0.0), (-179.95, 10.0), (0.0, 84.9), (45.0, -84.95), (0, 0)]
    for index, (longitude, latitude) in enumerate(centres):
        args = ["GEOADD", "pts"]
        for number in range(60):
            spread = 10.0 ** rng.uniform(-4, 1.3)
            x = min(max(longitude + rng.uniform(-spread, spread), -180), 180)
            y = min(max(latitude + rng.uniform(-spread, spread), -85.05), 85.05)
            args += [repr(x), repr(y), f"p{index}-{number}"]
        commands.append(args)
    for longitude, latitude in centres:
        for radius in ("0", "0.5", "30", "900", "20000", "5000000", "40000000"):
            for unit in ("m", "km"):
                centre = [str(longitude), str(latitude)]
                commands += [
                    ["GEORADIUS", "pts", *centre, radius, unit, "WITHDIST", "WITHCOORD", "ASC"],
                    ["GEOSEARCH", "pts", "FROMLONLAT", *centre, "BYBOX", radius, radius, unit],
                    ["GEOSEARCH", "pts", "FROMLONLAT", *centre, "BYRADIUS", radius, unit, "DESC"],
                    ["GEOSEARCH", "pts", "FROMMEMBER", "p0-0", "BYBOX", radius, "9", unit],
                ]
        commands.append(["GEORADIUSBYMEMBER", "pts", "p0-1", "300", "km", "COUNT", "5"])
        commands.append(["GEOSEARCH", "pts", "FROMMEMBER", "p3-2", "BYBOX", "9", "2000", "km"])
    commands.append(["GEOPOS", "pts", *(f"p{i}-{n}" for i in range(6) for n in range(0, 60, 7))])
    commands.append(["GEOHASH", "pts", *(f"p{i}-{n}" for i in range(6) for n in range(0, 60, 7))])
    commands.append(["GEODIST", "pts", "p0-0", "p1-1", "km"])
    commands.append(["GEODIST", "pts", "p2-0", "p1-1", "ft"])
    return commands


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with resp_server_process("redis") as redis, resp_server_process("store") as store:
        yield redis, store


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("commands", [BASICS, SEARCHES], ids=["basics", "searches"])
def test_replies_match_redis(servers: Servers, commands: list[list[str]], protocol: int) -> None:
    assert compare(servers, commands, protocol) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_searches_of_scattered_points_match_redis(servers: Servers, seed: int) -> None:
    assert compare(servers, _random_points(seed), 3) == []


@pytest.mark.parametrize("kind", ["store", "redis"])
def test_watch_sees_geo_writes_and_not_reads(kind: str) -> None:
    """GEOADD and a search's STORE are writes to WATCH; a search without STORE is none."""
    with resp_server_process(kind) as server:
        watcher, other = RawConnection(server), RawConnection(server)
        try:
            assert other(*shlex.split(PLACES)) == b":4\r\n"
            outcomes = []
            for write in (
                "GEORADIUS Sicily 15 37 200 km",
                "GEOADD Sicily 1 1 x",
                "GEOADD Sicily XX 2 2 nosuch",
                "GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km",
                "GEORADIUS nokey 15 37 200 km STORE dst",
                "GEORADIUS nokey 15 37 200 km STORE dst",
            ):
                assert watcher("WATCH", "Sicily", "dst") == b"+OK\r\n"
                assert other(*shlex.split(write))[:1] in b":*"
                watcher("MULTI")
                watcher("PING")
                outcomes.append(watcher("EXEC"))
            passed, failed = b"*1\r\n+PONG\r\n", b"*-1\r\n"
            assert outcomes == [passed, failed, passed, failed, failed, passed]
        finally:
            watcher.close()
            other.close()


GEO_COMMANDS = (
    "geoadd", "geodist", "geohash", "geopos", "georadius", "georadius_ro", "georadiusbymember",
    "georadiusbymember_ro", "geosearch", "geosearchstore", "zadd", "zrange", "del",
)  # fmt: skip


@pytest.mark.slow
def test_fuzzing_the_geo_commands_leaves_the_store_serving() -> None:
    report = run_fuzz(inputs=4000, split_inputs=40, seed=21, commands=GEO_COMMANDS)
    print("\n".join(report.lines()))
    assert report.ok, report
