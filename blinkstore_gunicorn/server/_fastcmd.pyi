# Types of the optional C helper (blinkstore_gunicorn/server/_fastcmd.c).
from collections.abc import Callable
from typing import Any

class Runner:
    def __init__(
        self,
        dispatcher: Any,
        handlers: tuple[Callable[..., bytes], ...],
        fallback: Callable[[Any, Any, Any], bytes],
        large: int,
        costs: tuple[int, int, int, int, int, int],
        region_full: type[BaseException],
        refused: Callable[[Any], bytes],
        typed: tuple[Any, ...] | None = None,
    ) -> None: ...
    def execute(self, dispatcher: Any, client: Any, args: Any, /) -> bytes: ...
