"""RESP3 inside scripts: ``redis.setresp(3)`` (Redis 7.0's script_lua.c).

After ``redis.setresp(3)`` the commands a script calls answer it in RESP3, and
:func:`to_lua` converts those replies as Redis does: map -> ``{map={k=v...}}``, set ->
``{set={member=true...}}``, double -> ``{double=n}``, null -> ``nil``, boolean -> ``true`` /
``false``, big number -> ``{big_number='...'}``, verbatim string ->
``{verbatim_string={format='txt', string='...'}}``; attributes are read and left out; the
RESP2 kinds convert as in ``convert.py``.

The other direction, :data:`TYPED_REPLY`, is Lua: the sandbox's reply encoder hands it every
returned table that is neither an error, a status nor an array with items, and it writes the
``{double=}``, ``{big_number=}``, ``{verbatim_string=}``, ``{map=}`` and ``{set=}`` tables
(whatever RESP the script used) in the caller's protocol: RESP3 types for a RESP3 client, their
RESP2 shapes (bulk strings, flat arrays) otherwise, as Redis's ``addReply*`` do.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["TYPED_REPLY", "to_lua"]

_CRLF: Final = b"\r\n"


def to_lua(lua: Any, reply: bytes) -> Any:
    """One whole reply (RESP2 or RESP3) as the Lua value ``redis.call`` hands a script."""
    value, _ = _read(lua, reply, 0)
    return value


def _read(lua: Any, data: bytes, pos: int) -> tuple[Any, int]:
    """The value of the reply at ``pos`` and where the next one starts."""
    eol = data.index(_CRLF, pos)
    kind = data[pos : pos + 1]
    line = data[pos + 1 : eol]
    after = eol + 2
    if kind in b"$=":
        length = int(line)
        if length < 0:
            return False, after
        text = data[after : after + length]
        after += length + 2
        if kind == b"$":
            return text, after
        verbatim = lua.table_from({b"format": text[:3], b"string": text[4:]})
        return lua.table_from({b"verbatim_string": verbatim}), after
    if kind == b":":
        return int(line), after
    if kind == b"+":
        return lua.table_from({b"ok": line}), after
    if kind == b"-":
        return lua.table_from({b"err": line}), after
    if kind == b"_":
        return None, after
    if kind == b"#":
        return line == b"t", after
    if kind == b",":
        return lua.table_from({b"double": float(line)}), after
    if kind == b"(":
        return lua.table_from({b"big_number": line}), after
    count = int(line)
    if count < 0:
        return False, after
    if kind == b"|":  # attributes: read past them, then the reply they describe
        for _ in range(2 * count):
            _, after = _read(lua, data, after)
        return _read(lua, data, after)
    table = lua.table()
    for index in range(1, count + 1):
        item, after = _read(lua, data, after)
        if kind == b"%":
            table[item], after = _read(lua, data, after)
        elif kind == b"~":
            table[item] = True
        else:
            table[index] = item
    if kind == b"%":
        return lua.table_from({b"map": table}), after
    if kind == b"~":
        return lua.table_from({b"set": table}), after
    return table, after


#: Lua chunk returning ``typed(value, out, n, depth, resp3, encode)``: appends the reply of a
#: RESP3-typed table to ``out`` and returns the new last index (nil: nested too deep), or
#: false when ``value`` is not one. ``encode`` is the sandbox's encoder, for map and set items.
TYPED_REPLY: Final = r"""
local rawget, next, type, format, gsub = rawget, next, type, string.format, string.gsub
local INF = 1 / 0

local function bulk(text) return '$' .. #text .. '\r\n' .. text .. '\r\n' end

return function(value, out, n, depth, nil_reply, encode, resp3)
  local double = rawget(value, 'double')
  if type(double) == 'number' then
    local text
    if double == INF or double == -INF then
      text = double > 0 and 'inf' or '-inf'
    else
      text = format('%.17g', double)
    end
    out[n] = resp3 and (',' .. text .. '\r\n') or bulk(text)
    return n
  end
  local big = rawget(value, 'big_number')
  if type(big) == 'string' then
    big = gsub(big, '[\r\n]', ' ')
    out[n] = resp3 and ('(' .. big .. '\r\n') or bulk(big)
    return n
  end
  local verbatim = rawget(value, 'verbatim_string')
  if type(verbatim) == 'table' then
    local kind, text = rawget(verbatim, 'format'), rawget(verbatim, 'string')
    if type(kind) == 'string' and type(text) == 'string' then
      if resp3 then
        kind = (kind .. '   '):sub(1, 3)
        out[n] = '=' .. (#text + 4) .. '\r\n' .. kind .. ':' .. text .. '\r\n'
      else
        out[n] = bulk(text)
      end
      return n
    end
  end
  local map, set = rawget(value, 'map'), rawget(value, 'set')
  local items = type(map) == 'table' and map or type(set) == 'table' and set or nil
  if items == nil then return false end
  local header, count, key, item = n, 0, next(items)
  while key ~= nil do
    n = encode(key, nil_reply, out, n, depth + 1)
    if n == nil then return nil end
    if items == map then
      n = encode(item, nil_reply, out, n, depth + 1)
      if n == nil then return nil end
    end
    count = count + 1
    key, item = next(items, key)
  end
  if items == map then
    out[header] = resp3 and ('%' .. count .. '\r\n') or ('*' .. 2 * count .. '\r\n')
  else
    out[header] = (resp3 and '~' or '*') .. count .. '\r\n'
  end
  return n
end
"""
