"""Lua scripting: a layer of its own between dispatch and the engine.

================  ==============================================================================
``scripts``       :class:`~.scripts.Scripting`: the script cache, ``redis.call`` to the commands'
                  handlers, error replies as Redis words them
``runtime``       :class:`~.runtime.LuaState`: one lupa Lua 5.1 state, sandboxed, memory-bounded
``sandbox``       the Lua code that builds the sandbox and Redis's ``redis`` library
``convert``       the RESP <-> Lua conversion rules
``libs``          ``cjson`` and ``bit``
``packing``       ``struct`` and ``cmsgpack``
``busy``          the time limit: BUSY for other clients, SCRIPT KILL
``shebang``       ``#!lua flags=...``: parsing, and what the flags change when a script runs
``resp3``         ``redis.setresp(3)``: RESP3 replies to Lua, and Lua's RESP3 tables to replies
``functions``     FUNCTION LOAD's libraries and their functions (FCALL)
``function_lua``  the libraries' loader and load-time sandbox, in Lua
================  ==============================================================================

The commands (EVAL, EVALSHA, SCRIPT...) are in ``server/commands/scripting.py``, FUNCTION and
FCALL in ``server/commands/functions.py``; they import ``scripts`` (and with it lupa and
greenlet) only when the first script arrives, so a store without them (the ``scripting`` extra)
starts and serves everything else.
"""
