"""Script flags: the ``#!lua flags=...`` shebang of an EVAL script (Redis 7.0's eval.c,
``evalExtractShebangFlags``) and what the flags change when a script or a function runs
(script.c, ``scriptPrepareForRun``).

A script without a shebang runs as before Redis 7 (its *compatibility mode*: ``None`` here).
With one, a script may write only if it lacks ``no-writes``, and then ``EVAL_RO``/``FCALL_RO``
refuse it before it starts. ``allow-oom`` lets a script run deny-oom commands over the memory
limit: the store evicts rather than refusing writes, so it has nothing to allow; the cluster
and replica flags have nothing to act on either. All are accepted and listed as Redis does.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FLAGS", "ShebangError", "parse_flags", "parse_shebang", "read_only", "split_shebang"]

#: The flags Redis knows, in its order (``FUNCTION LIST`` lists them so).
FLAGS: Final = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")
_ERR_WRITE_FLAG: Final = "ERR Can not execute a script with write flag using *_ro command."


class ShebangError(ValueError):
    """A shebang or a flag Redis refuses; the message is Redis's (without ``ERR``)."""


def parse_flags(names: list[bytes]) -> frozenset[str]:
    """The flags named, or :class:`ShebangError` naming the first unknown one."""
    for name in names:
        if name.decode("utf-8", "replace") not in FLAGS:
            raise ShebangError(
                f"Unexpected flag in script shebang: {name.decode('utf-8', 'replace')}"
            )
    return frozenset(name.decode() for name in names)


def split_shebang(body: bytes) -> tuple[list[bytes], int] | None:
    """The words of ``body``'s first line and its length when it starts with ``#!``, else
    None; :class:`ShebangError` when that line has no end (the script would be the shebang
    alone)."""
    if not body.startswith(b"#!"):
        return None
    end = body.find(b"\n")
    if end < 0:
        raise ShebangError("Invalid script shebang")
    return body[:end].split(), end


def parse_shebang(body: bytes) -> tuple[frozenset[str] | None, int]:
    """The flags of an EVAL script and the length of its shebang line (the script compiles
    from there, keeping the line's end so that line numbers stay the user's), or ``(None,
    0)`` for a script without one; :class:`ShebangError` with Redis's words for a bad one."""
    found = split_shebang(body)
    if found is None:
        return None, 0
    words, length = found
    if words[0] != b"#!lua":
        raise ShebangError(
            f"Unexpected engine in script shebang: {words[0].decode('utf-8', 'replace')}"
        )
    flags: frozenset[str] = frozenset()
    for word in words[1:]:
        if not word.startswith(b"flags="):
            raise ShebangError(f"Unknown lua shebang option: {word.decode('utf-8', 'replace')}")
        value = word[6:]
        flags |= parse_flags(value.split(b",") if value else [])
    return flags, length


def read_only(flags: frozenset[str], ro_command: bool) -> bool | str:
    """Whether a script with ``flags`` (not in compatibility mode) runs read-only (called by
    ``EVAL_RO``/``FCALL_RO`` when ``ro_command``), or the error refusing to start it."""
    if "no-writes" in flags:
        return True
    return _ERR_WRITE_FLAG if ro_command else False
