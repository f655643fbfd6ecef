"""The libraries Redis gives scripts besides Lua's own, as far as Redis libraries use them.

``cjson`` (``encode``, ``decode``, ``null``) and ``bit`` (LuaJIT's bit operations on 32-bit
signed integers: ``tobit``, ``tohex``, ``bnot``, ``band``, ``bor``, ``bxor``, ``lshift``,
``rshift``, ``arshift``, ``rol``, ``ror``, ``bswap``) are written here in Python; ``struct``
and ``cmsgpack`` are in ``packing.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from blinkstore_gunicorn.server.scripting.packing import cmsgpack_module, struct_module

__all__ = ["make_libs"]

_MAX_NESTING = 1000


def _int32(value: float) -> int:
    """LuaJIT's ``tobit``: the number modulo 2^32, as a signed 32-bit integer."""
    number = int(value) & 0xFFFFFFFF
    return number - 0x100000000 if number & 0x80000000 else number


def _bit_module() -> dict[bytes, Callable[..., Any]]:
    def fold(op: Callable[[int, int], int]) -> Callable[..., int]:
        def apply(first: float, *rest: float) -> int:
            result = _int32(first)
            for value in rest:
                result = op(result, _int32(value))
            return _int32(result)

        return apply

    def rol(value: float, count: float) -> int:
        number, shift = _int32(value) & 0xFFFFFFFF, int(count) & 31
        return _int32((number << shift) | (number >> (32 - shift)))

    def tohex(value: float, digits: float = 8) -> bytes:
        count = int(digits)
        width = min(abs(count), 8)
        text = f"{_int32(value) & 0xFFFFFFFF:08x}"[-width:]
        return (text.upper() if count < 0 else text).encode()

    return {
        b"tobit": _int32,
        b"tohex": tohex,
        b"bnot": lambda value: _int32(~_int32(value)),
        b"band": fold(lambda a, b: a & b),
        b"bor": fold(lambda a, b: a | b),
        b"bxor": fold(lambda a, b: a ^ b),
        b"lshift": lambda value, n: _int32(_int32(value) << (int(n) & 31)),
        b"rshift": lambda value, n: _int32((_int32(value) & 0xFFFFFFFF) >> (int(n) & 31)),
        b"arshift": lambda value, n: _int32(_int32(value) >> (int(n) & 31)),
        b"rol": rol,
        b"ror": lambda value, n: rol(value, 32 - (int(n) & 31)),
        b"bswap": lambda value: _int32(
            int.from_bytes((_int32(value) & 0xFFFFFFFF).to_bytes(4, "little"), "big")
        ),
    }


def _cjson_module(lua: Any, lua_type: Callable[[Any], str | None]) -> dict[bytes, Any]:
    null = lua.eval("function() end")  # a unique value scripts compare against

    def plain(value: Any, depth: int) -> Any:
        if depth > _MAX_NESTING:
            raise ValueError("Cannot serialise, excessive nesting")
        kind = lua_type(value)
        if value is None or value == null:
            return None
        if kind == "table":
            pairs = list(value.items())
            keys = [key for key, _ in pairs]
            if keys and all(key.__class__ is int and key > 0 for key in keys):
                size = max(keys)
                items = dict(pairs)
                return [plain(items.get(index), depth + 1) for index in range(1, size + 1)]
            if not keys:
                return {}
            return {_key(key): plain(item, depth + 1) for key, item in pairs}
        if kind is not None:
            raise ValueError(f"Cannot serialise {kind}: type not supported")
        if value.__class__ is bytes:
            return value.decode("utf-8", "surrogateescape")
        if value.__class__ is float and math.isfinite(value) and value.is_integer():
            return int(value)
        return value

    def _key(key: Any) -> str:
        if key.__class__ is bytes:
            return key.decode("utf-8", "surrogateescape")
        if key.__class__ in (int, float):
            return f"{key:.14g}"
        raise ValueError("Cannot serialise table: table key must be a number or string")

    def encode(value: Any) -> bytes:
        text = json.dumps(plain(value, 0), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "surrogateescape")

    def to_lua(value: Any) -> Any:
        if value is None:
            return null
        if value.__class__ is str:
            return value.encode("utf-8", "surrogateescape")
        if value.__class__ is list:
            return lua.table(*[to_lua(item) for item in value])
        if value.__class__ is dict:
            return lua.table_from({key.encode(): to_lua(item) for key, item in value.items()})
        return value

    def decode(text: bytes) -> Any:
        return to_lua(json.loads(text.decode("utf-8", "surrogateescape")))

    return {b"encode": encode, b"decode": decode, b"null": null}


def make_libs(lua: Any, lua_type: Callable[[Any], str | None]) -> dict[bytes, dict[bytes, Any]]:
    """The extra libraries, by global name, for the Lua state ``lua``."""
    return {
        b"bit": _bit_module(),
        b"cjson": _cjson_module(lua, lua_type),
        b"struct": struct_module(lua, lua_type),
        b"cmsgpack": cmsgpack_module(lua, lua_type),
    }
