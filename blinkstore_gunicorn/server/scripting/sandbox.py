"""The Lua state scripts run in: Redis's sandbox, built once per state.

:data:`BOOTSTRAP` runs with full access before any script is loaded. It keeps what could
reach outside the store (``os``, ``io``, ``require``, ``loadfile``, ``dofile``, ``debug``,
``setfenv``...) as its own locals, and gives scripts an environment of their own: reading a
global that does not exist and writing any global are errors (Redis 7's words), library
tables are read-only views, ``loadstring`` refuses bytecode and compiles into the same
environment, and coroutines get the instruction-count hook so that a loop inside one can be
stopped too. It returns ``compile(source)`` and ``run(fn, nil_reply, numkeys, key..., arg...)``
(then ``attach``/``adopt``, which install the C ``redis.call`` of ``bridge.py``); ``run``
calls the script under ``xpcall`` with a handler that records the script line an
error came from, and turns what the script returned into the RESP reply (the rules of
``convert.py``) in Lua: a table then costs no Python<->Lua crossing per item.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BOOTSTRAP", "HOOK_EVERY"]

#: Lua instructions between two calls of the time/kill check (Redis uses the same count).
HOOK_EVERY: Final = 100_000

BOOTSTRAP: Final = r"""
-- The Python callbacks and settings (see runtime.py), then what this chunk keeps to itself.
local py_call, py_hook, py_log, py_sha1hex, py_setresp, libs, hook_every, max_depth,
  depth_error, typed_reply = ...
-- Whether the running script called redis.setresp(3) (resp3.py); each script starts in RESP2.
local script_resp3 = false

local real_rawset, real_setmetatable, real_getmetatable = rawset, setmetatable, getmetatable
local real_loadstring, real_setfenv = loadstring, setfenv
local tostring, type, error = tostring, type, error
local getinfo, sethook = debug.getinfo, debug.sethook
local cocreate, coresume = coroutine.create, coroutine.resume
local select, pairs, concat = select, pairs, table.concat

local READONLY = 'Attempt to modify a readonly table'
local protected = real_setmetatable({}, {__mode = 'k'})

-- A read-only view of a library table: reading works, writing raises as in Redis 7.
local function readonly(lib)
  local proxy = {}
  real_setmetatable(proxy, {
    __index = lib,
    __newindex = function() error(READONLY, 2) end,
    __metatable = false,
  })
  protected[proxy] = true
  return proxy
end

-- Every script's code runs with env as its globals. It stays empty, so that every write
-- reaches its __newindex, the names that exist too (Redis 7's globals are read-only: a
-- script must not replace redis.call or KEYS for the scripts after it). Reads go through
-- to globals, whose own __index refuses a name that does not exist.
local env, globals = {}, {}

-- The chunk this bootstrap runs as: its own functions (run, on_error...) are not the script's.
local SANDBOX = getinfo(1, 'S').source
local stop_error

-- Once a script is stopped, the error is raised again at every line of the script's own code,
-- as Redis does after SCRIPT KILL: a script that catches it with pcall and loops cannot go on
-- (it would hold the store for ever). The sandbox's own lines (the error handler, the reply's
-- encoding) run on.
local function stopping()
  if getinfo(2, 'S').source ~= SANDBOX then
    error(stop_error, 0)
  end
end

local function hook()
  local stop = py_hook()
  if stop then
    stop_error = {err = stop}
    sethook(stopping, 'l')  -- this coroutine's; another's count hook gets the same answer
    error(stop_error, 0)
  end
end

-- Coroutines get the same instruction-count hook, or a loop inside one could not be stopped.
local function co_create(f)
  local co = cocreate(f)
  sethook(co, hook, '', hook_every)
  return co
end

local function resumed(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

local function co_wrap(f)
  local co = co_create(f)
  return function(...) return resumed(coresume(co, ...)) end
end

-- Redis's redis.call is a C function, so in `return redis.call(...)` the script's frame stays
-- on the stack and an error names the script's line. Ours is a Lua function, and Lua 5.1
-- drops the caller's frame on a tail call: so a compiled script's tail calls become plain
-- calls (TAILCALL a b 0 -> CALL a b 0; the RETURN a 0 the compiler put after it returns the
-- same values). This reads Lua 5.1's binary chunk (ldump.c) far enough to find every
-- function's code, with the sizes and byte order its header gives.
local byte, char, sub, dump = string.byte, string.char, string.sub, string.dump
local OP_TAILCALL = 29

local function without_tail_calls(chunk)
  local little, int_size, size_t_size, instruction_size, number_size =
    byte(chunk, 7) == 1, byte(chunk, 8), byte(chunk, 9), byte(chunk, 10), byte(chunk, 11)
  -- The opcode is the low 6 bits of an instruction's least significant byte.
  local opcode_at = little and 0 or instruction_size - 1
  local parts, copied, pos = {}, 1, 13  -- after the 12-byte header

  local function unsigned(size)
    local value = 0
    for i = size - 1, 0, -1 do
      value = value * 256 + byte(chunk, pos + (little and i or size - 1 - i))
    end
    pos = pos + size
    return value
  end
  local function skip_string()
    local size = unsigned(size_t_size)  -- read first: it moves pos past the size itself
    pos = pos + size
  end

  local function patch_function()
    skip_string()  -- source
    pos = pos + 2 * int_size + 4  -- first and last line, upvalues, parameters, vararg, stack
    local count = unsigned(int_size)
    for at = pos + opcode_at, pos + (count - 1) * instruction_size + opcode_at, instruction_size do
      local op = byte(chunk, at)
      if op % 64 == OP_TAILCALL then
        parts[#parts + 1] = sub(chunk, copied, at - 1)
        parts[#parts + 1] = char(op - 1)  -- OP_CALL
        copied = at + 1
      end
    end
    pos = pos + count * instruction_size
    for _ = 1, unsigned(int_size) do  -- constants: nil 0, boolean 1, number 3, string 4
      local kind = byte(chunk, pos)
      pos = pos + 1
      if kind == 1 then
        pos = pos + 1
      elseif kind == 3 then
        pos = pos + number_size
      elseif kind == 4 then
        skip_string()
      end
    end
    for _ = 1, unsigned(int_size) do patch_function() end
    count = unsigned(int_size)  -- line of each instruction
    pos = pos + count * int_size
    for _ = 1, unsigned(int_size) do  -- local variables: name, first and last instruction
      skip_string()
      pos = pos + 2 * int_size
    end
    for _ = 1, unsigned(int_size) do skip_string() end  -- upvalue names
  end

  patch_function()
  parts[#parts + 1] = sub(chunk, copied)
  return concat(parts)
end

local function safe_loadstring(source, name)
  if type(source) == 'string' and source:byte(1) == 27 then
    return nil, 'loading precompiled code is not allowed'
  end
  local fn, err = real_loadstring(source, name)
  if fn then fn, err = real_loadstring(without_tail_calls(dump(fn)), name) end
  if not fn then return nil, err end  -- the second load fails only for want of memory
  real_setfenv(fn, env)
  return fn
end

-- Level 0: Redis raises these from C, so the message has no script position.
local function safe_rawset(t, k, v)
  if protected[t] then error(READONLY, 0) end
  return real_rawset(t, k, v)
end

local function safe_setmetatable(t, mt)
  if protected[t] then error(READONLY, 0) end
  return real_setmetatable(t, mt)
end

local redis = {
  -- py_call answers a value alone, or a message and its kind: 1 a status, 2 an error.
  call = function(...)
    local value, kind = py_call(...)
    if kind == nil then return value end
    if kind == 1 then return {ok = value} end
    error({err = value}, 0)
  end,
  pcall = function(...)
    local value, kind = py_call(...)
    if kind == nil then return value end
    if kind == 1 then return {ok = value} end
    return {err = value}
  end,
  error_reply = function(message)
    if type(message) ~= 'string' then error('wrong number or type of arguments', 2) end
    if message:sub(1, 1) ~= '-' then message = '-' .. message end
    local space = message:find(' ', 1, true)
    if space then
      return {err = message:sub(2, space - 1) .. ' ' .. message:sub(space + 1)}
    end
    return {err = 'ERR ' .. message:sub(2)}
  end,
  status_reply = function(message)
    if type(message) ~= 'string' then error('wrong number or type of arguments', 2) end
    return {ok = message}
  end,
  sha1hex = function(text)
    if type(text) ~= 'string' and type(text) ~= 'number' then
      error('wrong number of arguments', 2)
    end
    return py_sha1hex(tostring(text))
  end,
  log = function(level, ...)
    if select('#', ...) == 0 then error('redis.log() requires two arguments or more.', 2) end
    if type(level) ~= 'number' or level < 0 or level > 3 then error('Invalid debug level.', 2) end
    local parts = {}
    for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
    py_log(level, table.concat(parts, ' '))
  end,
  setresp = function(...)
    -- Raised from C in Redis: tables without a script position, the argument as lua_tonumber
    -- reads it, truncated as C's cast.
    if select('#', ...) ~= 1 then error({err = 'ERR redis.setresp() requires one argument.'}, 0) end
    local version = math.floor(tonumber((...)) or 0)
    if version ~= 2 and version ~= 3 then error({err = 'ERR RESP version must be 2 or 3.'}, 0) end
    py_setresp(version)
    script_resp3 = version == 3
  end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = libs.version, REDIS_VERSION_NUM = libs.version_num,
}

local coroutine_lib = {}
for name, fn in pairs(coroutine) do coroutine_lib[name] = fn end
coroutine_lib.create, coroutine_lib.wrap = co_create, co_wrap

-- The string metatable would otherwise hand scripts the writable string library.
real_getmetatable('').__metatable = false

for _, name in ipairs({
  'assert', 'error', 'ipairs', 'next', 'pairs', 'pcall', 'rawequal', 'rawget', 'select',
  'getmetatable', 'tonumber', 'tostring', 'type', 'unpack', 'xpcall', 'collectgarbage',
  'gcinfo',
}) do
  globals[name] = _G[name]
end
globals.rawset, globals.loadstring = safe_rawset, safe_loadstring
globals.setmetatable = safe_setmetatable
globals._VERSION = _VERSION
globals.string, globals.table, globals.math = readonly(string), readonly(table), readonly(math)
globals.coroutine, globals.redis = readonly(coroutine_lib), readonly(redis)
for name, lib in pairs(libs.modules) do globals[name] = readonly(lib) end
globals._G = env
real_setmetatable(globals, {
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
})
real_setmetatable(env, {
  __index = globals,
  __newindex = function() error(READONLY, 2) end,
  -- What getmetatable(_G) shows: a table, as in Redis, and read-only like the rest.
  __metatable = readonly({}),
})
protected[env] = true

-- Adds where the script was when it failed (Redis: "script: <sha>, on @user_script:<line>.").
local function on_error(err)
  if type(err) ~= 'table' then err = {err = 'ERR ' .. tostring(err)} end
  for level = 2, 64 do
    local info = getinfo(level, 'Sl')
    if not info then break end
    if info.source == '@user_script' or info.source == '@user_function' then
      err.line, err.source = info.currentline, info.source
      break
    end
  end
  return err
end

local function compile(source)
  local fn, err = safe_loadstring(source, '@user_script')
  return fn or nil, err
end

-- What a script returned, as the RESP reply (conversion.py's rules, done here so that a
-- returned table does not cost one Python<->Lua crossing per item): appends the parts of the
-- reply to out from index n + 1 and returns the new last index, or nil when tables nest
-- deeper than max_depth. Reads tables with rawget, as Redis does.
local format, gsub, rawget = string.format, string.gsub, rawget
local TWO_63 = 2 ^ 63
local RESP3_NULL = '_\r\n'
local INT64_MIN = ':-9223372036854775808\r\n'

-- make(n) kept for the integers 0 to limit - 1 once made: a number becomes text through C's
-- sprintf, which costs more than the rest of a short reply's encoding (a script returning
-- {1, 'abc'} formatted three numbers).
local function memo(make, limit)
  return real_setmetatable({}, {__index = function(made, n)
    local text = make(n)
    if n >= 0 and n < limit and n % 1 == 0 then real_rawset(made, n, text) end
    return text
  end})
end
local bulk_header = memo(function(n) return '$' .. n .. '\r\n' end, 4096)
local array_header = memo(function(n) return '*' .. n .. '\r\n' end, 1024)
local integer_reply = memo(function(n) return format(':%d\r\n', n) end, 1024)

-- A value that is not a table, as its reply.
local function scalar(value, nil_reply)
  local kind = type(value)
  if kind == 'string' then
    return bulk_header[#value] .. value .. '\r\n'
  elseif kind == 'number' then
    -- Truncated toward zero; NaN and out of range give what the C cast gives in Redis.
    if value ~= value or value >= TWO_63 or value < -TWO_63 then
      return INT64_MIN
    end
    return integer_reply[value]
  elseif script_resp3 and kind == 'boolean' then
    -- RESP3 booleans, which a RESP2 caller reads as 1 and 0 (Redis's addReplyBool).
    if nil_reply == RESP3_NULL then return value and '#t\r\n' or '#f\r\n' end
    return value and ':1\r\n' or ':0\r\n'
  elseif value == true then
    return ':1\r\n'
  end
  return nil_reply
end

local function encode(value, nil_reply, out, n, depth)
  n = n + 1
  if type(value) ~= 'table' then
    out[n] = scalar(value, nil_reply)
    return n
  end
  if depth >= max_depth then return nil end
  local err = rawget(value, 'err')
  if type(err) == 'string' then
    out[n] = '-' .. gsub(err, '[\r\n]', ' ') .. '\r\n'
    return n
  end
  local ok = rawget(value, 'ok')
  if type(ok) == 'string' then
    out[n] = '+' .. gsub(ok, '[\r\n]', ' ') .. '\r\n'
    return n
  end
  local item = rawget(value, 1)
  if item == nil then
    -- Not an array with items: maybe {double=}, {map=}, {set=}... (resp3.py)
    local typed = typed_reply(value, out, n, depth, nil_reply, encode, nil_reply == RESP3_NULL)
    if typed ~= false then return typed end
  end
  local header, count = n, 0
  while item ~= nil do
    n = encode(item, nil_reply, out, n, depth + 1)
    if n == nil then return nil end
    count = count + 1
    item = rawget(value, count + 1)
  end
  out[header] = array_header[count]
  return n
end

-- What the script returned as its reply bytes, or nil when tables nest deeper than max_depth.
local function lua_reply(result, nil_reply)
  -- A scalar needs no parts table.
  if type(result) ~= 'table' then return scalar(result, nil_reply) end
  local out = {}
  if encode(result, nil_reply, out, 0, 0) == nil then return nil end
  return concat(out)
end
local reply_of = lua_reply  -- the C encoder's once attached (bridge.py)

-- run(fn, nil_reply, numkeys, key..., arg...): KEYS and ARGV are made here from the
-- arguments (one crossing from Python, not one per table); answers true and the reply bytes,
-- or false and the error raised.
local function run(fn, nil_reply, numkeys, ...)
  -- KEYS is the vararg table with the ARGV items moved out of it: two tables, not three.
  local keys, argv = {...}, {}
  for i = numkeys + 1, select('#', ...) do
    argv[i - numkeys] = keys[i]
    keys[i] = nil
  end
  real_rawset(globals, 'KEYS', keys)
  real_rawset(globals, 'ARGV', argv)
  script_resp3 = false
  local ok, result = xpcall(fn, on_error)
  if stop_error then
    -- The stop put the line hook in the count hook's place (a script that caught the error
    -- with pcall may even have returned): the next script gets the count hook back.
    stop_error = nil
    sethook(hook, '', hook_every)
  end
  if not ok then return false, result end
  -- After redis.setresp(3) booleans are RESP3's, which only the Lua encoder writes.
  local reply
  if script_resp3 then
    reply = lua_reply(result, nil_reply)
  else
    reply = reply_of(result, nil_reply)
  end
  -- false: the C encoder left a typed table ({double=}...) to Lua, or could not grow its buffer.
  if reply == false then reply = lua_reply(result, nil_reply) end
  return true, reply or depth_error
end

-- The count hook stays set between scripts (setting and clearing it around each script cost
-- about 5,000 instructions, an eighth of a short script's): between them it only fires when
-- this state runs 100,000 instructions, and then finds no script running.
sethook(hook, '', hook_every)

-- The C bridge's handshake (_luacall.c): attach(token, resp3) leaves the token (and the
-- reader of RESP3 replies the C redis.call hands what it cannot read) where the registry is
-- reached through the coroutine it returns with its printed address; once the C side put its
-- functions beside the token, adopt() uses them in place of the Lua ones.
local getregistry, BRIDGE = debug.getregistry, 'blinkstore_gunicorn.luacall'

local function attach(token, resp3)
  getregistry()[BRIDGE] = {token = token, resp3 = resp3}
  local co = cocreate(function() end)
  return co, tostring(co)
end

local function adopt()
  local slot = getregistry()[BRIDGE]
  getregistry()[BRIDGE] = nil
  redis.call, redis.pcall, reply_of = slot.call, slot.pcall, slot.encode
end

return compile, run, attach, adopt
"""
