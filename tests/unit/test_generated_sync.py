"""The blocking client modules are generated from their asyncio sources by
``scripts/unasync.py``: each committed file must be what the generator makes now, and the
generator's rules must hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", ROOT / "scripts/unasync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unasync = load_generator()


@pytest.mark.parametrize(("source", "target"), unasync.FILES, ids=[t for _, t in unasync.FILES])
def test_generated_module_is_up_to_date(source: str, target: str) -> None:
    expected = unasync.generate(source, target)
    current = (ROOT / target).read_text(encoding="utf-8")
    assert current == expected, f"{target} is stale: run `make generate`"


def test_generated_module_says_where_it_comes_from() -> None:
    text = (ROOT / "blinkstore_gunicorn/client/sync.py").read_text(encoding="utf-8")
    assert text.startswith("# Generated from aio.py by scripts/unasync.py")
    assert "do not edit" in text.splitlines()[0]


def test_keywords_go_and_names_are_renamed() -> None:
    source = (
        "async def f(cache: AsyncCache) -> Awaitable[list[int]]:\n"
        "    async with cache:\n"
        "        async for x in cache.scan_iter():\n"
        "            await cache.__aenter__()\n"
        "    return [await g(), await h()]\n"
        '__all__ = ["AsyncCache", "AsyncCache is here"]\n'
    )
    assert unasync.unasync(source) == (
        "def f(cache: Cache) -> list[int]:\n"
        "    with cache:\n"
        "        for x in cache.scan_iter():\n"
        "            cache.__enter__()\n"
        "    return [g(), h()]\n"
        '__all__ = ["Cache", "AsyncCache is here"]\n'
    )


def test_async_only_lines_are_left_out() -> None:
    source = "def f(\n    a: int,\n    b: int,  # unasync: async only\n) -> None: ...\n"
    assert unasync.unasync(source) == "def f(\n    a: int,\n) -> None: ...\n"


def test_a_name_without_a_rename_stops_generation(tmp_path: Path) -> None:
    source = tmp_path / "thing_aio.py"
    source.write_text("import asyncio\n\nasyncio.sleep(1)\n", encoding="utf-8")
    with pytest.raises(unasync.GenerateError, match="'asyncio' is left"):
        unasync.generate(str(source), "thing_sync.py")
