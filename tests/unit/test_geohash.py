"""The geohash arithmetic (``engine/geohash.py``) against values redis-server 7.0.15 gave:
``ZSCORE`` after ``GEOADD`` (the score), ``GEOPOS`` (the decoded point, ``%.17Lf`` less its
trailing zeros), ``GEOHASH`` and ``GEODIST``; and the cells a search scans covering every point
of the shape."""

from __future__ import annotations

import random

import pytest

from blinkstore_gunicorn.engine.geohash import (
    Shape,
    box_scores,
    decode,
    distance,
    encode,
    geohash_text,
    search_boxes,
    within,
)


def _human(value: float) -> str:
    return f"{value:.17f}".rstrip("0").removesuffix(".")


# (longitude, latitude) as sent to GEOADD -> ZSCORE, GEOPOS, GEOHASH, as redis-server answered.
REDIS_POINTS = [
    ((13.361389, 38.115556), 3479099956230698, ("13.36138933897018433", "38.11555639549629859"),
     b"sqc8b49rny0"),
    ((-180, -85.05112878), 0, ("-179.99999731779098511", "-85.05112751263942528"),
     b"00bh0hbj200"),
    ((180, 85.05112878), 13510798882111488, ("180", "85.0511287799999991"), b"bp05b5048p0"),
    ((0, 0), 3377699720527872, ("0.00000268220901489", "0.00000126736058093"), b"s0000000000"),
    ((-0.0001, 0.0001), 1876499844738231, ("-0.00009924173355103", "0.00010012148579364"),
     b"ebpbpbpbtd0"),
    ((179.99999, -45.5), 3095119526538221, ("179.99999195337295532", "-45.50000010453701549"),
     b"pzzvpuzzrc0"),
    ((-73.9857, 40.7484), 1791875672646935, ("-73.98570209741592407", "40.74839914563441567"),
     b"dr5ru6j28h0"),
    ((151.2093, -33.8688), 3252046221964352, ("151.20929986238479614", "-33.86880091934155956"),
     b"r3gx2f77bj0"),
]  # fmt: skip


@pytest.mark.parametrize(("point", "score", "position", "text"), REDIS_POINTS)
def test_encode_decode_and_geohash_as_redis(
    point: tuple[float, float], score: int, position: tuple[str, str], text: bytes
) -> None:
    assert encode(*point) == score
    longitude, latitude = decode(float(score))
    assert (_human(longitude), _human(latitude)) == position
    assert geohash_text(float(score)) == text


def test_scores_no_geoadd_wrote_decode_as_redis_casts_them() -> None:
    """ZADD can put any score in a geo set; Redis's ``(uint64_t)`` cast of it decides the
    point (``GEOPOS`` on redis-server: inf and 1e300 as 0, -inf as 2**63, -5 wrapped)."""
    lowest = ("-179.99999731779098511", "-85.05112751263942528")
    for score in (float("inf"), 1e300, 0.5):
        assert tuple(map(_human, decode(score))) == lowest
    assert tuple(map(_human, decode(-5.0))) == ("180", "85.0511287799999991")
    for score in (2.0**53, float("-inf")):
        assert tuple(map(_human, decode(score))) == ("180", "-85.05112751263942528")
    assert geohash_text(-5.0) == b"bp05b5048p0"


def test_distances_as_redis() -> None:
    """GEODIST on redis-server (km, mi, m, ft) of the points above."""
    points = {index: decode(float(entry[1])) for index, entry in enumerate(REDIS_POINTS)}
    cases = [(0, 6, 1000, "7174.2408"), (6, 7, 1609.34, "9939.0095"), (1, 2, 1, "18919844.5891")]
    cases.append((3, 4, 0.3048, "51.8137"))
    for first, second, unit, text in cases:
        assert "%.4f" % (distance(*points[first], *points[second]) / unit) == text


@pytest.mark.parametrize("seed", range(4))
def test_search_cells_cover_every_point_of_the_shape(seed: int) -> None:
    """Whatever the centre (poles' limits, antimeridian), a point inside a shape of up to
    1,000 km has its score within one of the cells scanned. (Larger boxes across the
    antimeridian miss points on redis-server too; the integration test compares those.)"""
    rng = random.Random(seed)
    for _ in range(200):
        longitude, latitude = rng.uniform(-180, 180), rng.uniform(-85.05, 85.05)
        size = 10.0 ** rng.uniform(0, 6)
        if rng.random() < 0.5:
            shape = Shape(longitude, latitude, 1.0, radius=size)
        else:
            shape = Shape(longitude, latitude, 1.0, width=size, height=size * rng.uniform(0.1, 3))
        ranges = [box_scores(*cell) for cell in search_boxes(shape)]
        assert 1 <= len(ranges) <= 9
        for _ in range(50):
            spread = size / 50_000
            x = min(max(longitude + rng.uniform(-spread, spread), -180), 180)
            y = min(max(latitude + rng.uniform(-spread, spread), -85.05), 85.05)
            score = float(encode(x, y))
            if within(shape, score) is not None:
                assert any(low <= score < high for low, high in ranges), (shape, x, y)
