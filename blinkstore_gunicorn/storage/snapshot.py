"""The store's snapshot file: loaded on start, saved on stop, on request, and periodically.

* **Saving** writes a temporary file beside the snapshot (mode 0600), fsyncs it, renames it over
  the snapshot and fsyncs the directory: a reader sees the old file or the new one, never a
  part. On stop and for ``SAVE`` the store writes it itself (nothing else runs then). In the
  background (the interval, ``BGSAVE``, ``blinkstore snapshot save``) it forks: the child walks
  the engine's dicts as they were at the fork (copy-on-write memory), writes, reports on a
  pipe and ``_exit``s; the store goes on serving. Strings the shared-memory region holds are
  not copied on fork (the region is shared memory), so the child reads them through a
  :class:`~blinkstore_gunicorn.shm.reader.RegionReader`, whose sequence checks never return a
  torn value: such a string is saved as the child read it (its value at the fork, or a later
  one), and one the store changed while the child read it is left out of that snapshot and
  counted (it changed, so the next snapshot has it).
* **Loading** opens the file without following a link, checks it is a regular file owned by
  the store's user and not readable or writable by others, parses all of it (``storage.rdb``)
  and only then adds the keys: a bad file is refused whole with one log line naming it and the
  reason, and the store starts empty. Keys present already (adopted from a live region) win.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from blinkstore_gunicorn._version import __version__
from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.engine.base import Engine, EngineError
from blinkstore_gunicorn.engine.hashes import Hash, hset
from blinkstore_gunicorn.engine.lists import List, push
from blinkstore_gunicorn.engine.sets import Set, sadd
from blinkstore_gunicorn.engine.streamconsume import estimate_read
from blinkstore_gunicorn.engine.streams import Stream, entry_cost
from blinkstore_gunicorn.engine.typed import Container
from blinkstore_gunicorn.engine.zsets import ZSet, zadd
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.rdbstream import StreamValue, group_values, groups_from

__all__ = [
    "SnapshotError",
    "add_record",
    "load_file",
    "record",
    "records",
    "restore",
    "write_file",
]

log = logging.getLogger("blinkstore.snapshot")


class SnapshotError(Exception):
    """A snapshot cannot be written or loaded; the message says why."""


# --- the file ---------------------------------------------------------------------------------


def write_file(
    path: str, records: Iterator[rdb.Record], keys_hint: int = 0, functions: Sequence[bytes] = ()
) -> int:
    """Write ``records`` (and the function libraries ``functions``) to ``path`` atomically (mode
    0600); return the number of keys."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    aux = {
        b"redis-ver": b"7.0.0",
        b"redis-bits": b"64",
        b"ctime": b"%d" % time.time(),
        b"aof-base": b"0",
        b"blinkstore-ver": __version__.encode(),
    }
    try:
        os.unlink(temporary)  # left by a writer of the same pid that was killed
    except FileNotFoundError:
        pass
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            keys = rdb.write(out, records, aux, keys_hint, functions)
            os.fsync(out.fileno())
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return keys


def load_file(path: str, now_ms: int) -> rdb.Parsed | None:
    """The whole of the snapshot at ``path`` (None when there is none yet).

    Raises :class:`SnapshotError` for a file the store must not load: not a regular file,
    another owner, readable or writable by others, or not a complete, intact RDB file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot open it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SnapshotError("not a regular file")
        if st.st_uid != os.geteuid():
            raise SnapshotError(
                f"owned by uid {st.st_uid}, not by the store's user (uid {os.geteuid()})"
            )
        if st.st_mode & 0o077:
            raise SnapshotError(
                f"mode {stat.S_IMODE(st.st_mode):04o} lets other users in (it must be 0600)"
            )
        if st.st_size == 0:
            raise SnapshotError("empty file")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return rdb.parse(view, now_ms)
            except rdb.FormatError as exc:
                raise SnapshotError(str(exc)) from None
            finally:
                view.release()
    finally:
        os.close(fd)


# --- the engine -------------------------------------------------------------------------------


def _stream_value(stream: Stream) -> StreamValue:
    """A stream's entries in the nodes Redis would keep them in, each entry's fields and values
    read back from the request array the server keeps (``engine.streams``)."""
    nodes = []
    start = 0
    for end in stream.node_ends():
        bodies = b"".join(stream.bodies[start:end])
        reader = resp.CommandReader(max_request_size=len(bodies) + 1)
        reader.feed(bodies)
        fields = cast("list[list[bytes]]", reader.drain())
        nodes.append(list(zip(stream.ids[start:end], fields, strict=True)))
        start = end
    groups = group_values(stream.groups.values())
    return StreamValue(nodes, stream.last_id, stream.entries_added, stream.max_deleted, groups)


def _restore_stream(engine: Engine, key: bytes, value: StreamValue) -> None:
    """Add a whole stream (refused whole, with EngineError, when it does not fit)."""
    bodies = [
        [(entry_id, resp.bulk_array(pairs), pairs) for entry_id, pairs in node]
        for node in value.nodes
    ]
    cost = sum(entry_cost(body) for node in bodies for _, body, _ in node)
    stream = engine.writable(key, Stream, cost)
    old_cost = stream.cost
    for node in bodies:  # in the file's nodes, so that XINFO STREAM counts them as before
        for at, (entry_id, body, pairs) in enumerate(node):
            stream.add(entry_id, body, pairs, new_node=not at)
    stream.last_id = max(stream.last_id, value.last_id)
    stream.entries_added = len(stream) if value.added is None else value.added
    stream.max_deleted = value.max_deleted
    stream.groups = groups_from(value.groups, lambda last_id: estimate_read(stream, last_id))
    stream.cost += cost + sum(group.cost for group in stream.groups.values())
    engine.resized(key, stream, old_cost)


def record(key: bytes, value: bytes | Container, deadline: int | None) -> rdb.Record:
    """One key's value (a string or a container of the engine) as a record."""
    if isinstance(value, bytes):
        return rdb.Record(key, b"string", value, deadline)
    if isinstance(value, Hash):
        return rdb.Record(key, b"hash", list(value.fields.items()), deadline)
    if isinstance(value, List):
        return rdb.Record(key, b"list", cast("list[bytes]", value.items), deadline)
    if isinstance(value, Set):
        return rdb.Record(key, b"set", value.members, deadline)
    if isinstance(value, ZSet):
        return rdb.Record(key, b"zset", [(m, s) for s, m in value.order], deadline)
    if isinstance(value, Stream):
        return rdb.Record(key, b"stream", _stream_value(value), deadline)
    # A type added to the engine must be added here too, never left out unseen.
    raise SnapshotError(f"cannot save a {type(value).__name__} (key {key[:40]!r})")


def records(
    engine: MemoryEngine, read: Callable[[bytes, int, int | None], bytes | None]
) -> Iterator[rdb.Record]:
    """Every live key of ``engine`` as a record; ``read(key, block, deadline)`` reads a string
    the region holds (None: leave the key out)."""
    for key, value, deadline in engine.items():
        if isinstance(value, int):
            found = read(key, value, deadline)
            if found is not None:
                yield rdb.Record(key, b"string", found, deadline)
        else:
            yield record(key, value, deadline)


def add_record(engine: Engine, entry: rdb.Record) -> None:
    """Add one parsed key (absent from ``engine``) with its deadline; raises
    :class:`EngineError` when a limit refuses it."""
    key, kind, value, deadline = entry
    if isinstance(value, bytes):
        engine.set(key, value, expire_at_ms=deadline)
        return
    if kind == b"list":
        push(engine, key, cast("list[bytes]", value), left=False)
    elif kind == b"set":
        sadd(engine, key, cast("set[bytes]", value))
    elif kind == b"hash":
        hset(engine, key, cast("list[tuple[bytes, bytes]]", value))
    elif isinstance(value, StreamValue):
        _restore_stream(engine, key, value)
    else:  # sorted by score first: each insert is then an append
        pairs = cast("list[tuple[bytes, float]]", value)
        zadd(engine, key, sorted((score, member) for member, score in pairs))
    if deadline is not None:
        engine.set_expire_at(key, deadline)


def restore(engine: MemoryEngine, parsed: rdb.Parsed) -> tuple[int, int]:
    """Add the parsed keys absent from ``engine``; return (added, refused by a size limit)."""
    added = refused = 0
    entries = parsed.records
    entries.reverse()
    while entries:
        # Popped: each value is released once the engine holds it (or its region copy).
        entry = entries.pop()
        if engine.contains(entry.key):
            continue
        try:
            add_record(engine, entry)
            added += 1
        except EngineError:
            refused += 1
    return added, refused
