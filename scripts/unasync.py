"""Generate the blocking client modules from their asyncio sources: ``make generate``.

Every cache operation is written once, for asyncio; this script derives the blocking twin
from it, the way httpcore derives its sync package with unasync. ``--check`` (run by
``make lint`` and by ``tests/unit/test_generated_sync.py``) fails when a generated file is
stale, so the two flavours cannot drift.

Why generation rather than a sans-IO core that both flavours drive: the client's logic is
mostly *around* its I/O (namespacing, serialization, the ``on_error`` policy, stampede
leases, resends), interleaved with one or two backend calls per operation. A sans-IO core
would turn each operation into a state machine or a generator that a driver steps through,
which costs a frame and a resume on every call of the hot paths (``Cache.get`` first) and
still leaves one thin method per operation to write in each shell. Generated code is the
plain code a person would write for each flavour, at the speed of hand-written code. Where
the two I/O designs genuinely differ (the store backends' blocking pool vs pipelined
multiplexer) nothing is generated: their shared logic lives in the sans-IO
``client/backends/_resp.py`` instead.

The transformation works on tokens, so it never touches a string or a comment by accident:

* the ``async`` and ``await`` keywords go (``async def``/``for``/``with`` become plain);
* ``Awaitable[X]`` becomes ``X``;
* names are renamed by :data:`RENAMES` (``AsyncCache`` -> ``Cache``, ``_runtime_aio`` ->
  ``_runtime_sync``...), and so is a string that is exactly such a name (``__all__``);
  other strings and comments are copied as written, so docstrings in a source must be true
  of both flavours;
* a line that ends with the comment ``# unasync: async only`` is left out.

What differs by nature (how to wait, sleep, run in the background, shield a cleanup from
cancellation) lives in small hand-written modules with the same names in both flavours
(``client/_runtime_aio.py`` and ``client/_runtime_sync.py``). The output is checked: a name
still mentioning asyncio means a missing rename, and generation fails. Last, ruff sorts the
imports (renames change their order), drops the ones left unused, and formats the result.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (asyncio source, generated blocking module), relative to the repository root.
FILES: tuple[tuple[str, str], ...] = (
    ("blinkstore_gunicorn/client/aio.py", "blinkstore_gunicorn/client/sync.py"),
    ("blinkstore_gunicorn/client/_leases_aio.py", "blinkstore_gunicorn/client/_leases_sync.py"),
    ("blinkstore_gunicorn/client/_locks_aio.py", "blinkstore_gunicorn/client/_locks_sync.py"),
    (
        "blinkstore_gunicorn/client/backends/redis_aio.py",
        "blinkstore_gunicorn/client/backends/redis_sync.py",
    ),
    (
        "blinkstore_gunicorn/client/backends/base_aio.py",
        "blinkstore_gunicorn/client/backends/base_sync.py",
    ),
)

#: Names that differ between the flavours; every other name is kept.
RENAMES: dict[str, str] = {
    # the standard library's asynchronous protocols and special methods
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
    "asynccontextmanager": "contextmanager",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "aclose": "close",
    # modules: each source imports the other sources and its runtime by these names
    "_runtime_aio": "_runtime_sync",
    "_leases_aio": "_leases_sync",
    "redis_aio": "redis_sync",
    "base_aio": "base_sync",
    "connect_aio": "connect_sync",
    # our classes and functions
    "AsyncCache": "Cache",
    "AsyncBackend": "SyncBackend",
    "create_async_backend": "create_sync_backend",
    "AsyncLocalFlights": "LocalFlights",
    "AsyncLease": "SyncLease",
    "_AsyncPrimitives": "_SyncPrimitives",
    "AsyncLockKeyLeases": "LockKeyLeases",
    "_AsyncLockKeyLease": "_LockKeyLease",
    "AsyncUnsharedLeases": "UnsharedLeases",
    "_AsyncUnsharedLease": "_UnsharedLease",
    "async_leases": "sync_leases",
    "AsyncRedisBackend": "RedisBackend",
    "AsyncGuard": "Guard",
    # locks
    "_locks_aio": "_locks_sync",
    "AsyncLock": "Lock",
    "AsyncLockHold": "LockHold",
    "AsyncKeyLocks": "KeyLocks",
    "_AsyncKeyLock": "_KeyLock",
    "_AsyncKeyPrimitives": "_KeyPrimitives",
    "async_locks": "sync_locks",
    "AsyncFeed": "SyncFeed",
    "_AsyncRedisFeed": "_RedisFeed",
    "AsyncSubscription": "Subscription",
}

ASYNC_ONLY = "# unasync: async only"
#: A name in generated code that matches this needs an entry in RENAMES.
_LEFTOVER = re.compile(r"async|aio|Async|await", re.IGNORECASE)


class GenerateError(Exception):
    """The source cannot be turned into a blocking module (the message says where)."""


def _edits(source: str) -> list[tuple[int, int, str]]:
    """``(start, end, replacement)`` offsets into ``source``, in source order."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(row: int, col: int) -> int:
        return starts[row - 1] + col

    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits: list[tuple[int, int, str]] = []
    closing: list[int] = []  # bracket depths whose "]" ends an Awaitable[...]
    depth = 0
    for i, tok in enumerate(tokens):
        start, end = offset(*tok.start), offset(*tok.end)
        if tok.type == tokenize.COMMENT and tok.string.strip() == ASYNC_ONLY:
            row = tok.start[0]
            edits.append((starts[row - 1], starts[row], ""))
        elif tok.type == tokenize.NAME and tok.string in ("async", "await"):
            # Drop the keyword and the blanks after it: "await x" -> "x".
            edits.append((start, offset(*tokens[i + 1].start), ""))
        elif tok.string == "Awaitable" and tokens[i + 1].string == "[":
            edits.append((start, offset(*tokens[i + 1].end), ""))
            closing.append(depth)
        elif tok.type == tokenize.NAME and tok.string in RENAMES:
            edits.append((start, end, RENAMES[tok.string]))
        elif tok.type == tokenize.STRING and tok.string[1:-1] in RENAMES:
            # A string that is exactly a name (``__all__``) is renamed with it.
            edits.append((start + 1, end - 1, RENAMES[tok.string[1:-1]]))
        elif tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
            if closing and closing[-1] == depth and tok.string == "]":
                closing.pop()
                edits.append((start, end, ""))
    # A dropped line may contain edits of its own: keep only the outermost.
    kept: list[tuple[int, int, str]] = []
    for edit in sorted(edits, key=lambda e: (e[0], -e[1])):
        if kept and edit[0] < kept[-1][1]:
            continue
        kept.append(edit)
    return kept


def unasync(source: str) -> str:
    """The blocking twin of ``source`` (not yet formatted)."""
    out = []
    last = 0
    for start, end, replacement in _edits(source):
        out.append(source[last:start])
        out.append(replacement)
        last = end
    out.append(source[last:])
    return "".join(out)


def _check_leftovers(code: str) -> None:
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and _LEFTOVER.search(tok.string):
            raise GenerateError(
                f"line {tok.start[0]}: {tok.string!r} is left in the blocking code: add a "
                "rename to RENAMES in scripts/unasync.py, or move it to client/_runtime_*.py"
            )


def _ruff(args: list[str], source: str, filename: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", filename, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise GenerateError(f"ruff {' '.join(args)} on {filename}:\n{done.stdout}{done.stderr}")
    return done.stdout


def generate(source_path: str, target_path: str) -> str:
    """The full text of ``target_path`` as generated from ``source_path``."""
    source = (ROOT / source_path).read_text(encoding="utf-8")
    header = (
        f"# Generated from {Path(source_path).name} by scripts/unasync.py (make generate): "
        "do not edit.\n"
    )
    code = header + unasync(source)
    # Renames reorder imports and __all__, leave imports that only the asyncio code used
    # (Awaitable) unused, and turn "async for x in it: yield x" into a loop that is
    # "yield from it" (whose "unsafe" fix only changes how send() and throw() pass through).
    fixes = ["check", "--fix", "--unsafe-fixes", "--select", "I,F401,RUF022,UP028", "--quiet"]
    code = _ruff(fixes, code, target_path)
    _check_leftovers(code)
    return _ruff(["format", "--quiet"], code, target_path)


def main(argv: list[str] | None = None) -> int:
    """Write every generated module, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    stale = []
    for source_path, target_path in FILES:
        try:
            text = generate(source_path, target_path)
        except GenerateError as exc:
            print(f"{source_path}: {exc}", file=sys.stderr)
            return 2
        target = ROOT / target_path
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(target_path)
        if not args.check:
            target.write_text(text, encoding="utf-8")
    if args.check and stale:
        for path in stale:
            print(f"{path} is stale: run `make generate`", file=sys.stderr)
        return 1
    for path in stale:
        print(f"generated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
