"""Redis's geohash arithmetic (geohash.c, geohash_helper.c): pure computation, no data access.

A geo set is a sorted set whose scores are 52-bit geohashes: 26 bits of latitude (in
-85.05112878..85.05112878, Web Mercator's limits) interleaved with 26 bits of longitude, the
latitude in the even bits. Every step below follows Redis's double arithmetic operation for
operation (the same IEEE operations in the same order give the same bits), because clients
compare coordinates, distances and search results with Redis's to the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "LAT_MAX",
    "LAT_MIN",
    "LONG_MAX",
    "LONG_MIN",
    "Shape",
    "box_scores",
    "decode",
    "distance",
    "encode",
    "geohash_text",
    "search_boxes",
    "within",
]

LONG_MIN, LONG_MAX = -180.0, 180.0
LAT_MIN, LAT_MAX = -85.05112878, 85.05112878
#: Bits per coordinate in a stored score (26 * 2 = 52, a double's mantissa).
STEP_MAX = 26
#: Earth's quadratic mean radius for WGS-84, in meters, as Redis uses it.
EARTH_RADIUS = 6372797.560856
_MERCATOR_MAX = 20037726.37
_D_R = math.pi / 180.0
_U64 = (1 << 64) - 1
_EVEN = 0x5555555555555555
_ODD = 0xAAAAAAAAAAAAAAAA
#: Redis's interleave masks and shifts (``interleave64``), widest first.
_SPREAD = (
    (16, 0x0000FFFF0000FFFF),
    (8, 0x00FF00FF00FF00FF),
    (4, 0x0F0F0F0F0F0F0F0F),
    (2, 0x3333333333333333),
    (1, _EVEN),
)
_ALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"


def _spread(value: int) -> int:
    """The 32 low bits of ``value`` moved to the even bits of a 64-bit word."""
    value &= 0xFFFFFFFF
    for shift, mask in _SPREAD:
        value = (value | (value << shift)) & mask
    return value


def _gather(value: int) -> int:
    """The even bits of ``value`` packed into 32 bits (the inverse of :func:`_spread`;
    Redis's ``deinterleave64``, unrolled: it runs for every point a read decodes)."""
    value &= _EVEN
    value = (value | (value >> 1)) & 0x3333333333333333
    value = (value | (value >> 2)) & 0x0F0F0F0F0F0F0F0F
    value = (value | (value >> 4)) & 0x00FF00FF00FF00FF
    value = (value | (value >> 8)) & 0x0000FFFF0000FFFF
    return (value | (value >> 16)) & 0xFFFFFFFF


def _cell(value: float, low: float, high: float, step: int) -> int:
    """Which of the ``2**step`` cells of ``[low, high]`` holds ``value`` (C's cast to
    ``uint32_t`` truncates)."""
    return int((value - low) / (high - low) * (1 << step)) & 0xFFFFFFFF


def encode(
    longitude: float,
    latitude: float,
    step: int = STEP_MAX,
    lat_range: tuple[float, float] = (LAT_MIN, LAT_MAX),
) -> int:
    """The ``2 * step``-bit geohash of a point within the limits (``geohashEncode``)."""
    lat_cell = _cell(latitude, *lat_range, step)
    long_cell = _cell(longitude, LONG_MIN, LONG_MAX, step)
    return _spread(lat_cell) | (_spread(long_cell) << 1)


def _area(bits: int, step: int) -> tuple[float, float, float, float]:
    """The cell of a geohash: ``(long_min, long_max, lat_min, lat_max)`` (``geohashDecode``)."""
    lat_cell, long_cell = _gather(bits), _gather(bits >> 1)
    # C adds 1 to a ``uint32_t``: the last cell of a score no GEOADD wrote wraps to 0.
    lat_scale, long_scale = LAT_MAX - LAT_MIN, LONG_MAX - LONG_MIN
    cells = float(1 << step)
    return (
        LONG_MIN + (long_cell * 1.0 / cells) * long_scale,
        LONG_MIN + (((long_cell + 1) & 0xFFFFFFFF) * 1.0 / cells) * long_scale,
        LAT_MIN + (lat_cell * 1.0 / cells) * lat_scale,
        LAT_MIN + (((lat_cell + 1) & 0xFFFFFFFF) * 1.0 / cells) * lat_scale,
    )


def _as_uint64(score: float) -> int:
    """C's ``(uint64_t)`` of a double as x86-64 code computes it: below 2**63 a truncation
    kept modulo 2**64 (a negative score wraps), from 2**63 the value less 2**63 converted and
    its top bit flipped; what does not fit (infinities, -2**63 and below) is 2**63 before the
    flip. Redis decodes any score of a sorted set this way, also one no GEOADD wrote."""
    if score < 2.0**63:
        return int(score) & _U64 if score > -(2.0**63) else 1 << 63
    rest = score - 2.0**63
    return (int(rest) if rest < 2.0**63 else 1 << 63) ^ (1 << 63)


def decode(score: float) -> tuple[float, float]:
    """A stored score's point, ``(longitude, latitude)``: its cell's centre, kept within the
    limits."""
    long_min, long_max, lat_min, lat_max = _area(_as_uint64(score), STEP_MAX)
    longitude, latitude = (long_min + long_max) / 2, (lat_min + lat_max) / 2
    if not LONG_MIN <= longitude <= LONG_MAX:
        longitude = LONG_MIN if longitude < LONG_MIN else LONG_MAX
    if not LAT_MIN <= latitude <= LAT_MAX:
        latitude = LAT_MIN if latitude < LAT_MIN else LAT_MAX
    return longitude, latitude


def geohash_text(score: float) -> bytes:
    """GEOHASH's 11 characters: the point re-encoded with the standard -90..90 latitude range
    (Redis stores -85..85), 52 bits in base 32 and a last character for bits it has not."""
    bits = encode(*decode(score), lat_range=(-90.0, 90.0))
    return bytes(_ALPHABET[(bits >> (52 - (i + 1) * 5)) & 0x1F] for i in range(10)) + b"0"


def _radians(degrees: float) -> float:
    return degrees * _D_R


def _cos(radians: float) -> float:
    """C's ``cos``: NaN for an infinity (a search of infinite size), where Python raises."""
    return math.cos(radians) if math.isfinite(radians) else math.nan


def _lat_distance(lat1: float, lat2: float) -> float:
    return EARTH_RADIUS * abs(_radians(lat2) - _radians(lat1))


def distance(long1: float, lat1: float, long2: float, lat2: float) -> float:
    """The haversine great-circle distance in meters (``geohashGetDistance``)."""
    v = math.sin((long2 * _D_R - long1 * _D_R) / 2)
    if v == 0.0:  # same meridian: the latitudes' arc, as Redis shortcuts it
        return _lat_distance(lat1, lat2)
    lat1r, lat2r = lat1 * _D_R, lat2 * _D_R
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS * math.asin(math.sqrt(a))


@dataclass(frozen=True, slots=True)
class Shape:
    """A search area around ``(longitude, latitude)``: a circle of ``radius``, or (``radius``
    None) a box of ``width`` x ``height``; sizes in a unit of ``to_meters`` meters."""

    longitude: float
    latitude: float
    to_meters: float
    radius: float | None = None
    width: float = 0.0
    height: float = 0.0


def within(shape: Shape, score: float) -> tuple[float, float, float] | None:
    """``(longitude, latitude, distance in meters)`` of a stored score inside the shape."""
    longitude, latitude = decode(score)
    if shape.radius is not None:
        meters = distance(shape.longitude, shape.latitude, longitude, latitude)
        return None if meters > shape.radius * shape.to_meters else (longitude, latitude, meters)
    width, height = shape.width * shape.to_meters, shape.height * shape.to_meters
    # The latitude's arc is cheaper than the longitude's: checked first, as Redis does.
    if _lat_distance(latitude, shape.latitude) > height / 2:
        return None
    if distance(longitude, latitude, shape.longitude, latitude) > width / 2:
        return None
    return longitude, latitude, distance(shape.longitude, shape.latitude, longitude, latitude)


def _steps_for(meters: float, latitude: float) -> int:
    """The geohash precision whose cells cover a search of ``meters`` (Redis's estimate)."""
    if meters == 0:
        return 26
    step = 1
    while meters < _MERCATOR_MAX:
        meters *= 2
        step += 1
    step -= 2
    if latitude > 66 or latitude < -66:  # cells narrow towards the poles
        step -= 1
        if latitude > 80 or latitude < -80:
            step -= 1
    return min(max(step, 1), 26)


def _bounds(shape: Shape) -> tuple[float, float, float, float]:
    """The shape's bounding box: ``(long_min, lat_min, long_max, lat_max)``."""
    if shape.radius is not None:
        height = width = shape.to_meters * shape.radius
    else:
        height, width = shape.to_meters * (shape.height / 2), shape.to_meters * (shape.width / 2)
    lat_delta = height / EARTH_RADIUS / _D_R
    long_top = width / EARTH_RADIUS / _cos(_radians(shape.latitude + lat_delta)) / _D_R
    long_bottom = width / EARTH_RADIUS / _cos(_radians(shape.latitude - lat_delta)) / _D_R
    # The box is widest at the edge nearer the equator.
    long_delta = long_bottom if shape.latitude < 0 else long_top
    return (
        shape.longitude - long_delta,
        shape.latitude - lat_delta,
        shape.longitude + long_delta,
        shape.latitude + lat_delta,
    )


def _move(bits: int, step: int, dx: int, dy: int) -> int:
    """The neighbouring cell ``dx`` east (longitude, odd bits) and ``dy`` north (latitude,
    even bits): each coordinate's bits incremented or decremented through the other's."""
    width = 64 - step * 2
    for delta, own, other in ((dx, _ODD, _EVEN), (dy, _EVEN, _ODD)):
        if delta:
            mine, rest = bits & own, bits & other
            fill = other >> width
            mine = mine + (fill + 1) if delta > 0 else (mine | fill) - (fill + 1)
            bits = (mine & (own >> width) & _U64) | rest
    return bits


#: The cells searched around the centre's, in Redis's order: N, S, E, W, NE, NW, SE, SW.
_NEIGHBOURS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))


def search_boxes(shape: Shape) -> list[tuple[int, int]]:
    """The geohash cells ``(bits, step)`` to scan for a search, in Redis's order: the centre's
    cell and those of its 8 neighbours that reach the shape, a cell equal to the one scanned
    before it left out (``geohashCalculateAreasByShapeWGS84``, ``membersOfAllNeighbors``)."""
    long_min, lat_min, long_max, lat_max = _bounds(shape)
    if shape.radius is not None:
        meters = shape.radius
    else:
        meters = math.sqrt(
            (shape.width / 2) * (shape.width / 2) + (shape.height / 2) * (shape.height / 2)
        )
    step = _steps_for(meters * shape.to_meters, shape.latitude)
    bits = encode(shape.longitude, shape.latitude, step)
    north, south, east, west = (_area(_move(bits, step, *d), step) for d in _NEIGHBOURS[:4])
    too_coarse = (
        north[3] < lat_max or south[2] > lat_min or east[1] < long_max or west[0] > long_min
    )
    if step > 1 and too_coarse:
        step -= 1
        bits = encode(shape.longitude, shape.latitude, step)
    drop: set[tuple[int, int]] = set()
    if step >= 2:  # neighbours beyond the bounding box hold nothing to find
        area = _area(bits, step)
        if area[2] < lat_min:
            drop |= {(0, -1), (-1, -1), (1, -1)}
        if area[3] > lat_max:
            drop |= {(0, 1), (1, 1), (-1, 1)}
        if area[0] < long_min:
            drop |= {(-1, 0), (-1, -1), (-1, 1)}
        if area[1] > long_max:
            drop |= {(1, 0), (1, -1), (1, 1)}
    boxes = [(bits, step)]
    for direction in _NEIGHBOURS:
        cell = (_move(bits, step, *direction), step)
        # Redis compares a cell with the last one scanned, but not with the centre's.
        if direction not in drop and (len(boxes) < 2 or cell != boxes[-1]):
            boxes.append(cell)
    return boxes


def box_scores(bits: int, step: int) -> tuple[int, int]:
    """The scores ``[low, high)`` of the points inside a cell (its bits aligned to 52)."""
    return bits << (52 - step * 2), (bits + 1) << (52 - step * 2)
