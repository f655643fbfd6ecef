# Types of the optional C bridge (blinkstore_gunicorn/server/scripting/_luacall.c).
from collections.abc import Callable
from typing import Any

def load(path: str, /) -> None: ...

class Bridge:
    def __init__(
        self,
        execute: Callable[[list[bytes]], bytes],
        runner: Callable[[Any, Any, list[bytes]], bytes] | None,
        fast: dict[bytes, tuple[int, bool]],
        state: Any,
        dispatcher: Any,
        client: Any,
    ) -> None: ...
    def install(self, address: int, token: bytes, max_depth: int, /) -> None: ...
