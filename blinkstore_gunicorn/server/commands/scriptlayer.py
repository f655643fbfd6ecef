"""What the scripting families (``scripting``: EVAL, SCRIPT; ``functions``: FUNCTION, FCALL)
share: the dispatcher's scripting layer, made on first use, and the start of a run.

The layer (``server/scripting/``) needs lupa and greenlet (the ``scripting`` extra); a store
without them answers these commands with an error that says what to install.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS, DEFERRED
from blinkstore_gunicorn.server.commands.replies import REDIS_COMPAT_VERSION
from blinkstore_gunicorn.server.scripting.shebang import read_only as flags_read_only

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
    from blinkstore_gunicorn.server.scripting.scripts import Scripting

__all__ = ["NO_SCRIPTING", "library_codes", "load_libraries", "run_script", "scripting_layer"]

log = logging.getLogger("blinkstore.server")

NO_SCRIPTING: Final = resp.error(
    "ERR Lua scripting needs the lupa and greenlet packages: "
    "pip install 'blinkstore-gunicorn[scripting]'"
)


def scripting_layer(d: Dispatcher) -> Scripting | None:
    """The dispatcher's scripting layer, made on first use; None without lupa/greenlet."""
    if d.scripting is None:
        try:
            from blinkstore_gunicorn.server.scripting.scripts import Scripting

            d.scripting = Scripting(
                d, COMMANDS, REDIS_COMPAT_VERSION, busy_threshold=d.busy_threshold_ms / 1000
            )
        except ImportError:
            return None
    return d.scripting


def library_codes(d: Dispatcher) -> list[bytes]:
    """The code of every loaded function library (what a snapshot holds)."""
    if d.scripting is None:
        return []
    return [library.code for library in d.scripting.functions.libraries.values()]


def load_libraries(d: Dispatcher, codes: Sequence[bytes]) -> None:
    """Load the function libraries a snapshot holds; one log line for those that cannot be."""
    scripting = scripting_layer(d)
    if scripting is None:
        log.error("%d function libraries not loaded: %s", len(codes), NO_SCRIPTING[5:-2].decode())
        return
    from blinkstore_gunicorn.server.scripting.functions import FunctionError

    for code in codes:
        try:
            scripting.functions.load(code, replace=True)
        except FunctionError as error:
            log.error("a function library of the snapshot not loaded: %s", error)


def run_script(
    scripting: Scripting,
    c: Client,
    name: bytes,
    args: list[bytes],
    numkeys: int,
    *,
    read_only: bool,
    flags: frozenset[str] | None,
    function: Any = None,
) -> bytes:
    """Run the script (or with ``function``, the function) ``name`` for ``c``'s command
    ``args`` (keys from ``args[3]``), with its ``flags`` (None: a script without a shebang):
    its reply, or the error refusing to start it."""
    if flags is not None:
        mode = flags_read_only(flags, read_only)
        if isinstance(mode, str):
            return resp.error(mode)
        read_only = mode
    reply = scripting.run(
        c,
        name,
        args[3 : 3 + numkeys],
        args[3 + numkeys :],
        read_only,
        function=None if function is None else (function, args),
    )
    return DEFERRED if reply is None else reply
