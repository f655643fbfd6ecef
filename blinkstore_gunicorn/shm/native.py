"""Whether the region's hot paths run in C (``shm/_native.c``) or in the pure-Python reference.

The C helper is optional: it is built when the package is installed from source with a C
compiler at hand (``setup.py``), and everything works without it. ``BLINKSTORE_NATIVE=0`` in
the environment turns it off even when it is built (the tests run both paths that way), so a
suspected bug in the C path can be ruled out in production without reinstalling.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["ENV", "native"]

#: The environment variable that turns the C path off ("0").
ENV = "BLINKSTORE_NATIVE"


def native() -> ModuleType | None:
    """The compiled helper, or None when it is not built or the environment turns it off.

    Asked each time a reader or writer is made (not once at import), so that a test can switch
    paths with the environment.
    """
    if os.environ.get(ENV, "1") == "0":
        return None
    try:
        from blinkstore_gunicorn.shm import _native
    except ImportError:
        return None
    return _native
