"""What ``COMMAND INFO``, ``DOCS``, ``LIST`` and ``GETKEYS``/``GETKEYSANDFLAGS`` answer: Redis
7.0's own command table, documentation and key specifications of the commands the store shares
with it.

``redis_commands.resp`` holds what redis-server 7.0.15 answered (in RESP3) to ``COMMAND DOCS``
and ``COMMAND INFO`` for those commands, written by ``scripts/redis_command_docs.py``: facts
read from the server, so that a client that reads them (redis-cli's hints, client generators)
gets Redis's bytes. The file is read the first time one of these subcommands is asked. The
store's own commands (``BS.*``, ``BLINK.*``) are described the way Redis describes a module's:
their summary, ``group`` ``module`` and ``module`` ``blinkstore`` in the docs; the flag
``module``, no ACL categories and their key range as the one key specification in the info.

The texts in ``redis_commands.resp`` are Redis's (Copyright (c) 2009-2022, Redis Ltd.,
distributed under the BSD 3-Clause License, as Redis 7.0 is); they are kept as redis-server
gave them, not rewritten, because clients compare them with Redis's.

Key positions follow Redis's key specifications (``getKeysUsingKeySpecs`` in db.c): a begin
search (an index, or a keyword searched from an index) and a find (a range, or a count read
from the arguments). SORT's ``STORE``, SORT_RO's key and the flags of SET's and BITFIELD's,
which Redis derives in code rather than from its specifications, are derived the same way here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import NamedTuple

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS
from blinkstore_gunicorn.server.commands.replies import parse_int

__all__ = [
    "KeySpec",
    "acl_categories",
    "command_flags",
    "command_names",
    "docs_reply",
    "find_keys",
    "info_reply",
    "is_container",
    "is_own",
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
    docs: dict[str, bytes]  # name ("config|get" for a subcommand) -> its RESP3 docs map
    info: dict[str, bytes]  # name -> its RESP3 COMMAND INFO entry
    specs: dict[str, list[KeySpec]]  # name -> key specifications
    flags: dict[str, tuple[bytes, ...]]  # name -> Redis's command flags
    arity: dict[str, int]  # name -> Redis's arity (subcommands too)
    categories: dict[str, tuple[bytes, ...]]  # name -> ACL categories (``@read``...)
    subcommands: dict[str, list[str]]  # name -> its subcommands' names ("config|get"...)


def _read_docs(reader: _Reader, name: str, data: _Data) -> None:
    """One command's docs map, and those of its subcommands, kept as redis-server's bytes."""
    start = reader.at
    _, size = reader.line()
    for _ in range(int(size)):
        if reader.value() != b"subcommands":
            reader.skip()
            continue
        _, count = reader.line()
        for _ in range(int(count)):
            _read_docs(reader, bytes(reader.value()).decode(), data)  # type: ignore[arg-type]
    data.docs[name] = reader.data[start : reader.at]


def _read_info(reader: _Reader, data: _Data) -> None:
    """One ``COMMAND INFO`` entry (a null for a name Redis lacks) and its subcommands'."""
    start = reader.at
    kind, _ = reader.line()
    if kind == b"_":
        return
    name, arity, flags, _, _, _, categories, _, raw_specs = (reader.value() for _ in range(9))
    _, count = reader.line()
    for _ in range(int(count)):
        _read_info(reader, data)
    key = bytes(name).decode()  # type: ignore[arg-type]
    if "|" in key:
        data.subcommands.setdefault(key.split("|", 1)[0], []).append(key)
    data.info[key] = reader.data[start : reader.at]
    data.arity[key] = _int(arity)
    data.flags[key] = tuple(flags)  # type: ignore[arg-type]
    data.categories[key] = tuple(categories)  # type: ignore[arg-type]
    specs = []
    for raw in raw_specs:  # type: ignore[union-attr]
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
    data.specs[key] = specs


@functools.cache
def _data() -> _Data:
    reader = _Reader(resources.files(__package__).joinpath(DATA_FILE).read_bytes())
    data = _Data({}, {}, {}, {}, {}, {}, {})
    kind, text = reader.line()
    assert kind == b"%", "the docs map comes first"
    for _ in range(int(text)):
        _read_docs(reader, bytes(reader.value()).decode(), data)  # type: ignore[arg-type]
    _, text = reader.line()
    for _ in range(int(text)):
        _read_info(reader, data)
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
    wanted = names or list(COMMANDS)
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


#: The command flags ``COMMAND INFO`` shows, in Redis's order (``addReplyFlagsForCommand``).
_FLAG_ORDER = (
    "write",
    "readonly",
    "denyoom",
    "module",
    "admin",
    "pubsub",
    "noscript",
    "blocking",
    "loading",
    "stale",
    "skip_monitor",
    "skip_slowlog",
    "asking",
    "fast",
    "no_auth",
    "no_mandatory_keys",
    "no_async_loading",
    "no_multi",
    "movablekeys",
    "allow_busy",
)
#: The key flags of a module command's range (Redis's ``CMD_KEY_FULL_ACCESS``); RO for the
#: read-only ones, as their key specifications would say.
_WRITE_KEY_FLAGS = (b"RW", b"access", b"update")
_READ_KEY_FLAGS = (b"RO", b"access")


def _set(items: Iterable[bytes]) -> bytes:
    """A RESP3 set of simple strings."""
    listed = list(items)
    return b"~%d\r\n" % len(listed) + b"".join(b"+%b\r\n" % item for item in listed)


def _map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A RESP3 map of bulk-string keys and encoded values."""
    return b"%%%d\r\n" % len(pairs) + b"".join(resp.bulk(k) + v for k, v in pairs)


def _own_info(name: str) -> bytes:
    """A store command's ``COMMAND INFO`` entry (RESP3), as Redis 7.0 gives a module's: the
    ``module`` flag, no ACL categories, no tips, its key range as the one key specification."""
    spec = COMMANDS[name]
    flags = {flag.replace("-", "_") for flag in spec.flags} | {"module"}
    key_specs = []
    if spec.first_key:
        last = spec.last_key if spec.last_key < 0 else spec.last_key - spec.first_key
        key_flags = _READ_KEY_FLAGS if "readonly" in flags else _WRITE_KEY_FLAGS
        index = _map([(b"index", resp.integer(spec.first_key))])
        found = _map(
            [
                (b"lastkey", resp.integer(last)),
                (b"keystep", resp.integer(spec.step)),
                (b"limit", resp.integer(0)),
            ]
        )
        key_specs.append(
            _map(
                [
                    (b"flags", _set(key_flags)),
                    (b"begin_search", _map([(b"type", resp.bulk(b"index")), (b"spec", index)])),
                    (b"find_keys", _map([(b"type", resp.bulk(b"range")), (b"spec", found)])),
                ]
            )
        )
    return b"*10\r\n" + b"".join(
        [
            resp.bulk(name.encode()),
            resp.integer(spec.arity),
            _set(flag.encode() for flag in _FLAG_ORDER if flag in flags),
            resp.integer(spec.first_key),
            resp.integer(spec.last_key),
            resp.integer(spec.step),
            _set(()),
            _set(()),
            b"~%d\r\n" % len(key_specs) + b"".join(key_specs),
            _set(()),
        ]
    )


def info_reply(name: str, resp3: bool) -> bytes | None:
    """``COMMAND INFO``'s entry for a command or subcommand (``"config|get"``): Redis's own
    for the commands the store shares with it, a module command's for the store's; None for
    an unknown name."""
    raw = _data().info.get(name)
    if raw is None:
        if name not in COMMANDS:
            return None
        raw = _own_info(name)
    return raw if resp3 else _resp2(raw)


def command_names() -> Iterator[str]:
    """What ``COMMAND LIST`` lists: every command, each followed by Redis's subcommands of
    it (``config|get``...), as Redis lists them."""
    subcommands = _data().subcommands
    for name in COMMANDS:
        yield name
        yield from subcommands.get(name, ())


def acl_categories(name: str) -> tuple[bytes, ...]:
    """Redis's ACL categories of a command (``@read``...); none for the store's own (a
    module command has none in Redis 7.0)."""
    return _data().categories.get(name, ())


def is_own(name: str) -> bool:
    """Whether the command is the store's (``BS.*``, ``BLINK.*``), which Redis lacks."""
    return name in COMMANDS and name not in _data().info


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


def _bitfield_reads(args: list[bytes]) -> bool:
    """Whether BITFIELD's arguments are GETs and OVERFLOWs only, as Redis scans them (anything
    it cannot read counts as a write)."""
    at = 2
    while at < len(args):
        word, left = args[at].lower(), len(args) - at - 1
        if word == b"get" and left >= 2:
            at += 3
        elif word == b"overflow" and left >= 1:
            at += 2
        else:
            return False
    return True


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
    if name == "bitfield":  # read-only when it only reads (Redis's bitfieldGetKeys)
        return [(1, (b"RO", b"access") if _bitfield_reads(args) else (b"RW", b"access", b"update"))]
    found = []
    try:
        for spec in key_specs(name) or []:
            if b"not_key" not in spec.flags:
                found += [(at, spec.flags) for at in _spec_keys(spec, args)]
    except Invalid:
        return None
    return found
