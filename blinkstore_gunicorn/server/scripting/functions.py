"""Redis 7.0's functions (functions.c): libraries of Lua functions loaded by ``FUNCTION LOAD``,
called by ``FCALL``/``FCALL_RO``.

A library is Lua code starting with ``#!lua name=<library>``; running it (in the load-time
sandbox of ``function_lua.py``, for at most :data:`LOAD_TIMEOUT` seconds) registers its
functions with ``redis.register_function``. As in Redis, FCALL finds a function by its name
regardless of case; library names, and the names of one library's functions, are
case-sensitive. They live in the scripting layer's Lua state, beside the
EVAL scripts, and run through the same machinery (``Scripting.run``: atomic, BUSY past the
threshold, ``FUNCTION KILL``). Errors are Redis's words; :class:`FunctionError` carries them
without the ``ERR`` code.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from blinkstore_gunicorn.server.scripting.function_lua import LIBRARY_LOADER
from blinkstore_gunicorn.server.scripting.shebang import FLAGS, split_args
from blinkstore_gunicorn.storage.dump import functions_payload, load_functions_payload

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.scripting.scripts import Scripting

__all__ = ["LOAD_TIMEOUT", "Function", "FunctionError", "Functions", "Library"]

#: Seconds a library's code may run at ``FUNCTION LOAD`` (Redis's 500 ms).
LOAD_TIMEOUT: Final = 0.5

_NAME: Final = re.compile(rb"[A-Za-z0-9_]+\Z")
_BAD_NAME: Final = (
    "Library names can only contain letters, numbers, or underscores(_) and must be at least "
    "one character long"
)


class FunctionError(Exception):
    """A library or function refused; the message is Redis's, without ``ERR``."""


class Function(NamedTuple):
    """One registered function."""

    name: bytes
    flags: frozenset[str]
    description: bytes | None
    #: What ``Scripting.run`` calls: the callback, handed ``KEYS`` and ``ARGV``.
    run: Any


class Library(NamedTuple):
    """One loaded library: its name, its whole code, its functions by name."""

    name: bytes
    code: bytes
    functions: dict[bytes, Function]


def _metadata(code: bytes) -> tuple[bytes, int]:
    """The library name of ``code``'s ``#!lua name=...`` line and the line's length."""
    if not code.startswith(b"#!"):
        raise FunctionError("Missing library metadata")
    end = code.find(b"\n")
    words = split_args(code[:end]) if end >= 0 else None
    if not words:
        raise FunctionError("Invalid library metadata")
    name = None
    for word in words[1:]:
        if word[:5].lower() != b"name=":
            raise FunctionError(f"Invalid metadata value given: {word.decode('utf-8', 'replace')}")
        if name is not None:
            raise FunctionError("Invalid metadata value, name argument was given multiple times")
        name = word[5:]
    if name is None:
        raise FunctionError("Library name was not given")
    if not _NAME.match(name):
        raise FunctionError(_BAD_NAME)
    engine = words[0][2:]
    if engine.lower() != b"lua":
        raise FunctionError(f"Engine '{engine.decode('utf-8', 'replace')}' not found")
    return name, end


class Functions:
    """The loaded libraries of one scripting layer."""

    __slots__ = ("_begin", "_compile", "_finish", "_runner", "_scripting", "by_name", "libraries")

    def __init__(self, scripting: Scripting) -> None:
        self._scripting = scripting
        state = scripting.lua
        # Any compiled script: the loader takes the sandbox's environment from it.
        probe, _ = state.compile(b"return")
        flags = state.lua.table_from([flag.encode() for flag in FLAGS])
        self._compile, self._begin, self._finish, self._runner = state.lua.execute(
            LIBRARY_LOADER.encode(), probe, flags
        )
        #: Libraries by name, functions by lower-case name.
        self.libraries: dict[bytes, Library] = {}
        self.by_name: dict[bytes, Function] = {}

    def load(self, code: bytes, replace: bool) -> bytes:
        """``FUNCTION LOAD [REPLACE] code``: the library's name."""
        library = self._build(code, replace)
        self._link([library], replace)
        return library.name

    def _build(self, code: bytes, replace: bool) -> Library:
        """The library ``code`` defines, loaded but not linked."""
        name, skip = _metadata(code)
        if not replace and name in self.libraries:
            raise FunctionError(f"Library '{name.decode()}' already exists")
        try:
            chunk, error = self._compile(code[skip:])
        except self._scripting.lua.memory_error:
            self._scripting.lua.collect()
            chunk, error = None, b"not enough memory"
        if chunk is None:
            raise FunctionError(f"Error compiling function: {error.decode('utf-8', 'replace')}")
        self._begin()
        try:
            failure = self._scripting.run_library(chunk)
        finally:
            registered = self._finish()
        if failure is not None:
            raise FunctionError(f"Error registering functions: {failure}")
        functions: dict[bytes, Function] = {}
        for index in range(1, len(registered) + 1):
            entry = registered[index]
            lua_flags = entry[3]
            flags = frozenset(lua_flags[i].decode() for i in range(1, len(lua_flags) + 1))
            function = Function(entry[1], flags, entry[4], self._runner(entry[2]))
            functions[function.name] = function
        if not functions:
            raise FunctionError("No functions registered")
        return Library(name, code, functions)

    def _link(self, new: list[Library], replace: bool) -> None:
        """Add the ``new`` libraries (replacing those of their names when ``replace``), or
        change nothing and raise the first collision."""
        libraries = dict(self.libraries)
        for library in new:
            if library.name in libraries and not replace:
                raise FunctionError(f"Library {library.name.decode()} already exists")
            libraries[library.name] = library
        by_name: dict[bytes, Function] = {}
        for library in libraries.values():
            for function in library.functions.values():
                if function.name.lower() in by_name:
                    raise FunctionError(f"Function {function.name.decode()} already exists")
            for function in library.functions.values():
                by_name[function.name.lower()] = function
        self.libraries, self.by_name = libraries, by_name

    def delete(self, name: bytes) -> None:
        """``FUNCTION DELETE``."""
        if self.libraries.pop(name, None) is None:
            raise FunctionError("Library not found")
        self._link([], False)

    def flush(self) -> None:
        """``FUNCTION FLUSH``: forget every library."""
        self.libraries, self.by_name = {}, {}
        self._scripting.lua.collect()

    def dump(self) -> bytes:
        """``FUNCTION DUMP``: every library's code in Redis's payload."""
        return functions_payload([library.code for library in self.libraries.values()])

    def restore(self, payload: bytes, policy: bytes) -> None:
        """``FUNCTION RESTORE payload APPEND|REPLACE|FLUSH`` (``policy`` upper case)."""
        codes = load_functions_payload(payload)
        kept = self.libraries
        if policy == b"FLUSH":
            self.libraries = {}
        try:
            built = [self._build(code, replace=True) for code in codes]
            self._link(built, policy != b"APPEND")
        except FunctionError:
            self.libraries = kept
            raise
