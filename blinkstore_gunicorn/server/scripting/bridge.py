"""``redis.call``, ``redis.pcall`` and the script's reply encoding in C, where they are built.

The optional ``_luacall.c`` makes them Lua C functions of the sandbox's state (how it reaches
the state and lupa's Lua API is in that file). A ``redis.call`` then costs no lupa crossing:
the arguments go to Python as one list, and the plain commands ``server/_fastcmd.c`` answers
(GET, SET, INCR...) are answered there, the others by :meth:`Scripting.execute
<.scripts.Scripting.execute>`, which stays the reference for every check and error text. The
sandbox's Lua functions stay the pure path, used without the extension, with
``BLINKSTORE_NATIVE=0`` (the switch of every C helper), or when installing fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

from blinkstore_gunicorn.server.scripting import resp3
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.commands.registry import CommandSpec
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
    from blinkstore_gunicorn.server.scripting.scripts import Scripting

__all__ = ["attach_bridge"]


def attach_bridge(
    scripting: Scripting,
    dispatcher: Dispatcher,
    client: Client,
    commands: Mapping[str, CommandSpec],
) -> bool:
    """Give ``scripting``'s Lua state the C ``redis.call``/``pcall`` and encoder, calling
    commands for ``client``: whether it now has them (False: the sandbox's Lua functions
    serve, the same way)."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return False
    try:
        from lupa import lua51

        from blinkstore_gunicorn.server.scripting import _luacall

        _luacall.load(lua51.__file__)
    except ImportError:
        return False

    def python_path(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        return scripting.execute(args)

    executor, names = dispatcher.native_executor(python_path)
    # The C runner's commands, by the spellings a script's call binds (scripts.Scripting._bind).
    fast = {}
    if executor is not python_path:
        for name in names:
            spec = commands[name]
            for spelling in (name.encode(), name.upper().encode()):
                fast[spelling] = (spec.arity, "write" in spec.flags)
    bridge = _luacall.Bridge(
        scripting.execute, executor if fast else None, fast, scripting, dispatcher, client
    )
    try:
        scripting.lua.attach(bridge, partial(resp3.to_lua, scripting.lua.lua))
    except (ValueError, MemoryError):
        return False
    return True
