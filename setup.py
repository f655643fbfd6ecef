"""Build configuration beyond pyproject.toml: the optional C helpers.

``blinkstore_gunicorn/shm/_native.c`` speeds up the region's hot paths (a reader's lookup, the
writer's slot stores) and gives them real acquire/release ordering. It is optional: without a
C compiler (or on a platform it does not target) the build goes on without it and the pure-
Python reader and writer, the reference, do the same work. Wheels: see docs/how-it-works.md.
``blinkstore_gunicorn/server/_fastcmd.c`` (with ``_fasttypes.c``, its data-type commands)
answers plain requests in C, on the same terms (``server/fastpath.py`` falls back to the
Python dispatcher without it), and
``blinkstore_gunicorn/protocol/_split.c`` splits canonical RESP requests from a read
(``protocol/resp_split.py``; hiredis's reader or the Python reader serve without it).
``blinkstore_gunicorn/server/scripting/_luacall.c`` makes a script's ``redis.call`` a Lua C
function (``server/scripting/bridge.py``; the sandbox's Lua functions serve without it).
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

_FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
# The region's C code needs Linux (memfd regions), a 64-bit compiler with __int128, and a
# little-endian CPU (it loads the key as the little-endian integer layout.key_hash defines).
_TARGETED = sys.platform == "linux" and sys.maxsize > 2**32 and sys.byteorder == "little"

setup(
    ext_modules=[
        Extension(
            "blinkstore_gunicorn.shm._native",
            sources=["blinkstore_gunicorn/shm/_native.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
        Extension(
            "blinkstore_gunicorn.server._fastcmd",
            sources=[
                "blinkstore_gunicorn/server/_fastcmd.c",
                "blinkstore_gunicorn/server/_fasttypes.c",
            ],
            depends=["blinkstore_gunicorn/server/_fastcmd.h"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
        Extension(
            "blinkstore_gunicorn.server.scripting._luacall",
            sources=["blinkstore_gunicorn/server/scripting/_luacall.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
        Extension(
            "blinkstore_gunicorn.protocol._split",
            sources=["blinkstore_gunicorn/protocol/_split.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
    ]
    if _TARGETED
    else [],
)
