"""A stand-in for the transport asyncio hands a store connection, for in-process runs
(``bench.pipeline --in-process``, ``bench.abuse.fuzz``'s split check)."""

from __future__ import annotations

from typing import Any


class InProcessTransport:
    """What a store connection calls on its transport, outside an event loop: what it writes
    is kept in ``out``."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        pass

    abort = close

    def pause_reading(self) -> None:
        pass

    resume_reading = pause_reading

    def get_extra_info(self, name: str) -> Any:
        return None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False  # closes at once: no lingering timer outside an event loop
