# Types of the optional C helper (blinkstore_gunicorn/shm/_native.c).
from collections.abc import Callable

from typing_extensions import Buffer

def key_hash(key: bytes, mul: int, prime: int, /) -> int: ...
def entry_checksum(key: bytes, value: bytes, expire_at: int, /) -> int: ...
def constants() -> dict[str, int]: ...

class Lookup:
    def __init__(
        self,
        region: Buffer,
        marks: Buffer,
        counter: int,
        checksum: bool,
        mul: int,
        prime: int,
        on_stale: Callable[[bytes, int], object],
        fallback: object,
        miss: object,
    ) -> None: ...
    def get(self, key: bytes, mode: int = 0, /) -> object: ...
    def set_table(self, offset: int, slots: int, token: int, marks_offset: int, /) -> None: ...
    def close(self) -> None: ...

def block_size(n: int, /) -> int: ...

class Publisher:
    def __init__(self, region: Buffer, checksum: bool) -> None: ...
    def overwrite(
        self,
        block: int,
        key: bytes,
        value: bytes,
        expire_at: int,
        half: int,
        t0: int,
        slots: int,
        max_value: int,
        /,
    ) -> int: ...
    def block_bytes(self, block: int, /) -> int: ...
    def rewrite(
        self, slotw: int, block: int, key: bytes, value: bytes, expire_at: int, /
    ) -> None: ...
    def place(
        self,
        slotw: int,
        block: int,
        tag: int,
        key: bytes,
        value: bytes,
        meta: int,
        expire_at: int,
        /,
    ) -> None: ...
    def update(self, slotw: int, meta: int, loc: int, expire_at: int, /) -> None: ...
    def close(self) -> None: ...
