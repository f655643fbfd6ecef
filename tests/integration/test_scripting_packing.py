"""Lua's ``struct`` and ``cmsgpack`` libraries in scripts, against redis-server 7.0: the same
scripts, replies compared byte for byte in RESP2 and RESP3, the libraries' errors (with the
script line Redis adds) included."""

from __future__ import annotations

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import compare

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]

pytestmark = pytest.mark.redis

SCRIPTS = [
    "return struct.pack('>i', 1)",
    "return struct.pack('<hHbBlLTiI3', -2, 65535, -1, 255, -5, 7, 9, 300, 70000)",
    "return struct.pack('>I16', 5)",
    "return struct.pack('!4 b i', 1, 2)",
    "return struct.pack('!b d', 1, 2.5)",
    "return struct.pack('s c3 c0', 'ab', 'xyzw', 'hello')",
    "return struct.pack('>f d', 1.5, -0.25)",
    "return struct.pack('c5', 'ab')",
    "return struct.pack('z', 1)",
    "return struct.pack('i', 'x')",
    "return struct.pack('i')",
    "return struct.pack('i', '12')",
    "return struct.pack('i40', 1)",
    "return struct.pack('!3 i', 1)",
    "return struct.size('>iIhb!8d')",
    "return struct.size('s')",
    "return struct.size('c0')",
    "return {struct.unpack('>ihB', struct.pack('>ihB', -7, 300, 200))}",
    "return {struct.unpack('<I3', 'abc')}",
    "return {struct.unpack('i', 'ab')}",
    "return {struct.unpack('b c0', struct.pack('b', 3) .. 'abcdef')}",
    "return {struct.unpack('s s', 'ab\\0cd\\0')}",
    "return {struct.unpack('s', 'ab')}",
    "return {struct.unpack('b', 'abc', 2)}",
    "return {struct.unpack('b', 'abc', 0)}",
    "return {struct.unpack('c0', 'abc')}",
    "local a, b = struct.unpack('>d', struct.pack('>d', 3.25)) return {tostring(a), b}",
    "local a = struct.unpack('<f', struct.pack('<f', 0.1)) return tostring(a)",
    "return cmsgpack.pack(1, -1, 127, 128, 255, 256, 65535, 65536, 4294967296, -32, -33, -128, "
    "-129, -32768, -32769, -2147483648, -2147483649)",
    "return cmsgpack.pack(1.5, 0.1, 1e300, 'abc', true, false, nil)",
    "return cmsgpack.pack({1,2,3}, {a=1}, {}, {1, nil, 3})",
    "return cmsgpack.pack(string.rep('x', 40), string.rep('y', 300))",
    "return cmsgpack.pack()",
    "local t = {} for i = 1, 20 do t[i] = i end return cmsgpack.pack(t)",
    "local t = {} for i = 1, 20 do t['k' .. i] = i end return #cmsgpack.pack(t)",
    "local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end return cmsgpack.pack(t)",
    "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, 4}, true))}",
    "local t = cmsgpack.unpack(cmsgpack.pack({a = 'b'})) return t.a",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 1)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 5, 2)}",
    "return {cmsgpack.unpack('\\xcd\\x01')}",
    "return {cmsgpack.unpack(string.char(0xc1))}",
    "return {cmsgpack.unpack(string.char(0xcd, 1))}",
    "return {cmsgpack.unpack_one('abc', 10)}",
    "return {cmsgpack.unpack_one('abc', -1)}",
    "return {cmsgpack.unpack()}",
    "return tostring(cmsgpack.unpack(string.char(0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)))",
    "return cmsgpack.pack(0/0)",
    "return cmsgpack.pack(1/0, -1/0)",
    "return cmsgpack.pack(2^53, 2^63, -2^63)",
    "struct.pack = 1",
    "cmsgpack.foo = 1",
    "local ok, e = pcall(struct.pack, 'z') return tostring(e)",
    "local ok, e = pcall(function() return struct.pack('z') end) return tostring(e)",
    "local ok, e = pcall(function() local x = cmsgpack.unpack(string.char(0xc1)) return x end) "
    "return tostring(e)",
    "local p = struct.pack return p('z')",
    "local t = {} for i = 1, 40 do t['key' .. i] = i end "
    "return {#cmsgpack.pack(t), cmsgpack.unpack(cmsgpack.pack(t)).key7}",
    "return {struct.unpack('>L<l', struct.pack('>L<l', 2^53, -2^53))}",
    "return {struct.unpack('>I9', string.rep('\\255', 9))}",
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_scripts_match_redis(redis_and_store: Servers, protocol: int) -> None:
    assert compare(redis_and_store, [["EVAL", script, "0"] for script in SCRIPTS], protocol) == []
