"""Lua scripts (Redis's eval.c and script_lua.c): EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT;
and TIME, which scripts use for the server's clock.

The work is done by the scripting layer (``server/scripting/``), made on the first use
(``scriptlayer``, which FUNCTION and FCALL share).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, Handler, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ONE,
    ZERO,
    help_reply,
    parse_int,
    unknown_subcommand,
    wrong_args,
)
from blinkstore_gunicorn.server.commands.scriptlayer import (
    NO_SCRIPTING,
    run_script,
    scripting_layer,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["NO_SCRIPTING"]

_NOSCRIPT: Final = resp.error("NOSCRIPT No matching script. Please use EVAL.")
_ERR_NEGATIVE: Final = resp.error("ERR Number of keys can't be negative")
_ERR_TOO_MANY: Final = resp.error("ERR Number of keys can't be greater than number of args")
_OK: Final = resp.simple("OK")
#: The numkeys scripts send, read without the regular expression of ``parse_int``.
_SMALL_NUMKEYS: Final = {b"%d" % number: number for number in range(16)}
_SCRIPT_HELP: Final = (
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
)


def _evaluate(d: Dispatcher, c: Client, args: list[bytes], by_sha: bool, read_only: bool) -> bytes:
    numkeys = _SMALL_NUMKEYS.get(args[2])
    if numkeys is None:
        numkeys = parse_int(args[2])
        if numkeys is None:
            return ERR_NOT_INT
    if numkeys < 0:
        return _ERR_NEGATIVE
    if numkeys > len(args) - 3:
        return _ERR_TOO_MANY
    scripting = d.scripting or scripting_layer(d)
    if scripting is None:
        return NO_SCRIPTING
    if by_sha:
        sha = args[1].lower()
        if sha not in scripting.cache:
            return _NOSCRIPT
    else:
        sha, error = scripting.load(args[1], by_eval=True)
        if error is not None:
            return error
    flags = scripting.flags.get(sha)
    if flags is not None:
        return run_script(scripting, c, sha, args, numkeys, read_only=read_only, flags=flags)
    # A script without a shebang (the common case) starts without run_script's flag checks.
    reply = scripting.run(c, sha, args[3 : 3 + numkeys], args[3 + numkeys :], read_only)
    return DEFERRED if reply is None else reply


def _eval_handler(by_sha: bool, read_only: bool) -> Handler:
    """The handler of ``EVAL`` (``EVALSHA`` with ``by_sha``; ``*_RO`` with ``read_only``):
    ``EVAL script|sha1 numkeys [key ...] [arg ...]``."""

    def handler(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        return _evaluate(d, c, args, by_sha, read_only)

    return handler


for _name, _by_sha, _read_only in (
    ("eval", False, False),
    ("evalsha", True, False),
    ("eval_ro", False, True),
    ("evalsha_ro", True, True),
):
    command(
        _name,
        -3,
        "noscript stale skip_monitor no_mandatory_keys movablekeys "
        + ("readonly" if _read_only else "may_replicate"),
    )(_eval_handler(_by_sha, _read_only))


@command("script", -2, "noscript")
def cmd_script(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP``."""
    sub = args[1].lower()
    count = len(args)
    if sub == b"help":
        return help_reply(_SCRIPT_HELP) if count == 2 else wrong_args("script|help")
    if sub not in (b"load", b"exists", b"flush", b"kill"):
        return unknown_subcommand(args)
    if (
        (sub == b"load" and count != 3)
        or (sub == b"exists" and count < 3)
        or (sub == b"flush" and count > 3)
        or (sub == b"kill" and count != 2)
    ):
        return wrong_args("script|" + sub.decode())
    if sub == b"exists":
        cache = d.scripting.cache if d.scripting is not None else {}
        return resp.array(ONE if sha.lower() in cache else ZERO for sha in args[2:])
    if sub == b"flush":
        if count == 3 and args[2].upper() not in (b"ASYNC", b"SYNC"):
            return resp.error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
        if d.scripting is not None:
            d.scripting.flush()
        return _OK
    scripting = scripting_layer(d)
    if scripting is None:
        return NO_SCRIPTING
    if sub == b"kill":
        return scripting.kill()
    sha, error = scripting.load(args[2])
    return error if error is not None else resp.bulk(sha)


@command("time", 1, "random loading stale fast")
def cmd_time(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TIME``: the server's clock as seconds and microseconds."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return resp.array([resp.bulk(b"%d" % seconds), resp.bulk(b"%d" % micros)])
