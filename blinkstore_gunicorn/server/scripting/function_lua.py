"""The Lua side of Redis 7.0's functions (function_lua.c): the library loader and its
load-time sandbox.

:data:`LIBRARY_LOADER` runs once per Lua state, with full access, and is handed a compiled
script, whose environment is the sandbox's (the globals of EVAL scripts). Every library's
code runs with one environment of its own. While ``FUNCTION LOAD`` runs a library's code,
its only global is a ``redis`` table with ``register_function``, ``log``, the ``LOG_*``
levels and the version: reading anything else (``math``, ``redis.call``) is Redis's
"nonexistent global variable" error. At run time its globals are the sandbox's, so a
function sees what an EVAL script sees. Both are read-only. ``register_function`` checks its
arguments with Redis's words and records the functions of the library being loaded; called
outside ``FUNCTION LOAD`` (by a function that kept the load-time ``redis`` table) it raises
Redis's error.

It returns ``compile(code)``, ``begin()``, ``finish()`` and ``runner(callback)``:
``compile`` gives the library's code as a function (or nil and Lua's error), ``begin`` opens
the load-time globals and the registration list, which ``finish`` closes and returns as a
table of ``{name, callback, flags table, description}``; ``runner`` makes the function the
sandbox's ``run`` calls for an FCALL: it calls ``callback(KEYS, ARGV)``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LIBRARY_LOADER"]

LIBRARY_LOADER: Final = r"""
local probe, flag_names = ...
local env = getfenv(probe)
local error, type, tostring, select, pairs = error, type, tostring, select, pairs
local setmetatable, setfenv = setmetatable, setfenv
local lower = string.lower

local READONLY = 'Attempt to modify a readonly table'
local function refuse_write() error(READONLY, 2) end

-- A read-only table of which a missing name is an error, as Redis's protected tables.
local function protected(fields)
  return setmetatable({}, {
    __index = function(_, name)
      local value = fields[name]
      if value == nil then
        error("Script attempted to access nonexistent global variable '" .. tostring(name)
          .. "'", 2)
      end
      return value
    end,
    __newindex = refuse_write,
    __metatable = false,
  })
end

-- The registrations of the library being loaded (nil outside FUNCTION LOAD), in order.
local loading

-- Raised from C in Redis: an error table without a script position.
local function fail(message) error({err = 'ERR ' .. message}, 0) end

local known_flags = {}
for _, name in pairs(flag_names) do known_flags[name] = name end

local function read_flags(value)
  local flags, i = {}, 1
  while true do
    local flag = value[i]
    if flag == nil then return flags end
    local kind = type(flag)
    local name = (kind == 'string' or kind == 'number') and known_flags[lower(tostring(flag))]
    if not name then fail('unknown flag given') end
    flags[#flags + 1] = name
    i = i + 1
  end
end

local function named_arguments(args)
  if type(args) ~= 'table' then
    fail('calling redis.register_function with a single argument is only applicable to Lua ' ..
      'table (representing named arguments).')
  end
  local name, callback, flags, description
  for key, value in pairs(args) do
    if type(key) ~= 'string' and type(key) ~= 'number' then
      fail('named argument key given to redis.register_function is not a string')
    end
    key = lower(tostring(key))
    local kind = type(value)
    if key == 'function_name' then
      if kind ~= 'string' and kind ~= 'number' then
        fail('function_name argument given to redis.register_function must be a string')
      end
      name = tostring(value)
    elseif key == 'description' then
      if kind ~= 'string' and kind ~= 'number' then
        fail('description argument given to redis.register_function must be a string')
      end
      description = tostring(value)
    elseif key == 'callback' then
      if kind ~= 'function' then
        fail('callback argument given to redis.register_function must be a function')
      end
      callback = value
    elseif key == 'flags' then
      if kind ~= 'table' then
        fail('flags argument to redis.register_function must be a table representing ' ..
          'function flags')
      end
      flags = read_flags(value)
    else
      fail('unknown argument given to redis.register_function')
    end
  end
  if name == nil then fail('redis.register_function must get a function name argument') end
  if callback == nil then fail('redis.register_function must get a callback argument') end
  return name, callback, flags or {}, description
end

local function register_function(...)
  if loading == nil then
    fail('redis.register_function can only be called on FUNCTION LOAD command')
  end
  local count = select('#', ...)
  if count < 1 or count > 2 then fail('wrong number of arguments to redis.register_function') end
  local name, callback, flags, description
  if count == 1 then
    name, callback, flags, description = named_arguments(...)
  else
    name, callback = ...
    if type(name) ~= 'string' and type(name) ~= 'number' then
      fail('first argument to redis.register_function must be a string')
    end
    if type(callback) ~= 'function' then
      fail('second argument to redis.register_function must be a function')
    end
    name, flags = tostring(name), {}
  end
  if not name:find('^[%w_]+$') then
    fail('Library names can only contain letters, numbers, or underscores(_) and must be at ' ..
      'least one character long')
  end
  for _, registered in pairs(loading) do
    if registered[1] == name then
      fail('Function already exists in the library')
    end
  end
  loading[#loading + 1] = {name, callback, flags, description}
end

local redis = env.redis
local load_globals = protected({
  redis = protected({
    register_function = register_function,
    log = redis.log,
    LOG_DEBUG = redis.LOG_DEBUG, LOG_VERBOSE = redis.LOG_VERBOSE,
    LOG_NOTICE = redis.LOG_NOTICE, LOG_WARNING = redis.LOG_WARNING,
    REDIS_VERSION = redis.REDIS_VERSION, REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM,
  }),
})

-- The libraries' globals: what __index points at changes between load and run.
local library_meta = {__index = env, __newindex = refuse_write, __metatable = false}
local library_env = setmetatable({}, library_meta)

-- The sandbox's loadstring: it refuses bytecode and compiles tail calls as plain calls, so
-- that an error names the function's line (sandbox.py).
local sandbox_loadstring = env.loadstring

local function compile(code)
  local fn, err = sandbox_loadstring(code, '@user_function')
  if not fn then return nil, err end
  setfenv(fn, library_env)
  return fn, nil
end

local function begin()
  loading = {}
  library_meta.__index = load_globals
end

local function finish()
  local registered = loading
  loading = nil
  library_meta.__index = env
  return registered
end

local function runner(callback)
  return function() return callback(env.KEYS, env.ARGV) end
end

return compile, begin, finish, runner
"""
