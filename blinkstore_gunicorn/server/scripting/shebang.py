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

__all__ = [
    "FLAGS",
    "ShebangError",
    "parse_flags",
    "parse_shebang",
    "read_only",
    "split_args",
    "split_shebang",
]

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


_ESCAPES: Final = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def split_args(line: bytes) -> list[bytes] | None:
    """``line``'s words as Redis's ``sdssplitargs`` reads them (blanks between words; a word
    may hold ``"..."`` with C escapes or ``'...'``), or None for an unbalanced quote or a
    closing quote followed by more than a blank."""
    words: list[bytes] = []
    at, end = 0, len(line)
    while True:
        while at < end and line[at] in b" \t\n\r\v\f":
            at += 1
        if at == end:
            return words
        word = bytearray()
        quote = 0
        while True:
            byte = line[at] if at < end else 0
            if quote:
                if byte == 0:
                    return None
                if byte == quote:
                    if at + 1 < end and line[at + 1] not in b" \t\n\r\v\f":
                        return None
                    at += 1
                    break
                if byte == 0x5C and quote == 0x22 and at + 1 < end:  # backslash in "..."
                    following = line[at + 1]
                    if (
                        following == ord("x")
                        and set(line[at + 2 : at + 4]) <= _HEX
                        and (at + 3 < end)
                    ):
                        word.append(int(line[at + 2 : at + 4], 16))
                        at += 4
                        continue
                    word.append(_ESCAPES.get(following, following))
                    at += 2
                    continue
                if byte == 0x5C and quote == 0x27 and line[at + 1 : at + 2] == b"'":
                    word.append(0x27)
                    at += 2
                    continue
                word.append(byte)
            elif byte in b" \t\n\r\0" or at == end:
                break
            elif byte in b"\"'":
                quote = byte
            else:
                word.append(byte)
            at += 1
        words.append(bytes(word))


def split_shebang(body: bytes) -> tuple[list[bytes] | None, int] | None:
    """The words of ``body``'s first line (:func:`split_args`) and its length when it starts
    with ``#!``, else None; :class:`ShebangError` when that line has no end (the script
    would be the shebang alone)."""
    if not body.startswith(b"#!"):
        return None
    end = body.find(b"\n")
    if end < 0:
        raise ShebangError("Invalid script shebang")
    return split_args(body[:end]), end


def parse_shebang(body: bytes) -> tuple[frozenset[str] | None, int]:
    """The flags of an EVAL script and the length of its shebang line (the script compiles
    from there, keeping the line's end so that line numbers stay the user's), or ``(None,
    0)`` for a script without one; :class:`ShebangError` with Redis's words for a bad one."""
    found = split_shebang(body)
    if found is None:
        return None, 0
    words, length = found
    if not words:
        raise ShebangError("Invalid engine in script shebang")
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
