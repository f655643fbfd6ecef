"""One Lua 5.1 state (through lupa, the interpreter Redis embeds), sandboxed and bounded.

lupa is imported when the first state is made (the first script): a store without it serves
every other command, and the scripting commands answer an error saying what to install.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import Any, Final

from blinkstore_gunicorn.server.scripting.convert import ERR_DEPTH, MAX_DEPTH
from blinkstore_gunicorn.server.scripting.libs import make_libs
from blinkstore_gunicorn.server.scripting.resp3 import TYPED_REPLY
from blinkstore_gunicorn.server.scripting.sandbox import BOOTSTRAP, HOOK_EVERY

__all__ = ["DEFAULT_MAX_MEMORY", "LuaState"]

#: Bound of the Lua state's memory (scripts, their data, the compiled-script cache).
DEFAULT_MAX_MEMORY: Final = 64 * 1024 * 1024

_log = logging.getLogger("blinkstore_gunicorn.scripts")
#: redis.log levels (LOG_DEBUG..LOG_WARNING) as logging levels.
_LEVELS: Final = (logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING)


def _sha1hex(text: bytes) -> bytes:
    return hashlib.sha1(text).hexdigest().encode()


def _log_line(level: int, text: bytes) -> None:
    _log.log(_LEVELS[level], "%s", text.decode("utf-8", "replace"))


class LuaState:
    """The sandboxed state: compile a script, run it, know its memory.

    ``call(*args)`` serves ``redis.call``/``redis.pcall`` and returns ``(value, kind)``;
    ``hook()`` runs every :data:`HOOK_EVERY` instructions and returns the error that stops the
    running script, or None; ``setresp(version)`` serves ``redis.setresp``.
    """

    __slots__ = (
        "_adopt",
        "_attach",
        "_collect",
        "_compile",
        "lua",
        "lua_type",
        "memory_error",
        "run",
    )

    def __init__(
        self,
        call: Callable[..., Any],
        hook: Callable[[], str | None],
        *,
        max_memory: int = DEFAULT_MAX_MEMORY,
        version: bytes,
        setresp: Callable[[int], None],
    ) -> None:
        # ImportError without lupa (the caller answers what to install).
        from lupa import lua51

        self.lua = lua51.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            max_memory=max_memory,
        )
        self.lua_type: Callable[[Any], str | None] = lua51.lua_type
        self.memory_error: type[Exception] = lua51.LuaMemoryError
        extra = make_libs(self.lua, self.lua_type)
        modules = self.lua.table_from(
            {name: self.lua.table_from(lib) for name, lib in extra.items()}
        )
        major, minor, patch = (int(part) for part in version.split(b"."))
        libs = self.lua.table_from(
            {
                b"modules": modules,
                b"version": version,
                b"version_num": (major << 16) | (minor << 8) | patch,
            }
        )
        # Compiled now: after a script used all the memory, compiling this would fail.
        self._collect = self.lua.eval(b"function() collectgarbage('collect') end")
        #: ``run(fn, nil, numkeys, *keys, *argv)``: call the compiled script ``fn`` with
        #: ``KEYS``/``ARGV`` set: ``(True, reply bytes)`` (``nil`` is the client's null) or
        #: ``(False, error)``. The Lua function itself, not a method around it: one Python
        #: call less per script.
        self.run: Callable[..., tuple[bool, Any]]
        self._compile, self.run, self._attach, self._adopt = self.lua.execute(
            BOOTSTRAP.encode(),
            call,
            hook,
            _log_line,
            _sha1hex,
            setresp,
            libs,
            HOOK_EVERY,
            MAX_DEPTH,
            ERR_DEPTH,
            self.lua.execute(TYPED_REPLY.encode()),
        )

    def attach(self, bridge: Any, resp3: Callable[[bytes], Any]) -> None:
        """Serve ``redis.call``/``redis.pcall`` and encode replies with ``bridge``'s C
        functions (``scripting/bridge.py``), which hand ``resp3`` the replies after
        ``redis.setresp(3)``; ValueError when the state cannot be reached."""
        token = os.urandom(16)
        # Held until installed: the coroutine whose lua_State the C side uses.
        co, printed = self._attach(token, resp3)
        bridge.install(int(printed.rpartition(b" ")[2], 16), token, MAX_DEPTH)
        del co
        self._adopt()

    def compile(self, source: bytes) -> tuple[Any, bytes | None]:
        """The script as a function, or None and Lua's compile error."""
        fn, err = self._compile(source)
        return fn, err

    def collect(self) -> None:
        """A full garbage collection (after a script ran out of memory, or a flush)."""
        self._collect()

    @property
    def max_memory(self) -> int:
        """The bound of :attr:`memory_used`."""
        return int(self.lua.get_max_memory())

    @property
    def memory_used(self) -> int:
        """Bytes the Lua state holds."""
        return int(self.lua.get_memory_used())
