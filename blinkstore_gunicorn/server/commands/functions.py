"""Redis 7.0's functions (functions.c): FUNCTION LOAD|DELETE|FLUSH|LIST|DUMP|RESTORE|STATS|KILL
|HELP, FCALL and FCALL_RO.

The libraries are the scripting layer's (``server/scripting/functions.py``); a function runs
as a script does (atomic, BUSY past the threshold, FUNCTION KILL), with its ``flags`` as a
shebang's. Arity, replies and error texts are Redis's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.engine.pattern import match_pattern
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    parse_int,
    subcommand_syntax,
    unknown_subcommand,
    wrong_args,
)
from blinkstore_gunicorn.server.commands.scriptlayer import (
    NO_SCRIPTING,
    run_script,
    scripting_layer,
)
from blinkstore_gunicorn.server.scripting.functions import FunctionError
from blinkstore_gunicorn.server.scripting.shebang import FLAGS
from blinkstore_gunicorn.storage.dump import ChecksumError
from blinkstore_gunicorn.storage.encodings import FormatError

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
    from blinkstore_gunicorn.server.scripting.functions import Library

__all__: list[str] = []

_OK: Final = resp.simple("OK")
_ERR_NOT_FOUND: Final = resp.error("ERR Function not found")
_ERR_NUMKEYS: Final = resp.error("ERR Bad number of keys provided")
_ERR_TOO_MANY: Final = resp.error("ERR Number of keys can't be greater than number of args")
_ERR_NEGATIVE: Final = resp.error("ERR Number of keys can't be negative")
_ERR_PAYLOAD: Final = resp.error("ERR DUMP payload version or checksum are wrong")
_ERR_POLICY: Final = resp.error(
    "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
)
#: Each subcommand's arity (Redis's commands/function-*.json).
_ARITY: Final = {
    b"load": -3,
    b"delete": 3,
    b"flush": -2,
    b"list": -2,
    b"dump": 2,
    b"restore": -3,
    b"stats": 2,
    b"kill": 2,
    b"help": 2,
}
_HELP: Final = (
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
)


def _map(c: Client, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A map reply of encoded values (a flat array in RESP2)."""
    body = b"".join(resp.bulk(key) + value for key, value in pairs)
    return b"%b%d\r\n%b" % (b"%" if c.resp3 else b"*", len(pairs) * (1 if c.resp3 else 2), body)


def _library(c: Client, library: Library, with_code: bool) -> bytes:
    """One library of FUNCTION LIST."""
    functions = []
    for function in library.functions.values():
        flags = [flag for flag in FLAGS if flag in function.flags]
        flag_set = b"%b%d\r\n" % (b"~" if c.resp3 else b"*", len(flags)) + b"".join(
            resp.simple(flag) for flag in flags
        )
        description = c.nil if function.description is None else resp.bulk(function.description)
        functions.append(
            _map(
                c,
                [
                    (b"name", resp.bulk(function.name)),
                    (b"description", description),
                    (b"flags", flag_set),
                ],
            )
        )
    pairs = [
        (b"library_name", resp.bulk(library.name)),
        (b"engine", resp.bulk(b"LUA")),
        (b"functions", resp.array(functions)),
    ]
    if with_code:
        pairs.append((b"library_code", resp.bulk(library.code)))
    return _map(c, pairs)


def _list(c: Client, libraries: list[Library], args: list[bytes]) -> bytes:
    """``FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]``."""
    with_code, pattern, at = False, None, 2
    while at < len(args):
        word = args[at].lower()
        if not with_code and word == b"withcode":
            with_code = True
        elif pattern is None and word == b"libraryname":
            if at == len(args) - 1:
                return resp.error("ERR library name argument was not given")
            at += 1
            pattern = args[at]
        else:
            return resp.error(f"ERR Unknown argument {args[at].decode('utf-8', 'replace')}")
        at += 1
    return resp.array(
        _library(c, library, with_code)
        for library in libraries
        if pattern is None or match_pattern(pattern, library.name)
    )


def _stats(d: Dispatcher, c: Client) -> bytes:
    """``FUNCTION STATS``: the busy function, and the count of libraries and functions."""
    scripting = d.scripting
    running = None if scripting is None else scripting.running_function()
    if isinstance(running, bytes):
        return running  # an EVAL script is busy: Redis answers its BUSY
    libraries = 0 if scripting is None else len(scripting.functions.libraries)
    functions = 0 if scripting is None else len(scripting.functions.by_name)
    if running is None:
        script = c.nil
    else:
        name, command, duration = running
        script = _map(
            c,
            [
                (b"name", resp.bulk(name)),
                (b"command", resp.bulk_list(command)),
                (b"duration_ms", resp.integer(duration)),
            ],
        )
    counts = _map(
        c,
        [
            (b"libraries_count", resp.integer(libraries)),
            (b"functions_count", resp.integer(functions)),
        ],
    )
    return _map(c, [(b"running_script", script), (b"engines", _map(c, [(b"LUA", counts)]))])


@command("function", -2, "noscript write")
def cmd_function(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``FUNCTION LOAD|DELETE|FLUSH|LIST|DUMP|RESTORE|STATS|KILL|HELP``."""
    sub = args[1].lower()
    arity = _ARITY.get(sub)
    if arity is None:
        return unknown_subcommand(args)
    if len(args) != arity and (arity > 0 or len(args) < -arity):
        return wrong_args("function|" + sub.decode())
    if sub == b"help":
        return resp.array(resp.simple(line) for line in _HELP)
    if sub == b"stats":
        return _stats(d, c)
    scripting = scripting_layer(d)
    if scripting is None:
        return NO_SCRIPTING
    functions = scripting.functions
    try:
        if sub == b"load":
            replace = False
            for option in args[2:-1]:
                if option.lower() != b"replace":
                    return resp.error(
                        f"ERR Unknown option given: {option.decode('utf-8', 'replace')}"
                    )
                replace = True
            name = functions.load(args[-1], replace)
            d.engine.watched.changes += 1  # snapshots hold the libraries: one is due
            return resp.bulk(name)
        if sub == b"delete":
            functions.delete(args[2])
        elif sub == b"flush":
            if len(args) > 3:
                return subcommand_syntax(args)
            if len(args) == 3 and args[2].upper() not in (b"ASYNC", b"SYNC"):
                return resp.error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
            functions.flush()
        elif sub == b"list":
            return _list(c, list(functions.libraries.values()), args)
        elif sub == b"dump":
            return resp.bulk(functions.dump())
        elif sub == b"kill":
            return scripting.kill(function=True)
        else:  # restore
            if len(args) > 4:
                return subcommand_syntax(args)
            policy = args[3].upper() if len(args) == 4 else b"APPEND"
            if policy not in (b"APPEND", b"REPLACE", b"FLUSH"):
                return _ERR_POLICY
            functions.restore(args[2], policy)
    except FunctionError as error:
        return resp.error(f"ERR {error}")
    except ChecksumError:
        return _ERR_PAYLOAD
    except FormatError as error:
        return resp.error(f"ERR {error}")
    d.engine.watched.changes += 1  # DELETE, FLUSH or RESTORE changed the libraries
    return _OK


def _fcall(d: Dispatcher, c: Client, args: list[bytes], read_only: bool) -> bytes:
    """``FCALL[_RO] function numkeys [key ...] [arg ...]``."""
    scripting = scripting_layer(d)
    if scripting is None:
        return NO_SCRIPTING
    function = scripting.functions.by_name.get(args[1].lower())
    if function is None:
        return _ERR_NOT_FOUND
    numkeys = parse_int(args[2])
    if numkeys is None:
        return _ERR_NUMKEYS
    if numkeys > len(args) - 3:
        return _ERR_TOO_MANY
    if numkeys < 0:
        return _ERR_NEGATIVE
    return run_script(
        scripting,
        c,
        function.name,
        args,
        numkeys,
        read_only=read_only,
        flags=function.flags,
        function=function.run,
    )


@command("fcall", -3, "noscript stale skip_monitor no_mandatory_keys movablekeys may_replicate")
def cmd_fcall(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``FCALL function numkeys [key ...] [arg ...]``."""
    return _fcall(d, c, args, False)


@command("fcall_ro", -3, "noscript stale skip_monitor no_mandatory_keys movablekeys readonly")
def cmd_fcall_ro(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``FCALL_RO function numkeys [key ...] [arg ...]``."""
    return _fcall(d, c, args, True)
