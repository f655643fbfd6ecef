"""Revocation: what a supervisor holds to declare a dead store's region gone at once, and what a
successor store makes of it (``shm/generation.py``, ``supervision/handover.py``)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm.generation import Generation, Revocation
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter
from blinkstore_gunicorn.supervision.handover import (
    StoreChannel,
    channel_pair,
    hand_over_region,
    wait_for_go,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")


@pytest.fixture
def region() -> Iterator[RegionWriter]:
    with contextlib.closing(RegionWriter(4 * 2**20)) as writer:
        yield writer


@pytest.fixture
def reader(region: RegionWriter) -> Iterator[RegionReader]:
    with contextlib.closing(RegionReader(*region.fds, 0)) as view:
        yield view


def _writable_mappings_of_the_region(pid: int) -> list[str]:
    with open(f"/proc/{pid}/maps", encoding="ascii") as maps:
        return [
            line
            for line in maps
            if line.rstrip().endswith("/memfd:blinkstore-shm (deleted)")
            and line.split()[1].startswith("rw")
        ]


def _alive(reader: RegionReader) -> bool:
    return reader.alive


def test_a_revoked_region_is_not_trusted_by_a_reader_that_holds_it(
    region: RegionWriter, reader: RegionReader
) -> None:
    region.publish(b"price", b"v1", 0, 0)
    assert reader.get(b"price") == b"v1" and _alive(reader)
    revocation = Revocation(region.owner_fd)
    assert revocation.revoke()
    assert reader.get(b"price") is FALLBACK and not _alive(reader)
    assert reader.get_many([b"price"]) == [FALLBACK]
    # The token decides, not the clock: even a heartbeat written after the revocation (a store
    # that is not quite dead) does not make the region trusted again.
    region.beat(time.monotonic_ns())
    assert reader.get(b"price") is FALLBACK and not _alive(reader)
    assert not revocation.revoke(), "once"


def test_a_forget_leaves_the_region_alone(region: RegionWriter, reader: RegionReader) -> None:
    region.publish(b"k", b"v", 0, 0)
    Revocation(region.owner_fd).forget()
    assert reader.get(b"k") == b"v"


def test_revocation_needs_a_region() -> None:
    fd = os.memfd_create("not-a-region")
    try:
        os.ftruncate(fd, layout.HEADER_BYTES)
        with pytest.raises(ValueError, match="not a blinkstore"):
            Revocation(fd)
    finally:
        os.close(fd)


def test_the_supervisor_s_mapping_is_not_forked_and_keeps_no_descriptor(
    region: RegionWriter,
) -> None:
    # The gunicorn master holds the Revocation and forks the workers: they must get no way to
    # write the region (readers only ever map it read-only).
    descriptors = len(os.listdir("/proc/self/fd"))
    revocation = Revocation(region.owner_fd)
    try:
        assert len(os.listdir("/proc/self/fd")) == descriptors, "no descriptor kept"
        assert len(_writable_mappings_of_the_region(os.getpid())) == 2, "the store's and ours"
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(read_end)
            found = len(_writable_mappings_of_the_region(os.getpid()))
            revocation.drop_in_child()
            os.write(write_end, b"%d" % found)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as child:
            # The child inherits the store's own mapping (this test's writer), not ours.
            assert child.read() == b"1"
        os.waitpid(pid, 0)
    finally:
        revocation.forget()
    assert len(_writable_mappings_of_the_region(os.getpid())) == 1


def test_the_successor_skips_the_wait_only_for_the_revoked_owner(tmp_path: Path) -> None:
    owner = Generation(str(tmp_path / "store.sock.shm"))
    owner.claim(time.monotonic_ns())  # a heartbeat just now: a full wait for anyone else
    successor = Generation(str(tmp_path / "store.sock.shm"))
    assert successor.wait_for_previous(os.getpid()) == 0.0
    assert successor.wait_for_previous(os.getpid() + 1) > 0.0
    assert successor.wait_for_previous() > 0.0
    owner.release()


def test_the_channel_carries_go_and_the_region(region: RegionWriter) -> None:
    ours, theirs = channel_pair()
    channel = StoreChannel(ours)
    lifeline_r, lifeline_w = os.pipe()
    try:
        assert channel.go(4242)
        assert wait_for_go(theirs, lifeline_r) == (4242, None)
        # The store waits for the supervisor to have mapped its page (then it seals).
        handed: list[bool] = []
        store = threading.Thread(
            target=lambda: handed.append(hand_over_region(theirs, region.owner_fd))
        )
        store.start()
        deadline = time.monotonic() + 30
        while store.is_alive() and time.monotonic() < deadline:
            channel.receive()
            store.join(0.01)
        assert handed == [True]
        region.seal()
        theirs.close()  # the store exits
        view = RegionReader(*region.fds, 0)
        region.publish(b"k", b"v", 0, 0)
        assert view.get(b"k") == b"v"
        assert channel.revoke() and channel.revoked and channel.eof
        assert view.get(b"k") is FALLBACK
        view.close()
    finally:
        channel.close()
        for fd in (lifeline_r, lifeline_w):
            os.close(fd)


def test_a_store_stops_waiting_for_a_silent_supervisor(region: RegionWriter) -> None:
    ours, theirs = channel_pair()
    with ours, theirs:
        assert hand_over_region(theirs, region.owner_fd, timeout=0.2) is False


def test_a_store_never_binds_without_go() -> None:
    lifeline_r, lifeline_w = os.pipe()
    try:
        # Not a GO message: ignored; then the supervisor lets the standby go (closes its end).
        ours, theirs = channel_pair()
        with ours, theirs:
            ours.send(b"hello")
            ours.close()
            assert wait_for_go(theirs, lifeline_r) is None
        # The supervisor stops (or died): its lifeline end is closed.
        ours, theirs = channel_pair()
        with ours, theirs:
            os.close(lifeline_w)
            assert wait_for_go(theirs, lifeline_r) is None
    finally:
        os.close(lifeline_r)


def test_a_channel_without_a_region_revokes_nothing() -> None:
    ours, theirs = channel_pair()
    channel = StoreChannel(ours)
    theirs.send(b"RGN\0")  # a region message with no descriptor
    theirs.close()
    assert not channel.revoke()
    channel.close()
    assert not channel.go(1)
