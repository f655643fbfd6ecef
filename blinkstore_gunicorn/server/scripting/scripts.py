"""The scripting layer: the script cache, ``redis.call`` to the commands' handlers, error replies.

A script's ``redis.call`` runs the command's own handler (the one ``Dispatcher.execute`` calls)
for a client of its own (RESP2, authenticated), so a script sees exactly what a client sees,
and every command added to the store works from scripts with no change here. What the
dispatcher would look up on each call (the handler, its arity) is worked out once per command
name, beside what scripts may not do. Commands that may park in the store, or that change a
connection, are refused as Redis refuses them.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from blinkstore_gunicorn.engine import WRONGTYPE, WrongType
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.resp import ReplyReader
from blinkstore_gunicorn.server.scripting import resp3
from blinkstore_gunicorn.server.scripting.bridge import attach_bridge
from blinkstore_gunicorn.server.scripting.busy import DEFAULT_BUSY_THRESHOLD, Run, Worker
from blinkstore_gunicorn.server.scripting.convert import argument, to_lua
from blinkstore_gunicorn.server.scripting.functions import LOAD_TIMEOUT, Functions
from blinkstore_gunicorn.server.scripting.runtime import DEFAULT_MAX_MEMORY, LuaState
from blinkstore_gunicorn.server.scripting.shebang import ShebangError, parse_shebang

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.commands.registry import CommandSpec, Handler
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["BUSY", "BUSY_FUNCTION", "MAX_EVAL_SCRIPTS", "Scripting", "sha1hex"]

#: Scripts sent only by EVAL that the cache keeps (Redis 7.4's number).
MAX_EVAL_SCRIPTS: Final = 500

BUSY: Final = resp.error(
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
)
#: The BUSY reply while a function (FCALL) is busy.
BUSY_FUNCTION: Final = resp.error(
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
)
_NOTBUSY: Final = resp.error("NOTBUSY No scripts in execution right now.")
_UNKILLABLE: Final = resp.error(
    "UNKILLABLE Sorry the script already executed write commands against the dataset. You "
    "can either wait the script termination or kill the server in a hard way using the "
    "SHUTDOWN NOSAVE command."
)
_OK: Final = resp.simple("OK")

#: Commands a script may not call besides those flagged ``noscript`` (Redis 7.0 flags its
#: blocking pops so): they park the caller in the store (a script cannot wait) or change the
#: connection itself. XREAD is allowed, and refuses BLOCK itself (``Client.in_script``).
_NOT_IN_SCRIPTS: Final = frozenset({"bs.fetch", "blink.lock", "auth", "hello", "client", "quit"})
_REFUSING_FLAGS: Final = frozenset({"noscript"})
#: What a busy store still answers (Redis: SCRIPT KILL, SHUTDOWN NOSAVE, the commands that
#: let a new connection get that far, and those of transactions but EXEC, which Redis flags
#: ``allow_busy``: a pipelined MULTI is not refused while the commands after it are).
_ALLOWED_WHILE_BUSY: Final = frozenset(
    {b"auth", b"hello", b"quit", b"multi", b"discard", b"watch", b"unwatch"}
)
#: The subcommands Redis flags ``allow_busy``, of SCRIPT and FUNCTION.
_SUBCOMMANDS_WHILE_BUSY: Final = frozenset(
    {(b"script", b"kill"), (b"function", b"kill"), (b"function", b"stats")}
)

#: What ``_call`` answers beside a status or error message (the sandbox's ``redis.call``
#: reads it; a plain value comes alone).
_STATUS: Final = 1
_ERROR: Final = 2

_ERR_NO_ARGS: Final = b"ERR Please specify at least one argument for this redis lib call"
_ERR_ARG_TYPE: Final = b"ERR Lua redis lib command arguments must be strings or integers"
# The refusals of a command, as the error replies execute() answers.
_ERR_UNKNOWN: Final = resp.error("ERR Unknown Redis command called from script")
_ERR_ARITY: Final = resp.error("ERR Wrong number of args calling Redis command from script")
_ERR_NOT_ALLOWED: Final = resp.error("ERR This Redis command is not allowed from script")
_ERR_READ_ONLY: Final = resp.error("ERR Write commands are not allowed from read-only scripts.")
_ERR_WRONGTYPE: Final = resp.error(WRONGTYPE)

#: What :meth:`Scripting._bind` works out for a command name: the error refusing it, or its
#: handler, arity and whether it writes.
_Bound: TypeAlias = "bytes | tuple[Handler, int, bool]"


def sha1hex(source: bytes) -> bytes:
    """The name a script is cached under (lower-case hex SHA1 of its text)."""
    return hashlib.sha1(source).hexdigest().encode()


class Scripting:
    """Lua scripts for one dispatcher: one sandboxed state, its cache, the running script."""

    __slots__ = (
        "_bound",
        "_by_eval_only",
        "_client",
        "_commands",
        "_dispatcher",
        "_function",
        "_load_deadline",
        "_read_only",
        "_run",
        "_worker",
        "busy_threshold",
        "cache",
        "flags",
        "functions",
        "lua",
        "native",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        commands: Mapping[str, CommandSpec],
        version: str,
        *,
        max_memory: int = DEFAULT_MAX_MEMORY,
        busy_threshold: float = DEFAULT_BUSY_THRESHOLD,
    ) -> None:
        self._dispatcher = dispatcher
        self._commands = commands
        self.lua = LuaState(
            self._call,
            self._hook,
            max_memory=max_memory,
            version=version.encode(),
            setresp=self._setresp,
        )
        #: Compiled scripts by SHA1 (lower-case hex); bounded by the Lua state's memory.
        self.cache: dict[bytes, Any] = {}
        #: The shebang flags of the cached scripts that have one (``shebang.py``).
        self.flags: dict[bytes, frozenset[str]] = {}
        self._by_eval_only: OrderedDict[bytes, None] = OrderedDict()
        self._client = dispatcher.new_client()
        self._client.in_script = True
        dispatcher.authenticate(self._client)
        self._run: Run | None = None
        self._worker = Worker()
        self._read_only = False
        #: :meth:`_bind` of the commands by their lower- and upper-case names.
        self._bound: dict[bytes, _Bound] = {}
        #: Seconds a script runs before other clients get BUSY.
        self.busy_threshold = busy_threshold
        #: The running function's name and its caller's command (None: EVAL, or nothing).
        self._function: tuple[bytes, list[bytes]] | None = None
        self._load_deadline: float | None = None
        #: The libraries of FUNCTION LOAD.
        self.functions = Functions(self)
        #: Whether ``redis.call`` and the reply's encoding are the C bridge's (``bridge.py``).
        self.native = attach_bridge(self, dispatcher, self._client, commands)

    # -- the cache -----------------------------------------------------------------------

    def load(self, source: bytes, *, by_eval: bool = False) -> tuple[bytes, bytes | None]:
        """Compile and cache ``source``: its SHA1, and an error reply when it does not compile.

        Scripts only ever sent by EVAL (``by_eval``) are forgotten oldest first past
        :data:`MAX_EVAL_SCRIPTS`, as Redis 7.4 does, so that a client generating scripts
        cannot fill the Lua state; ``SCRIPT LOAD`` keeps a script until ``SCRIPT FLUSH``.
        """
        sha = sha1hex(source)
        by_eval_only = self._by_eval_only
        if sha in self.cache:
            if not by_eval:
                by_eval_only.pop(sha, None)
            elif sha in by_eval_only:
                by_eval_only.move_to_end(sha)
            return sha, None
        try:
            flags, skip = parse_shebang(source)
        except ShebangError as error:
            return sha, resp.error(f"ERR {error}")
        try:
            fn, err = self.lua.compile(source[skip:] if skip else source)
        except self.lua.memory_error:
            self.lua.collect()
            fn, err = None, b"not enough memory"
        if fn is None:
            text = (err or b"").decode("utf-8", "replace")
            return sha, resp.error(f"ERR Error compiling script (new function): {text}")
        self.cache[sha] = fn
        if flags is not None:
            self.flags[sha] = flags
        if by_eval:
            by_eval_only[sha] = None
            if len(by_eval_only) > MAX_EVAL_SCRIPTS:
                oldest = by_eval_only.popitem(last=False)[0]
                del self.cache[oldest]
                self.flags.pop(oldest, None)
        return sha, None

    def flush(self) -> None:
        """Forget every cached script (SCRIPT FLUSH)."""
        self.cache.clear()
        self.flags.clear()
        self._by_eval_only.clear()
        self.lua.collect()

    # -- running -------------------------------------------------------------------------

    def run(
        self,
        c: Client,
        sha: bytes,
        keys: list[bytes],
        argv: list[bytes],
        read_only: bool,
        *,
        function: tuple[Any, list[bytes]] | None = None,
    ) -> bytes | None:
        """Run the cached script ``sha`` for ``c``: its reply, or None when it went busy
        (its reply then goes to ``c.deliver``). For FCALL, ``sha`` is the function's name and
        ``function`` what runs it (``Function.run``) and the caller's command."""
        if self._client.resp3:
            self._client.use_resp3(False)  # each script starts in RESP2, as in Redis
        fn = self.cache[sha] if function is None else function[0]
        job = (self._body, (fn, sha, keys, argv, c.nil))
        run = Run(self._worker, job, self.busy_threshold, may_suspend=not c.in_exec)
        self._run, self._read_only = run, read_only
        self._function = None if function is None else (sha, function[1])
        reply = run.step()
        if reply is not None:
            self._run = self._function = None
            return reply
        d = self._dispatcher
        d.busy = self._while_busy

        def done(reply: bytes) -> None:
            self._run = self._function = None
            d.busy = None
            c.deliver(reply)

        run.resume_later(done)
        return None

    def _body(self, fn: Any, sha: bytes, keys: list[bytes], argv: list[bytes], nil: bytes) -> bytes:
        lua = self.lua
        try:
            ok, result = lua.run(fn, nil, len(keys), *keys, *argv)
        except lua.memory_error:
            ok, result = False, b"not enough memory"
        if ok:
            return result  # type: ignore[no-any-return]
        if result.__class__ is bytes:
            # Out of memory (Lua runs no error handler for it): free what the script left.
            lua.collect()
            return resp.error(
                f"ERR Error running script: {result.decode('utf-8', 'replace')} (the Lua "
                f"state is limited to {lua.max_memory} bytes) script: {sha.decode()}"
            )
        return _error_reply(lua, result, sha)

    def kill(self, function: bool = False) -> bytes:
        """SCRIPT KILL (FUNCTION KILL with ``function``): stop the busy script unless it wrote
        or is of the other kind."""
        run = self._run
        if run is None or not run.busy:
            return _NOTBUSY
        if run.wrote:
            return _UNKILLABLE
        if function != (self._function is not None):
            return self._busy_reply()
        run.killed = True
        return _OK

    def _busy_reply(self) -> bytes:
        return BUSY if self._function is None else BUSY_FUNCTION

    def running_function(self) -> tuple[bytes, list[bytes], int] | bytes | None:
        """For FUNCTION STATS: the busy function's name, its caller's command and how long it
        has run (ms); the BUSY reply when a script of EVAL is busy; None when idle."""
        run = self._run
        if run is None or not run.busy:
            return None
        if self._function is None:
            return BUSY
        name, command = self._function
        return name, command, int((time.monotonic() - run.started) * 1000)

    def run_library(self, chunk: Any) -> str | None:
        """Run a library's code for FUNCTION LOAD, stopped past ``LOAD_TIMEOUT``: None, or the
        message of the error it raised."""
        lua = self.lua
        self._load_deadline = time.monotonic() + LOAD_TIMEOUT
        try:
            ok, result = lua.run(chunk, resp.NIL, 0)
        except lua.memory_error:
            ok, result = False, b"not enough memory"
        finally:
            self._load_deadline = None
        if ok:
            return None
        if result.__class__ is bytes:
            lua.collect()
            return result.decode("utf-8", "replace")
        message = result[b"err"]
        return message.decode("utf-8", "replace") if message.__class__ is bytes else str(message)

    def _setresp(self, version: int) -> None:
        """``redis.setresp``: the protocol the commands the script calls answer in."""
        self._client.use_resp3(version == 3)

    def _hook(self) -> str | None:
        run = self._run
        if run is not None:
            return run.hook()
        deadline = self._load_deadline
        if deadline is not None and time.monotonic() > deadline:
            return "ERR FUNCTION LOAD timeout"
        return None

    def _while_busy(self, d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        """The dispatcher's gate while a script is busy (``Dispatcher.busy``). A refused
        command fails the caller's transaction, as in Redis; a refused EXEC runs, to end the
        transaction with an EXECABORT naming BUSY rather than leave the connection queueing."""
        name = args[0].lower()
        if not (
            c is self._client
            or name in _ALLOWED_WHILE_BUSY
            or (len(args) == 2 and (name, args[1].lower()) in _SUBCOMMANDS_WHILE_BUSY)
        ):
            busy = self._busy_reply()
            transaction = c.transaction
            if transaction is None:
                return busy
            is_exec = name == b"exec"
            transaction.fail(busy if is_exec else None)
            if not is_exec:
                return busy
        d.busy = None
        try:
            return d.execute(c, args)
        finally:
            d.busy = self._while_busy

    def _call(self, *raw: Any) -> Any:
        """``redis.call`` and ``redis.pcall``: the reply as a Lua value, or for a status or an
        error reply ``(message, kind)``, kind :data:`_STATUS` or :data:`_ERROR` (the sandbox
        makes the ``{ok=}``/``{err=}`` tables: building them in Lua costs less than from
        Python). A value is never a tuple, so lupa hands Lua one value for it and two for a
        tuple, and no tuple is made for the common case.

        The command's handler is called directly, with what the dispatcher would check done
        here once per spelling (:meth:`_bind`): a script's client is authenticated, never
        subscribed nor in MULTI, and passes the busy gate, so the dispatcher's lookups would
        only repeat these checks."""
        if not raw:
            return _ERR_NO_ARGS, _ERROR
        args = list(raw)
        for value in raw:
            if value.__class__ is not bytes:
                # Numbers become text as Lua prints them; anything else is refused.
                args = [argument(value) for value in raw]
                if None in args:
                    return _ERR_ARG_TYPE, _ERROR
                break
        reply = self.execute(args)
        # One reply of a plain kind is read here; arrays go through the reply parser.
        kind = reply[0]
        if kind == 0x24:  # '$'
            return False if reply[1] == 0x2D else reply[reply.index(b"\r\n") + 2 : -2]
        if kind == 0x3A:  # ':'
            return int(reply[1:-2])
        if kind == 0x2B:  # '+'
            return reply[1:-2], _STATUS
        if kind == 0x2D:  # '-'
            return reply[1:-2], _ERROR
        if self._client.resp3:  # after redis.setresp(3)
            return resp3.to_lua(self.lua.lua, reply)
        reader = ReplyReader()
        reader.feed(reply)
        return to_lua(self.lua.lua, reader.next_reply())  # type: ignore[arg-type]

    def execute(self, args: list[bytes]) -> bytes:
        """The RESP2 reply of a script's ``redis.call(*args)``, a refusal as an error reply:
        what ``_call`` and the C bridge (``bridge.py``) both run."""
        bound = self._bound.get(args[0])
        if bound is None:
            bound = self._bind(args[0])
        if isinstance(bound, bytes):
            return bound
        handler, arity, writes = bound
        count = len(args)
        if count != arity and (arity > 0 or count < -arity):
            return _ERR_ARITY
        if writes:
            if self._read_only:
                return _ERR_READ_ONLY
            run = self._run
            if run is not None:
                run.wrote = True
        try:
            return handler(self._dispatcher, self._client, args)
        except WrongType:
            return _ERR_WRONGTYPE

    def _bind(self, name: bytes) -> _Bound:
        """What a script's ``redis.call(name, ...)`` runs: the error refusing the command
        whatever its arguments, or its handler, arity and whether it writes. Kept for the
        lower- and upper-case spellings (other spellings and names that are not commands
        are worked out on each call, so that the table stays bounded)."""
        spec = self._commands.get(name.lower().decode("utf-8", "replace"))
        if spec is None:
            return _ERR_UNKNOWN
        bound: _Bound
        if spec.name in _NOT_IN_SCRIPTS or _REFUSING_FLAGS.intersection(spec.flags):
            bound = _ERR_NOT_ALLOWED
        else:
            bound = (spec.handler, spec.arity, "write" in spec.flags)
        if name.islower() or name.isupper():
            self._bound[name] = bound
        return bound


def _error_reply(lua: LuaState, error: Any, sha: bytes) -> bytes:
    """Redis's reply for a script that raised: ``<message> script: <sha>, on @user_script:<n>.``
    (a function's: ``script: <name>, on @user_function:<n>.``)"""
    if lua.lua_type(error) == "table":
        message, line, source = error[b"err"], error[b"line"], error[b"source"]
    else:
        message, line, source = b"ERR " + str(error).encode(), None, None
    text = message.decode("utf-8", "replace") if message.__class__ is bytes else str(message)
    where = f", on {source.decode()}:{line}." if line is not None and source is not None else ""
    return resp.error(f"{text} script: {sha.decode()}{where}")
