"""Benchmarks: ``python -m bench`` (see ``bench/__main__.py``); what the suites share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def print_rows(rows: Sequence[Mapping[str, object]], width: int) -> None:
    """``rows`` (dicts with the same keys) as a table: a header of the keys, then one line a
    row, each cell right-aligned in ``width`` characters."""
    columns = list(rows[0])
    print("  ".join(f"{column:>{width}}" for column in columns))
    for row in rows:
        print("  ".join(f"{row[column]!s:>{width}}" for column in columns))
