# Types of the optional C helper (blinkstore_gunicorn/protocol/_split.c).
from blinkstore_gunicorn.protocol.resp import Parsed

# The list is new: its items are argument lists, and the caller may add other Parsed values.
def split(
    data: bytes, max_bulk: int, max_request: int, max_args: int, /
) -> tuple[list[Parsed], int]: ...

# The arguments (a new list) of ``data`` when it is exactly one request ``split`` would take.
def one(max_bulk: int, max_request: int, max_args: int, data: bytes, /) -> list[bytes] | None: ...
