"""``struct`` and ``cmsgpack``, the binary-packing libraries Redis gives scripts, in Python.

``struct`` (Roberto Ierusalimschy's ``lua_struct``): ``pack(fmt, ...)``, ``unpack(fmt, s
[, pos])`` (the values, then the position after them) and ``size(fmt)``. Formats: ``<``/``>``
endianness (native, little, by default), ``!n`` alignment, ``b B h H l L T i I[n]`` integers
(1, 2, 8, 8 and n bytes, 4 by default), ``f d`` floats, ``x`` a pad byte, ``s`` a
zero-terminated string, ``c[n]`` n bytes (``c0``: the whole string; in ``unpack`` the length
is the value before it).

``cmsgpack`` (antirez's ``lua_cmsgpack``): ``pack(...)`` (each argument, concatenated),
``unpack(s)`` (every value), ``unpack_one(s [, offset])`` and ``unpack_limit(s, n [, offset])``
(the next offset, -1 at the end, then the values). Tables whose keys are exactly 1..n are
arrays, other tables maps; an integral number is an integer, another one a float when a float
holds it exactly, else a double; tables nested 16 deep are packed as nil.

Lua numbers are doubles: integers arrive from lupa as ``int`` when integral and go back as
``float``, as Redis's C code casts them. Errors read as Redis's (``user_script:1: bad argument
#2 to 'pack' (string too short)``): the name the function was called by and the caller's line
are read from Lua's stack when an error is raised, as ``luaL_argerror``/``luaL_error`` do.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["cmsgpack_module", "struct_module"]

_MAX_INT_SIZE = 32
_MAX_ALIGN = 8  # Redis on 64-bit Linux: alignment of a double
_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "f": 4, "d": 8, "x": 1}
_OPTIONS = "bBhHlLTiIfdxcs"
_MSGPACK_NESTING = 16


# The name the running C function was called by (Lua's "?" when none) and where its caller is
# (``user_script:1: ``), as ``luaL_argerror`` and ``luaL_error`` find them: level 2 is the
# function lupa runs Python through, level 3 its caller.
_CALL_SITE = b"""
function()
  local getinfo = debug.getinfo
  return function()
    local called, caller = getinfo(2, 'n'), getinfo(3, 'Sl')
    local where = ''
    if caller and caller.currentline > 0 then
      where = caller.short_src .. ':' .. caller.currentline .. ': '
    end
    return called and called.name or '?', where
  end
end
"""


def _lua_functions(lua: Any, functions: dict[bytes, Callable[..., Any]]) -> dict[bytes, Any]:
    """The functions, each raising its :class:`LuaError` as the C library would word it."""
    call_site = lua.eval(_CALL_SITE)()

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            try:
                return function(*args)
            except LuaError as exc:
                name, where = call_site()
                raise LuaError(where.decode() + exc.text(name.decode())) from None

        return call

    return {name: wrap(function) for name, function in functions.items()}


class LuaError(Exception):
    """An error raised into the script: ``message``, or about argument ``argument`` (its text
    is the message Redis's C library gives)."""

    def __init__(self, message: str, argument: int | None = None) -> None:
        super().__init__(message)
        self.message, self.argument = message, argument

    def text(self, function: str) -> str:
        """The message, for a function called ``function``."""
        if self.argument is None:
            return self.message
        return f"bad argument #{self.argument} to '{function}' ({self.message})"


def _arg_error(position: int, message: str) -> LuaError:
    return LuaError(message, position)


def _type_name(value: Any, lua_type: Callable[[Any], str | None]) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, bytes):
        return "string"
    return lua_type(value) or "userdata"


class _Args:
    """A C function's arguments, checked as ``luaL_check*`` checks them."""

    def __init__(
        self,
        args: tuple[Any, ...],
        lua_type: Callable[[Any], str | None],
        missing: str = "no value",
    ) -> None:
        self.args, self.lua_type = args, lua_type
        self.missing = missing  # struct.pack pushes a nil past its arguments: "got nil"

    def _expected(self, position: int, what: str) -> LuaError:
        got = (
            _type_name(self.args[position - 1], self.lua_type)
            if position <= len(self.args)
            else self.missing
        )
        return _arg_error(position, f"{what} expected, got {got}")

    def string(self, position: int) -> bytes:
        value = self.args[position - 1] if position <= len(self.args) else None
        if isinstance(value, bytes):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _number_text(value)
        raise self._expected(position, "string")

    def number(self, position: int) -> float:
        value = self.args[position - 1] if position <= len(self.args) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, bytes):
            number = _string_number(value)
            if number is not None:
                return number
        raise self._expected(position, "number")

    def optional_int(self, position: int, default: int) -> int:
        if position > len(self.args) or self.args[position - 1] is None:
            return default
        return _truncate(self.number(position))


def _number_text(number: float) -> bytes:
    """A number as Lua 5.1 turns it into a string (``%.14g``)."""
    if isinstance(number, int):
        number = float(number)
    if math.isinf(number):
        return b"inf" if number > 0 else b"-inf"
    return b"nan" if math.isnan(number) else b"%.14g" % number


def _string_number(text: bytes) -> float | None:
    """A string as Lua 5.1 reads a number from it (decimal, or hexadecimal with ``0x``)."""
    stripped = text.strip()
    try:
        if stripped[:2].lower() == b"0x":
            return float(int(stripped, 16))
        return float(stripped)
    except ValueError:
        return None


def _truncate(number: float) -> int:
    """A double cast to a C integer (toward zero; NaN and infinities as 0 here)."""
    return int(number) if math.isfinite(number) else 0


# --- struct ---------------------------------------------------------------------------------


class _Format:
    """Reads a format string option by option, keeping endianness and alignment."""

    def __init__(self, fmt: bytes) -> None:
        self.text, self.at = fmt.decode("latin-1"), 0
        self.little, self.align = True, 1

    def _number(self, default: int) -> int:
        start = self.at
        while self.at < len(self.text) and self.text[self.at].isdigit():
            self.at += 1
        if start == self.at:
            return default
        number = int(self.text[start : self.at])
        if number > 2**31 - 1:
            raise LuaError("integral size overflow")
        return number

    def options(self) -> Iterator[tuple[str, int]]:
        """(option, size) for each option but the controls, which are applied here."""
        while self.at < len(self.text):
            option = self.text[self.at]
            self.at += 1
            if option in " <>!":
                self._control(option)
                continue
            if option not in _OPTIONS:
                raise _arg_error(1, f"invalid format option '{option}'")
            if option in "iI":
                size = self._number(4)
                if size > _MAX_INT_SIZE:
                    raise LuaError(f"integral size {size} is larger than limit of {_MAX_INT_SIZE}")
            elif option == "c":
                size = self._number(1)
            else:
                size = _SIZES.get(option, 0)
            yield option, size

    def padding(self, length: int, option: str, size: int) -> int:
        if size == 0 or option == "c":
            return 0
        size = min(size, self.align)
        return (size - (length & (size - 1))) & (size - 1)

    def _control(self, option: str) -> None:
        if option in "<>":
            self.little = option == "<"
        elif option == "!":
            align = self._number(_MAX_ALIGN)
            if align <= 0 or align & (align - 1):
                raise LuaError(f"alignment {align} is not a power of 2")
            self.align = align


def _integer_bytes(number: float, size: int, little: bool) -> bytes:
    value = _truncate(number) & ((1 << 64) - 1)  # through C's 64-bit unsigned integer
    data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return data if little else data[::-1]


def _pack(lua_type: Callable[[Any], str | None], *args: Any) -> bytes:
    checked = _Args(args, lua_type, missing="nil")
    fmt = _Format(checked.string(1))
    out = bytearray()
    arg = 2
    for option, size in fmt.options():
        out += bytes(fmt.padding(len(out), option, size))
        if option in "bBhHlLTiI":
            out += _integer_bytes(checked.number(arg), size, fmt.little)
            arg += 1
        elif option == "x":
            out.append(0)
        elif option in "fd":
            packed = struct.pack("<f" if option == "f" else "<d", checked.number(arg))
            out += packed if fmt.little else packed[::-1]
            arg += 1
        elif option in "cs":
            text = checked.string(arg)
            arg += 1
            width = size or len(text)
            if len(text) < width:
                raise _arg_error(arg, "string too short")
            out += text[:width] + (b"\0" if option == "s" else b"")
    return bytes(out)


def _integer_value(data: bytes, little: bool, signed: bool) -> float:
    value = int.from_bytes(data if little else data[::-1], "little")
    size = len(data)
    if signed and size <= 8 and value >> (8 * size - 1):
        value -= 1 << (8 * size)
    elif size > 8:  # C keeps the low 64 bits only
        value &= (1 << 64) - 1
        if signed and value >> 63:
            value -= 1 << 64
    return float(value)


def _unpack(lua_type: Callable[[Any], str | None], *args: Any) -> tuple[Any, ...]:
    checked = _Args(args, lua_type)
    fmt = _Format(checked.string(1))
    data = checked.string(2)
    pos = checked.optional_int(3, 1)
    if pos <= 0:
        raise _arg_error(3, "offset must be 1 or greater")
    pos -= 1
    results: list[Any] = []
    for option, size in fmt.options():
        pos += fmt.padding(pos, option, size)
        if size > len(data) or pos > len(data) - size:
            raise _arg_error(2, "data string too short")
        pos = _unpack_one(option, size, data, pos, little=fmt.little, results=results)
    return (*results, pos + 1)


def _unpack_one(
    option: str, size: int, data: bytes, pos: int, *, little: bool, results: list[Any]
) -> int:
    """Append the value of one option read at ``pos``; return the position after it."""
    if option in "bBhHlLTiI":
        results.append(_integer_value(data[pos : pos + size], little, option.islower()))
    elif option in "fd":
        raw = data[pos : pos + size]
        code = "<f" if option == "f" else "<d"
        results.append(struct.unpack(code, raw if little else raw[::-1])[0])
    elif option == "c":
        if size == 0:  # c0: the length is the value read just before
            if not results or not isinstance(results[-1], (int, float)):
                raise LuaError("format 'c0' needs a previous size")
            size = _truncate(results.pop())
            if size > len(data) or pos > len(data) - size:
                raise _arg_error(2, "data string too short")
        results.append(data[pos : pos + size])
    elif option == "s":
        end = data.find(b"\0", pos)
        if end < 0:
            raise LuaError("unfinished string in data")
        results.append(data[pos:end])
        size = end - pos + 1
    return pos + size


def _size(lua_type: Callable[[Any], str | None], *args: Any) -> int:
    fmt = _Format(_Args(args, lua_type).string(1))
    pos = 0
    for option, size in fmt.options():
        pos += fmt.padding(pos, option, size)
        if option == "s":
            raise _arg_error(1, "option 's' has no fixed size")
        if option == "c" and size == 0:
            raise _arg_error(1, "option 'c0' has no fixed size")
        pos += size
    return pos


def struct_module(lua: Any, lua_type: Callable[[Any], str | None]) -> dict[bytes, Any]:
    """The ``struct`` library's functions, by name, for the Lua state ``lua``."""
    functions: dict[bytes, Callable[..., Any]] = {
        b"pack": lambda *args: _pack(lua_type, *args),
        b"unpack": lambda *args: _unpack(lua_type, *args),
        b"size": lambda *args: _size(lua_type, *args),
    }
    return _lua_functions(lua, functions)


# --- cmsgpack -------------------------------------------------------------------------------


def _msgpack_int(n: int) -> bytes:
    if n >= 0:
        if n <= 0x7F:
            return bytes((n,))
        for tag, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if n < 1 << (8 * width) or width == 8:
                return bytes((tag,)) + n.to_bytes(width, "big")
    if n >= -32:
        return bytes((n & 0xFF,))
    for tag, width in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if n >= -(1 << (8 * width - 1)) or width == 8:
            return bytes((tag,)) + n.to_bytes(width, "big", signed=True)
    raise AssertionError("unreachable")


def _msgpack_number(n: float) -> bytes:
    if math.isfinite(n) and n == int(n) and -(2**63) <= n < 2**63:
        return _msgpack_int(int(n))
    try:
        single = struct.pack(">f", n)
    except OverflowError:  # beyond a float's range: C's conversion gives inf, never equal
        single = b""
    if single and struct.unpack(">f", single)[0] == n:  # NaN never equals: a double
        return b"\xca" + single
    return b"\xcb" + struct.pack(">d", n)


def _msgpack_header(count: int, fix: int, tags: tuple[int, int]) -> bytes:
    if count < 16:
        return bytes((fix | count,))
    if count <= 0xFFFF:
        return bytes((tags[0],)) + count.to_bytes(2, "big")
    return bytes((tags[1],)) + count.to_bytes(4, "big")


def _msgpack_bytes(data: bytes) -> bytes:
    n = len(data)
    if n < 32:
        return bytes((0xA0 | n,)) + data
    if n <= 0xFF:
        return bytes((0xD9, n)) + data
    if n <= 0xFFFF:
        return b"\xda" + n.to_bytes(2, "big") + data
    return b"\xdb" + n.to_bytes(4, "big") + data


def _encode(value: Any, level: int, lua_type: Callable[[Any], str | None], out: bytearray) -> None:
    if isinstance(value, bytes):
        out += _msgpack_bytes(value)
    elif isinstance(value, bool):
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, (int, float)):
        out += _msgpack_number(value)
    elif value is not None and lua_type(value) == "table" and level < _MSGPACK_NESTING:
        pairs = list(value.items())
        keys = [key for key, _ in pairs]
        numeric = all(
            isinstance(key, (int, float))
            and not isinstance(key, bool)
            and key > 0
            and key == int(key)
            for key in keys
        )
        if numeric and max(keys, default=0) == len(keys):
            out += _msgpack_header(len(keys), 0x90, (0xDC, 0xDD))
            for index in range(1, len(keys) + 1):
                _encode(value[index], level + 1, lua_type, out)
        else:
            out += _msgpack_header(len(pairs), 0x80, (0xDE, 0xDF))
            for key, item in pairs:
                _encode(key, level + 1, lua_type, out)
                _encode(item, level + 1, lua_type, out)
    else:
        out.append(0xC0)


class _Truncated(Exception):
    pass


class _BadFormat(Exception):
    pass


class _Decoder:
    """Reads msgpack values from ``data`` at ``at``, making Lua tables for arrays and maps."""

    def __init__(self, lua: Any, data: bytes, at: int) -> None:
        self.lua, self.data, self.at = lua, data, at

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise _Truncated
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def number(self, n: int, signed: bool = False) -> int:
        return int.from_bytes(self.take(n), "big", signed=signed)

    def value(self) -> Any:
        tag = self.take(1)[0]
        if tag <= 0x7F or tag >= 0xE0:
            return float(tag if tag <= 0x7F else tag - 0x100)
        if 0x80 <= tag <= 0x8F:
            return self.map(tag & 0x0F)
        if 0x90 <= tag <= 0x9F:
            return self.array(tag & 0x0F)
        if 0xA0 <= tag <= 0xBF:
            return self.take(tag & 0x1F)
        simple: dict[int, Callable[[], Any]] = {
            0xC0: lambda: None,
            0xC2: lambda: False,
            0xC3: lambda: True,
            0xCA: lambda: struct.unpack(">f", self.take(4))[0],
            0xCB: lambda: struct.unpack(">d", self.take(8))[0],
            0xCC: lambda: float(self.number(1)),
            0xCD: lambda: float(self.number(2)),
            0xCE: lambda: float(self.number(4)),
            0xCF: lambda: float(self.number(8)),
            0xD0: lambda: float(self.number(1, True)),
            0xD1: lambda: float(self.number(2, True)),
            0xD2: lambda: float(self.number(4, True)),
            0xD3: lambda: float(self.number(8, True)),
            0xD9: lambda: self.take(self.number(1)),
            0xDA: lambda: self.take(self.number(2)),
            0xDB: lambda: self.take(self.number(4)),
            0xDC: lambda: self.array(self.number(2)),
            0xDD: lambda: self.array(self.number(4)),
            0xDE: lambda: self.map(self.number(2)),
            0xDF: lambda: self.map(self.number(4)),
        }
        read = simple.get(tag)
        if read is None:
            raise _BadFormat
        return read()

    def array(self, count: int) -> Any:
        table = self.lua.table()
        for index in range(1, count + 1):
            item = self.value()
            if item is not None:
                table[index] = item
        return table

    def map(self, count: int) -> Any:
        table = self.lua.table()
        for _ in range(count):
            key, item = self.value(), self.value()
            if key is None:
                raise LuaError("table index is nil")
            if item is not None:
                table[key] = item
        return table


def _unpack_values(lua: Any, data: bytes, limit: int, offset: int) -> tuple[Any, ...]:
    everything = not limit and not offset
    if offset < 0 or limit < 0:
        raise LuaError(
            f"Invalid request to unpack with offset of {offset} and limit of {len(data)}."
        )
    if offset > len(data):
        raise LuaError(f"Start offset {offset} greater than input length {len(data)}.")
    decoder = _Decoder(lua, data, offset)
    values: list[Any] = []
    try:
        while decoder.at < len(data) and (everything or len(values) < limit):
            values.append(decoder.value())
    except _Truncated:
        raise LuaError("Missing bytes in input.") from None
    except _BadFormat:
        raise LuaError("Bad data format in input.") from None
    if everything:
        return tuple(values)
    return (-1 if decoder.at == len(data) else decoder.at, *values)


def cmsgpack_module(lua: Any, lua_type: Callable[[Any], str | None]) -> dict[bytes, Any]:
    """The ``cmsgpack`` library's functions, by name, for the Lua state ``lua``."""

    def pack(*args: Any) -> bytes:
        if not args:
            raise _arg_error(0, "MessagePack pack needs input.")
        out = bytearray()
        for value in args:
            _encode(value, 0, lua_type, out)
        return bytes(out)

    def unpack(*args: Any) -> tuple[Any, ...]:
        return _unpack_values(lua, _Args(args, lua_type).string(1), 0, 0)

    def unpack_one(*args: Any) -> tuple[Any, ...]:
        checked = _Args(args, lua_type)
        return _unpack_values(lua, checked.string(1), 1, checked.optional_int(2, 0))

    def unpack_limit(*args: Any) -> tuple[Any, ...]:
        checked = _Args(args, lua_type)
        limit = _truncate(checked.number(2))
        return _unpack_values(lua, checked.string(1), limit, checked.optional_int(3, 0))

    functions: dict[bytes, Callable[..., Any]] = {
        b"pack": pack,
        b"unpack": unpack,
        b"unpack_one": unpack_one,
        b"unpack_limit": unpack_limit,
    }
    return _lua_functions(lua, functions)
