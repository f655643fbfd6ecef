"""What ``COMMAND DOCS`` and ``COMMAND GETKEYS``/``GETKEYSANDFLAGS`` answer: Redis 7.0's own
documentation and key specifications of the commands the store shares with it.

``redis_commands.resp`` holds what redis-server 7.0.15 answered (in RESP3) to ``COMMAND DOCS``
and ``COMMAND INFO`` for those commands, written by ``scripts/redis_command_docs.py``: facts
read from the server, so that a client that reads them (redis-cli's hints, client generators)
gets Redis's bytes. The file is read the first time one of these subcommands is asked. The
store's own commands (``BS.*``, ``BLINK.*``) are documented the way Redis documents a module's:
their summary, ``group`` ``module`` and ``module`` ``blinkstore``.

The texts in ``redis_commands.resp`` are Redis's (Copyright (c) 2009-2022, Redis Ltd.,
distributed under the BSD 3-Clause License, as Redis 7.0 is); they are kept as redis-server
gave them, not rewritten, because clients compare them with Redis's.

Key positions follow Redis's key specifications (``getKeysUsingKeySpecs`` in db.c): a begin
search (an index, or a keyword searched from an index) and a find (a range, or a count read
from the arguments). SORT's ``STORE``, SORT_RO's key and SET's flags, which Redis derives in
code rather than from its specifications, are derived the same way here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from typing import NamedTuple

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS
from blinkstore_gunicorn.server.commands.replies import parse_int

__all__ = [
    "KeySpec",
    "command_flags",
    "docs_reply",
    "find_keys",
    "is_container",
    "key_specs",
    "redis_arity",
]

DATA_FILE = "redis_commands.resp"

Value = bytes | int | list["Value"] | dict[bytes, "Value"]


class _Reader:
    """Reads RESP3 replies from ``data`` (the data file's types only), keeping their bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def line(self) -> tuple[bytes, bytes]:
        end = self.data.index(b"\r\n", self.at)
        kind, text = self.data[self.at : self.at + 1], self.data[self.at + 1 : end]
        self.at = end + 2
        return kind, text

    def skip(self) -> None:
        """Pass over one value."""
        kind, text = self.line()
        if kind in b"$=":
            self.at += int(text) + 2
        elif kind in b"*~%":
            for _ in range(int(text) * (2 if kind == b"%" else 1)):
                self.skip()

    def value(self) -> Value:
        """One value: bytes, an int, a list (arrays and sets) or a dict (maps)."""
        kind, text = self.line()
        if kind in b"$=":
            start = self.at
            self.at += int(text) + 2
            return self.data[start : self.at - 2]
        if kind == b":":
            return int(text)
        if kind in b"+_":
            return text
        if kind == b"%":
            pairs = [(self.value(), self.value()) for _ in range(int(text))]
            return {bytes(key): item for key, item in pairs}  # type: ignore[arg-type]
        return [self.value() for _ in range(int(text))]


def _resp2(data: bytes) -> bytes:
    """RESP3 bytes as RESP2 gives the same reply: maps as flat arrays, sets as arrays."""
    out = bytearray()
    reader = _Reader(data)
    while reader.at < len(data):
        start = reader.at
        kind, text = reader.line()
        if kind == b"%":
            out += b"*%d\r\n" % (2 * int(text))
        elif kind == b"~":
            out += b"*" + text + b"\r\n"
        elif kind == b"$":
            reader.at += int(text) + 2
            out += data[start : reader.at]
        else:
            out += data[start : reader.at]
    return bytes(out)


class KeySpec(NamedTuple):
    """One of Redis's key specifications, as ``COMMAND INFO`` lists it."""

    flags: tuple[bytes, ...]
    begin: bytes  # b"index", b"keyword" or b"unknown"
    begin_spec: dict[bytes, Value]
    find: bytes  # b"range", b"keynum" or b"unknown"
    find_spec: dict[bytes, Value]


class _Data(NamedTuple):
    docs: dict[str, bytes]  # name -> its RESP3 docs map
    specs: dict[str, list[KeySpec]]  # name ("object|encoding" for a subcommand) -> specs
    flags: dict[str, tuple[bytes, ...]]  # name -> Redis's command flags
    arity: dict[str, int]  # name -> Redis's arity (subcommands too)


def _specs(info: list[Value], data: _Data) -> None:
    name = bytes(info[0]).decode()  # type: ignore[arg-type]
    data.arity[name] = _int(info[1])
    data.flags[name] = tuple(info[2])  # type: ignore[arg-type]
    specs = []
    for raw in info[8]:  # type: ignore[union-attr]
        spec: dict[bytes, Value] = raw  # type: ignore[assignment]
        begin: dict[bytes, Value] = spec[b"begin_search"]  # type: ignore[assignment]
        find: dict[bytes, Value] = spec[b"find_keys"]  # type: ignore[assignment]
        specs.append(
            KeySpec(
                tuple(spec[b"flags"]),  # type: ignore[arg-type]
                bytes(begin[b"type"]),  # type: ignore[arg-type]
                begin[b"spec"],  # type: ignore[arg-type]
                bytes(find[b"type"]),  # type: ignore[arg-type]
                find[b"spec"],  # type: ignore[arg-type]
            )
        )
    data.specs[name] = specs
    for sub in info[9]:  # type: ignore[union-attr]
        _specs(sub, data)  # type: ignore[arg-type]


@functools.cache
def _data() -> _Data:
    raw = resources.files(__package__).joinpath(DATA_FILE).read_bytes()
    reader = _Reader(raw)
    kind, text = reader.line()
    assert kind == b"%", "the docs map comes first"
    docs = {}
    for _ in range(int(text)):
        name = bytes(reader.value()).decode()  # type: ignore[arg-type]
        start = reader.at
        reader.skip()
        docs[name] = raw[start : reader.at]
    data = _Data(docs, {}, {}, {})
    for info in reader.value():  # type: ignore[union-attr]
        if info:
            _specs(info, data)  # type: ignore[arg-type]
    return data


def key_specs(name: str) -> list[KeySpec] | None:
    """Redis's key specifications of a command (``"object|encoding"`` for a subcommand), None
    for a command Redis does not have."""
    return _data().specs.get(name)


def command_flags(name: str) -> tuple[bytes, ...]:
    """Redis's flags of a command (``no_mandatory_keys``...), empty for one it does not have."""
    return _data().flags.get(name, ())


def redis_arity(name: str) -> int | None:
    """Redis's arity of a command or subcommand (``"object|encoding"``), None if unknown."""
    return _data().arity.get(name)


def is_container(name: str) -> bool:
    """Whether Redis's command has subcommands (OBJECT, CLIENT...)."""
    prefix = name + "|"
    return any(other.startswith(prefix) for other in _data().arity)


def _own_docs(name: str) -> bytes:
    """A store command's docs, as Redis documents a module's command."""
    handler_doc = COMMANDS[name].handler.__doc__ or ""
    summary = handler_doc.strip().split("\n\n")[0].replace("\n", " ")
    fields = [(b"summary", summary.encode()), (b"group", b"module"), (b"module", b"blinkstore")]
    return b"%%%d\r\n" % len(fields) + b"".join(resp.bulk(k) + resp.bulk(v) for k, v in fields)


def docs_reply(names: list[str], resp3: bool) -> bytes:
    """``COMMAND DOCS`` of the named commands (every one when none is named): unknown names
    are left out, as Redis does."""
    docs = _data().docs
    wanted = names or [*docs, *(name for name in COMMANDS if name not in docs)]
    parts = []
    for name in wanted:
        if name in docs:
            body = docs[name]
        elif name in COMMANDS:
            body = _own_docs(name)
        else:
            continue
        parts.append(resp.bulk(name.encode()) + (body if resp3 else _resp2(body)))
    header = b"%%%d\r\n" % len(parts) if resp3 else b"*%d\r\n" % (2 * len(parts))
    return header + b"".join(parts)


class Invalid(Exception):
    """The arguments do not match a key specification (Redis's ``invalid_spec``)."""


def _int(value: Value) -> int:
    assert isinstance(value, int)
    return value


def _spec_keys(spec: KeySpec, args: list[bytes]) -> Iterator[int]:
    """The argument positions (``args[0]`` the command) one specification finds."""
    argc = len(args)
    if spec.begin == b"index":
        first = _int(spec.begin_spec[b"index"])
    elif spec.begin == b"keyword":
        keyword = bytes(spec.begin_spec[b"keyword"]).lower()  # type: ignore[arg-type]
        start = _int(spec.begin_spec[b"startfrom"])
        positions = range(start, argc) if start > 0 else range(argc + start, 0, -1)
        first = next((i + 1 for i in positions if 1 <= i < argc and args[i].lower() == keyword), 0)
        if not first:
            return
    else:
        raise Invalid
    if spec.find == b"range":
        step, last_key = _int(spec.find_spec[b"keystep"]), _int(spec.find_spec[b"lastkey"])
        limit = _int(spec.find_spec[b"limit"])
        if last_key >= 0:
            last = first + last_key
        elif not limit:
            last = argc + last_key
        else:
            last = first + ((argc - first) // limit + last_key)
    elif spec.find == b"keynum":
        step = _int(spec.find_spec[b"keystep"])
        at = first + _int(spec.find_spec[b"keynumidx"])
        count = _canonical_count(args[at]) if at < argc else None
        if count is None:
            raise Invalid
        first += _int(spec.find_spec[b"firstkey"])
        last = first + count - 1
    else:
        raise Invalid
    if last >= argc or last < first or first >= argc:
        raise Invalid  # no key at all (a count of 0) included, as in Redis
    yield from range(first, last + 1, step)


def _canonical_count(raw: bytes) -> int | None:
    """A key count as Redis's ``string2ll`` reads it (``-0`` refused), None when negative."""
    number = None if raw == b"-0" else parse_int(raw)
    return number if number is not None and number >= 0 else None


_SORT_ARGUMENTS = {b"limit": 2, b"get": 1, b"by": 1}


def _sort_keys(args: list[bytes]) -> list[tuple[int, tuple[bytes, ...]]]:
    """SORT's key and its STORE destination, as Redis's ``sortGetKeys`` skips the options."""
    keys: list[tuple[int, tuple[bytes, ...]]] = [(1, (b"RO", b"access"))]
    at = 2
    while at < len(args):
        word = args[at].lower()
        if word == b"store" and at + 1 < len(args):
            keys.append((at + 1, (b"OW", b"update")))
            at += 1
        at += 1 + _SORT_ARGUMENTS.get(word, 0)
    return keys


def find_keys(name: str, args: list[bytes]) -> list[tuple[int, tuple[bytes, ...]]] | None:
    """The positions of the keys in ``args`` (``args[0]`` the command) with their flags, as
    Redis finds them; None when the arguments do not match the specifications."""
    if name == "sort":
        return _sort_keys(args)
    if name == "sort_ro":  # Redis's sortROGetKeys: BY and GET patterns name no key
        return [(1, (b"RO", b"access"))]
    if name == "set":  # its flags depend on GET (Redis's setGetKeys)
        get = any(arg.lower() == b"get" for arg in args[3:])
        return [(1, (b"RW", b"access", b"update") if get else (b"OW", b"update"))]
    found = []
    try:
        for spec in key_specs(name) or []:
            if b"not_key" not in spec.flags:
                found += [(at, spec.flags) for at in _spec_keys(spec, args)]
    except Invalid:
        return None
    return found
