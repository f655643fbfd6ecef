"""Geo commands (Redis's geo.c): GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH, GEOSEARCHSTORE,
GEORADIUS, GEORADIUSBYMEMBER and their read-only variants GEORADIUS_RO and
GEORADIUSBYMEMBER_RO.

A geo set is a sorted set whose scores are 52-bit geohashes (``engine/geohash.py`` holds the
arithmetic): GEOADD is ZADD of encoded points, and every other sorted-set command works on a
geo set. This module parses, searches the sorted set's cells and encodes the replies as Redis
7.0 does: distances with 4 decimals, coordinates as ``%.17Lf`` less its trailing zeros (RESP3
doubles), the checks in Redis's order (WRONGTYPE before the arguments, a missing source key
after them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.geohash import (
    LAT_MAX,
    LAT_MIN,
    LONG_MAX,
    LONG_MIN,
    Shape,
    box_scores,
    decode,
    distance,
    encode,
    geohash_text,
    search_boxes,
    within,
)
from blinkstore_gunicorn.engine.zsets import ZSet
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_FLOAT,
    ERR_NOT_INT,
    ERR_SYNTAX,
    RESP3_NULL,
    as_text,
    parse_float,
    parse_int,
    reply_too_large,
)
from blinkstore_gunicorn.server.commands.zreply import stored_zset, zset_of

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_UNIT = resp.error("ERR unsupported unit provided. please use M, KM, FT, MI")
ERR_DECODE = resp.error("ERR could not decode requested zset member")
ERR_COUNT = resp.error("ERR COUNT must be > 0")
ERR_ANY = resp.error("ERR the ANY argument requires COUNT argument")

#: Meters per unit.
_UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}
#: What a search reply may hold for one point besides its member (an upper bound).
_POINT_REPLY = 120


def _unit(raw: bytes) -> float | bytes:
    """Meters per ``raw`` unit (any case), or the error."""
    return _UNITS.get(raw.lower(), ERR_UNIT)


def _number(raw: bytes, what: str) -> float | bytes:
    value = parse_float(raw)
    return resp.error(f"ERR need numeric {what}") if value is None else value


def _point(raw_long: bytes, raw_lat: bytes) -> tuple[float, float] | bytes:
    """A ``longitude latitude`` pair within the limits geohashes have, or the error."""
    longitude, latitude = parse_float(raw_long), parse_float(raw_lat)
    if longitude is None or latitude is None:
        return ERR_NOT_FLOAT
    if not (LONG_MIN <= longitude <= LONG_MAX and LAT_MIN <= latitude <= LAT_MAX):
        return resp.error(f"ERR invalid longitude,latitude pair {longitude:f},{latitude:f}")
    return longitude, latitude


def _radius(raw: Sequence[bytes]) -> tuple[float, float] | bytes:
    """``radius unit`` as ``(radius, meters per unit)``, or the error."""
    radius = _number(raw[0], "radius")
    if isinstance(radius, bytes):
        return radius
    if radius < 0:
        return resp.error("ERR radius cannot be negative")
    to_meters = _unit(raw[1])
    return to_meters if isinstance(to_meters, bytes) else (radius, to_meters)


def _box(raw: Sequence[bytes]) -> tuple[float, float, float] | bytes:
    """``width height unit`` as ``(width, height, meters per unit)``, or the error."""
    width = _number(raw[0], "width")
    if isinstance(width, bytes):
        return width
    height = _number(raw[1], "height")
    if isinstance(height, bytes):
        return height
    if height < 0 or width < 0:
        return resp.error("ERR height or width cannot be negative")
    to_meters = _unit(raw[2])
    return to_meters if isinstance(to_meters, bytes) else (width, height, to_meters)


def _distance_text(meters: float) -> bytes:
    """A distance with 4 decimals, rounded half to even (Redis's ``fixedpoint_d2string``)."""
    return b"%d.%04d" % divmod(round(meters * 10000.0), 10000)


def _coordinate(c: Client, value: float) -> bytes:
    """A coordinate as ``%.17Lf`` without its trailing zeros: a bulk string, a RESP3 double."""
    text = (b"%.17f" % value).rstrip(b"0").removesuffix(b".")
    text = b"0" if text == b"-0" else text
    return b",%b\r\n" % text if c.resp3 else resp.bulk(text)


def _coordinates(c: Client, longitude: float, latitude: float) -> bytes:
    return b"*2\r\n%b%b" % (_coordinate(c, longitude), _coordinate(c, latitude))


@command("geoadd", -5, "write denyoom", (1, 1, 1))
def cmd_geoadd(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEOADD key [NX|XX] [CH] longitude latitude member [...]``: ZADD of the points'
    geohashes, with its flags and its reply."""
    first = 2
    while first < len(args) and args[first].upper() in (b"NX", b"XX", b"CH"):
        first += 1
    flags = {flag.upper() for flag in args[2:first]}
    if (len(args) - first) % 3 or {b"NX", b"XX"} <= flags:
        return ERR_SYNTAX
    zadd = [b"zadd", *args[1:first]]
    for at in range(first, len(args), 3):
        point = _point(args[at], args[at + 1])
        if isinstance(point, bytes):
            return point
        zadd += [b"%d" % encode(*point), args[at + 2]]
    # As Redis does: ZADD itself, looked up in the table (a family imports no other family).
    return COMMANDS["zadd"].handler(d, c, zadd)


@command("geodist", -4, "readonly", (1, 1, 1))
def cmd_geodist(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEODIST key member1 member2 [M|KM|FT|MI]``: the distance, nil if a member is missing."""
    to_meters: float | bytes = 1.0
    if len(args) == 5:
        to_meters = _unit(args[4])
    elif len(args) > 5:
        return ERR_SYNTAX
    if isinstance(to_meters, bytes):
        return to_meters
    scores = zset_of(d, args[1]).scores
    first, second = scores.get(args[2]), scores.get(args[3])
    if first is None or second is None:
        return c.nil
    return resp.bulk(_distance_text(distance(*decode(first), *decode(second)) / to_meters))


@command("geohash", -2, "readonly", (1, 1, 1))
def cmd_geohash(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEOHASH key [member...]``: each member's 11-character geohash, or nil."""
    scores = zset_of(d, args[1]).scores
    found = [scores.get(member) for member in args[2:]]
    return resp.array(c.nil if s is None else resp.bulk(geohash_text(s)) for s in found)


@command("geopos", -2, "readonly", (1, 1, 1))
def cmd_geopos(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEOPOS key [member...]``: each member's ``[longitude, latitude]``, or a nil array."""
    scores = zset_of(d, args[1]).scores
    missing = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    found = [scores.get(member) for member in args[2:]]
    return resp.array(missing if s is None else _coordinates(c, *decode(s)) for s in found)


# The variants of Redis's ``georadiusGeneric``: where the centre comes from, what may store.
_COORDS, _MEMBER, _NO_STORE, _SEARCH, _SEARCH_STORE = 1, 2, 4, 8, 16


class _Search:
    """A search's options as parsed so far (Redis fills the same variables in one loop)."""

    def __init__(self) -> None:
        self.centre: tuple[float, float] = (0.0, 0.0)
        self.radius: tuple[float, float] | None = None
        self.box: tuple[float, float, float] | None = None
        self.store: bytes | None = None
        self.store_dist = False
        self.with_dist = self.with_hash = self.with_coord = self.any = False
        self.from_member = self.from_point = False
        self.order: bytes | None = None
        self.count = 0

    def shape(self) -> Shape:
        if self.radius is not None:
            radius, to_meters = self.radius
            return Shape(*self.centre, to_meters, radius=radius)
        assert self.box is not None
        width, height, to_meters = self.box
        return Shape(*self.centre, to_meters, width=width, height=height)


#: The options without an argument that switch something on, and what.
_SWITCHES = {
    b"WITHDIST": "with_dist",
    b"WITHHASH": "with_hash",
    b"WITHCOORD": "with_coord",
    b"ANY": "any",
}


def _member_point(found: ZSet, member: bytes) -> tuple[float, float] | bytes:
    score = found.scores.get(member)
    return ERR_DECODE if score is None else decode(score)


def _option(search: _Search, found: ZSet, args: list[bytes], at: int, flags: int) -> int | bytes:
    """Read the option at ``args[at]`` into ``search``: how many arguments it took, or the
    error (Redis's loop, condition for condition)."""
    option, left = args[at].upper(), len(args) - at - 1
    if option in _SWITCHES:
        setattr(search, _SWITCHES[option], True)
    elif option in (b"ASC", b"DESC"):
        search.order = option
    elif option == b"COUNT" and left:
        count = parse_int(args[at + 1])
        if count is None:
            return ERR_NOT_INT
        if count <= 0:
            return ERR_COUNT
        search.count = count
        return 2
    elif option in (b"STORE", b"STOREDIST") and left and not flags & (_NO_STORE | _SEARCH):
        search.store, search.store_dist = args[at + 1], option == b"STOREDIST"
        return 2
    elif option == b"STOREDIST" and flags & _SEARCH_STORE:
        search.store_dist = True
    elif option == b"FROMMEMBER" and left and flags & _SEARCH and not search.from_point:
        if found:  # a missing key: the arguments are still read, for the right reply
            centre = _member_point(found, args[at + 1])
            if isinstance(centre, bytes):
                return centre
            search.centre = centre
        search.from_member = True
        return 2
    elif option == b"FROMLONLAT" and left > 1 and flags & _SEARCH and not search.from_member:
        point = _point(args[at + 1], args[at + 2])
        if isinstance(point, bytes):
            return point
        search.centre, search.from_point = point, True
        return 3
    elif option == b"BYRADIUS" and left > 1 and flags & _SEARCH and search.box is None:
        radius = _radius(args[at + 1 : at + 3])
        if isinstance(radius, bytes):
            return radius
        search.radius = radius
        return 3
    elif option == b"BYBOX" and left > 2 and flags & _SEARCH and search.radius is None:
        box = _box(args[at + 1 : at + 4])
        if isinstance(box, bytes):
            return box
        search.box = box
        return 4
    else:
        return ERR_SYNTAX
    return 1


def _parse(search: _Search, found: ZSet, args: list[bytes], flags: int) -> bytes | None:
    """Fill ``search`` from the arguments; the first error, in Redis's order."""
    base = 2
    if flags & _COORDS:
        base = 6
        centre = _point(args[2], args[3])
        if isinstance(centre, bytes):
            return centre
        search.centre = centre
    elif flags & _MEMBER:
        base = 5
        if found:
            centre = _member_point(found, args[2])
            if isinstance(centre, bytes):
                return centre
            search.centre = centre
    elif flags & _SEARCH_STORE:
        base = 3
        search.store = args[1]
    if flags & (_COORDS | _MEMBER) and (flags & _COORDS or found):
        radius = _radius(args[base - 2 : base])
        if isinstance(radius, bytes):
            return radius
        search.radius = radius
    at = base
    while at < len(args):
        taken = _option(search, found, args, at, flags)
        if isinstance(taken, bytes):
            return taken
        at += taken
    if search.store is not None and (search.with_dist or search.with_hash or search.with_coord):
        name = "GEOSEARCHSTORE" if flags & _SEARCH_STORE else "STORE option in GEORADIUS"
        return resp.error(
            f"ERR {name} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )
    if flags & _SEARCH and not (search.from_member or search.from_point):
        return resp.error(
            f"ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {as_text(args[0])}"
        )
    if flags & _SEARCH and search.radius is None and search.box is None:
        return resp.error(
            f"ERR exactly one of BYRADIUS and BYBOX can be specified for {as_text(args[0])}"
        )
    if search.any and not search.count:
        return ERR_ANY
    return None


Point = tuple[float, float, bytes, float, float]  # distance, score, member, longitude, latitude


def _points(found: ZSet, shape: Shape, limit: int) -> list[Point]:
    """The members inside the shape, cell by cell in Redis's order; with a ``limit`` (ANY),
    the first ``limit`` found."""
    points: list[Point] = []
    order = found.order
    for bits, step in search_boxes(shape):
        if limit and len(points) >= limit:
            break
        low, high = box_scores(bits, step)
        at = found.first_at(low, exclusive=False)
        while at < len(order) and order[at][0] < high:
            score, member = order[at]
            hit = within(shape, score)
            if hit is not None:
                points.append((hit[2], score, member, hit[0], hit[1]))
            if limit and len(points) >= limit:
                break
            at += 1
    return points


def _search(d: Dispatcher, c: Client, args: list[bytes], flags: int) -> bytes:
    found = zset_of(d, args[2 if flags & _SEARCH_STORE else 1])
    search = _Search()
    error = _parse(search, found, args, flags)
    if error is not None:
        return error
    if not found:
        return resp.EMPTY_ARRAY if search.store is None else stored_zset(d, search.store, {})
    if search.count and search.order is None and not search.any:
        search.order = b"ASC"  # the nearest COUNT, as Redis sorts them
    shape = search.shape()
    points = _points(found, shape, search.count if search.any else 0)
    if search.order is not None:
        # Stable, as glibc's qsort (a merge sort) keeps points at equal distances in order.
        points.sort(key=lambda point: point[0], reverse=search.order == b"DESC")
    if search.count:
        del points[search.count :]
    if search.store is not None:
        by_dist = search.store_dist
        scores = {m: dist / shape.to_meters if by_dist else s for dist, s, m, _, _ in points}
        return stored_zset(d, search.store, scores)
    error = reply_too_large(sum(len(p[2]) + _POINT_REPLY for p in points), d.max_reply_size)
    return error or resp.array(_point_reply(c, search, point, shape) for point in points)


def _point_reply(c: Client, search: _Search, point: Point, shape: Shape) -> bytes:
    """One search result: the member, or ``[member, dist?, hash?, [long, lat]?]``."""
    meters, score, member, longitude, latitude = point
    items = [resp.bulk(member)]
    if search.with_dist:
        items.append(resp.bulk(_distance_text(meters / shape.to_meters)))
    if search.with_hash:
        items.append(resp.integer(int(score)))
    if search.with_coord:
        items.append(_coordinates(c, longitude, latitude))
    return items[0] if len(items) == 1 else resp.array(items)


@command("georadius", -6, "write denyoom movablekeys", (1, 1, 1))
def cmd_georadius(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEORADIUS key longitude latitude radius M|KM|FT|MI [WITHCOORD] [WITHDIST]
    [WITHHASH] [COUNT count [ANY]] [ASC|DESC] [STORE key|STOREDIST key]``."""
    return _search(d, c, args, _COORDS)


@command("georadius_ro", -6, "readonly", (1, 1, 1))
def cmd_georadius_ro(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEORADIUS_RO``: GEORADIUS without STORE and STOREDIST."""
    return _search(d, c, args, _COORDS | _NO_STORE)


@command("georadiusbymember", -5, "write denyoom movablekeys", (1, 1, 1))
def cmd_georadiusbymember(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEORADIUSBYMEMBER key member radius unit [options]``: GEORADIUS around a member."""
    return _search(d, c, args, _MEMBER)


@command("georadiusbymember_ro", -5, "readonly", (1, 1, 1))
def cmd_georadiusbymember_ro(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEORADIUSBYMEMBER_RO``: GEORADIUSBYMEMBER without STORE and STOREDIST."""
    return _search(d, c, args, _MEMBER | _NO_STORE)


@command("geosearch", -7, "readonly", (1, 1, 1))
def cmd_geosearch(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEOSEARCH key FROMMEMBER member|FROMLONLAT longitude latitude BYRADIUS radius unit|
    BYBOX width height unit [ASC|DESC] [COUNT count [ANY]] [WITHCOORD] [WITHDIST]
    [WITHHASH]``."""
    return _search(d, c, args, _SEARCH)


@command("geosearchstore", -8, "write denyoom", (1, 2, 1))
def cmd_geosearchstore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GEOSEARCHSTORE destination source ... [STOREDIST]``: GEOSEARCH's points stored in
    ``destination`` (scores: their geohashes, or with STOREDIST their distances); how many."""
    return _search(d, c, args, _SEARCH | _SEARCH_STORE)
