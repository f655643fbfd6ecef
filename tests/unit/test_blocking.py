"""The parked blocking requests (``server/blocking.py``) without a server: who is served, who
stays parked, and that nothing parks where nothing may wait."""

from __future__ import annotations

from collections.abc import Callable

from blinkstore_gunicorn.engine import WrongType
from blinkstore_gunicorn.server.blocking import BlockedPops


def park(
    table: BlockedPops,
    owner: int,
    serve: Callable[[bytes], bytes | None],
    got: list[tuple[int, bytes]],
    consumes: bool = True,
) -> None:
    table.park(
        owner,
        [b"k"],
        None,
        serve=serve,
        deliver=lambda reply: got.append((owner, reply)),
        timeout_reply=b"timeout",
        consumes=consumes,
    )


def test_inside_a_transaction_nothing_is_parked() -> None:
    table = BlockedPops()
    reply = table.serve_or_park(
        1,
        [b"k"],
        None,
        serve=lambda key: None,
        deliver=lambda reply: None,
        timeout_reply=b"nil",
        on_close=[],
        may_park=False,
    )
    assert reply == b"nil" and len(table) == 0 and 1 not in table


def test_a_waiter_for_another_type_stays_parked_and_the_next_is_served() -> None:
    table = BlockedPops()
    got: list[tuple[int, bytes]] = []
    items = [b"a"]

    def wrong_type(key: bytes) -> bytes | None:
        raise WrongType

    park(table, 1, wrong_type, got)
    park(table, 2, lambda key: items.pop() if items else None, got)
    park(table, 3, lambda key: items.pop() if items else None, got)
    table.ready(b"k")
    assert got == [(2, b"a")] and 1 in table and 3 in table


def test_readers_are_all_served_and_pops_stop_once_empty() -> None:
    table = BlockedPops()
    got: list[tuple[int, bytes]] = []
    park(table, 1, lambda key: None, got, consumes=False)  # wants entries after a later ID
    park(table, 2, lambda key: b"entry", got, consumes=False)
    park(table, 3, lambda key: b"entry", got, consumes=False)
    table.ready(b"k")
    assert got == [(2, b"entry"), (3, b"entry")] and 1 in table and len(table) == 1
    table.client_gone(1)
    calls: list[int] = []

    def empty(owner: int) -> Callable[[bytes], bytes | None]:
        def serve(key: bytes) -> bytes | None:
            calls.append(owner)
            return None

        return serve

    park(table, 4, empty(4), got)
    park(table, 5, empty(5), got)
    table.ready(b"k")
    assert calls == [4] and len(table) == 2  # the first pop found nothing: so would the rest
