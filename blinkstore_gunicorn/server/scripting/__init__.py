"""Lua scripting: a layer of its own between dispatch and the engine.

=============  =================================================================================
``scripts``    :class:`~.scripts.Scripting`: the script cache, ``redis.call`` to the commands'
               handlers, error replies as Redis words them
``runtime``    :class:`~.runtime.LuaState`: one lupa Lua 5.1 state, sandboxed, memory-bounded
``sandbox``    the Lua code that builds the sandbox and Redis's ``redis`` library
``convert``    the RESP <-> Lua conversion rules
``libs``       ``cjson`` and ``bit``
``packing``    ``struct`` and ``cmsgpack``
``busy``       the time limit: BUSY for other clients, SCRIPT KILL
=============  =================================================================================

The commands (EVAL, EVALSHA, SCRIPT...) are in ``server/commands/scripting.py``; they import
this package only when the first script arrives, so a store without lupa (the ``scripting``
extra) starts and serves everything else.
"""
