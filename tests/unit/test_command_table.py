"""The store's command table against Redis 7.0's (``redis_commands.resp``): ``COMMAND INFO``
answers Redis's own entries for the shared commands, so what the store registers for them is
what it acts on, and that must be what Redis does: the arity the dispatcher checks, and the
flags that decide what a command may do or where it may run (a write, blocking, in MULTI). The
other flags of the registry are not shown to clients (Redis's are), nor acted on."""

from __future__ import annotations

from blinkstore_gunicorn.server.commands import COMMANDS
from blinkstore_gunicorn.server.commands.commanddocs import (
    command_flags,
    command_names,
    info_reply,
    redis_arity,
)

#: Flags the store acts on (``noscript`` too, but it refuses QUIT, AUTH and HELLO in scripts by
#: name), with the meaning Redis gives them.
ACTED_ON = {"write", "blocking", "no_multi"}


def test_shared_commands_have_redis_arity_and_flags() -> None:
    shared = [name for name in COMMANDS if redis_arity(name) is not None]
    assert len(shared) > 150
    for name in shared:
        spec = COMMANDS[name]
        assert spec.arity == redis_arity(name), name
        # A container's flags are its subcommands' in Redis (XINFO STREAM is read-only).
        subcommands = [sub for sub in command_names() if sub.startswith(name + "|")]
        redis_flags = {flag.decode() for sub in [name, *subcommands] for flag in command_flags(sub)}
        assert set(spec.flags) & ACTED_ON == redis_flags & ACTED_ON, name


def test_own_commands_answer_as_module_commands() -> None:
    own = [name for name in COMMANDS if redis_arity(name) is None]
    assert {"bs.fetch", "bs.lease", "blink.lock", "blink.ratelimit"} <= set(own)
    for name in own:
        reply = info_reply(name, resp3=True)
        assert reply is not None and b"+module\r\n" in reply, name
    fetch = info_reply("bs.fetch", resp3=True)
    assert fetch is not None
    assert b"+write\r\n+module\r\n+noscript\r\n+blocking\r\n+no_multi\r\n" in fetch
    assert info_reply("nosuch", resp3=False) is None
    # RESP2: the sets and maps of the RESP3 entry as arrays.
    assert info_reply("bs.lease", resp3=False) == (
        b"*10\r\n$8\r\nbs.lease\r\n:3\r\n*3\r\n+write\r\n+module\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
        b"*0\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*3\r\n+RW\r\n+access\r\n+update\r\n"
        b"$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n"
        b"$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec"
        b"\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n"
    )
