"""A reader that writes into what it was handed (issue 23, item 5): the store must keep serving
the values it acknowledged, and other readers must return no wrong value, whatever a client
(or a same-uid process without the password) does with the region's descriptors.

Each attack runs in a child process that obtains the descriptors the way a client does (the
``BS.SHM`` exchange): it tries to map them writable and rewrite a value or fill every word,
to truncate them, to truncate the generation file, or to open the store's descriptors through
``/proc`` without the password. The outcome is asserted, not the defence: a refused attempt
(EPERM, EACCES) and a harmless one both pass.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.shm.reader import RegionReader
from harness.processes import StoreProcess, resp_command
from tests.conftest import StoreFactory
from tests.integration.shm_attack_support import (
    CHILD,
    NO_CAPABILITIES,
    child_answer,
    drop_capabilities,
    received_fds,
    redis_client,
    started_child,
    startup_hook,
    writable,
)
from tests.support.sockets import recv_line

pytestmark = pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)")

PASSWORD = "reader-attack"
BOUND = 10.0
VALUES = {b"price:%d" % n: b"the acknowledged value %d " % n * 20 for n in range(50)}
# Where a rewritten value would show: the first key's bytes, then its value.
TARGET = b"price:7"
# A raw socket bound (redis-py retries a request that timed out).
PING_BOUND = 5.0


def _store_with_values(factory: StoreFactory, env: dict[str, str] | None = None) -> StoreProcess:
    """A store with a password, holding VALUES."""
    store = factory("--memory-limit", "4MiB", "--password", PASSWORD, env=env)
    with redis_client(store, PASSWORD) as client:
        client.mset(VALUES)
    return store


@pytest.fixture
def store(blinkstore_factory: StoreFactory) -> StoreProcess:
    return _store_with_values(blinkstore_factory)


def _rewrite_value(mapped: mmap.mmap) -> str:
    """Overwrite the value that follows TARGET's bytes, as a hostile reader would."""
    where = mapped.find(TARGET)
    if where < 0:
        return "no value here"
    start = where + len(TARGET)
    mapped[start : start + len(VALUES[TARGET])] = b"X" * len(VALUES[TARGET])
    return "rewritten"


def _fill_random(mapped: mmap.mmap) -> str:
    """Random bytes everywhere: every slot word occupied, every header word garbage."""
    mapped[:] = os.urandom(len(mapped))
    return "filled"


def _fill_ones(mapped: mmap.mmap) -> str:
    """Every word 2**64 - 1: the largest value a counter or an offset can hold."""
    mapped[:] = b"\xff" * len(mapped)
    return "filled"


def _attack_mappings(path: str, attack: Callable[[mmap.mmap], str]) -> list[str]:
    outcomes = []
    for fd in received_fds(path, PASSWORD):
        mapped = writable(fd)
        outcomes.append(mapped if isinstance(mapped, str) else attack(mapped))
    return outcomes


def _truncate_fds(path: str) -> list[str]:
    outcomes = []
    for fd in received_fds(path, PASSWORD):
        try:
            os.ftruncate(fd, 0)
            outcomes.append("truncated")
        except OSError as exc:
            outcomes.append(f"refused: {exc!r}")
    return outcomes


def _truncate_generation_file(path: str) -> list[str]:
    """Truncate every file the store keeps next to its socket (the generation file)."""
    outcomes = []
    for name in os.listdir(os.path.dirname(path)):
        file = os.path.join(os.path.dirname(path), name)
        if file.startswith(path) and file != path and os.path.isfile(file):
            try:
                os.truncate(file, 0)
                outcomes.append(f"{name} truncated")
            except OSError as exc:
                outcomes.append(f"{name} refused: {exc!r}")
    return outcomes


def _open_through_proc(pid: int) -> list[str]:
    """A same-uid process without the password: open the store's memfds via /proc."""
    drop_capabilities()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError as exc:
        return [f"refused: {exc!r}"]
    outcomes = []
    for name in names:
        link = f"/proc/{pid}/fd/{name}"
        try:
            if not os.readlink(link).startswith("/memfd:"):
                continue
            fd = os.open(link, os.O_RDWR)
        except OSError as exc:
            outcomes.append(f"refused: {exc!r}")
            continue
        mapped = writable(fd)
        outcomes.append(mapped if isinstance(mapped, str) else _rewrite_value(mapped))
    return outcomes


def _reopen_writable(path: str) -> list[str]:
    """A hostile worker: open its read-only region descriptor again, read-write, through
    /proc/self/fd (its owner may), then map it writable and write to it."""
    outcomes = []
    for fd in received_fds(path, PASSWORD):
        if "marks" in os.readlink(f"/proc/self/fd/{fd}"):
            continue  # the marks are the reader's to write
        reopened = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        try:
            mapped = writable(reopened)
            outcomes.append(mapped if isinstance(mapped, str) else _rewrite_value(mapped))
            try:
                os.pwrite(reopened, b"\xff" * 4096, 0)
                outcomes.append("written")
            except OSError as exc:
                outcomes.append(f"refused: {exc!r}")
        finally:
            os.close(reopened)
    return outcomes


Answers = dict[bytes, bytes | str | None]


def _answers(reader: RegionReader) -> Answers:
    """A reader's answers for every key: bytes, None, or "ask" (read from the socket)."""
    found: Answers = {}
    for key in VALUES:
        value = reader.get(key)
        found[key] = value if value is None or isinstance(value, bytes) else "ask"
    return found


def _read_all(path: str) -> Answers:
    return _answers(handout.attach(path, PASSWORD, BOUND))


def _read_all_when_told(path: str, channel: Connection) -> Answers:
    """Attach and read now; read everything again when ``channel`` says so."""
    reader = handout.attach(path, PASSWORD, BOUND)
    assert reader.get(TARGET) == VALUES[TARGET]
    channel.send("attached")
    channel.recv()
    return _answers(reader)


def assert_store_serves(store: StoreProcess) -> None:
    """PING within a bound, every acknowledged value intact (or dropped), writes work."""
    with store.connect(timeout=PING_BOUND) as sock:
        sock.sendall(resp_command("AUTH", PASSWORD) + resp_command("PING"))
        assert recv_line(sock) == b"+OK\r\n"
        assert recv_line(sock) == b"+PONG\r\n", "the store answers"
    client = redis_client(store, PASSWORD)
    for key, value in zip(VALUES, client.mget(list(VALUES)), strict=True):
        assert value in (VALUES[key], None), f"GET {key!r} returned {value[:40]!r}"
    assert client.set("after", b"attack") and client.get("after") == b"attack"
    client.flushdb()
    client.set("after", b"flush")
    assert client.get("after") == b"flush"
    client.close()


def assert_no_wrong_value(found: Answers) -> None:
    for key, value in found.items():
        assert value in (VALUES[key], None, "ask"), f"a reader got {key!r} -> {value!r:.60}"


def _attack_with_a_reader_watching(
    store: StoreProcess, attack: Callable[..., object], *args: object
) -> object:
    """Run ``attack(*args)`` in a child while another reader (attached before) waits; then
    check that reader's answers, a new reader's, and the store."""
    assert store.unix_path is not None
    mine, theirs = CHILD.Pipe()
    with started_child(_read_all_when_told, store.unix_path, theirs) as watcher:
        assert mine.poll(30) and mine.recv() == "attached"
        outcome = child_answer(attack, *args, timeout=60)
        mine.send("go")
        assert watcher.poll(BOUND), "the other reader's reads did not return"
        try:
            status, found = watcher.recv()
        except EOFError:
            raise AssertionError("the other reader died") from None
        assert status == "ok", f"the other reader failed: {found}"
    assert_no_wrong_value(found)
    assert_store_serves(store)
    assert_no_wrong_value(child_answer(_read_all, store.unix_path, timeout=BOUND))
    return outcome


def test_a_reader_cannot_rewrite_a_value(store: StoreProcess) -> None:
    _attack_with_a_reader_watching(store, _attack_mappings, store.unix_path, _rewrite_value)


@pytest.mark.parametrize("fill", [_fill_random, _fill_ones], ids=["random", "ones"])
def test_a_reader_filling_every_word_cannot_stop_the_store(
    store: StoreProcess, fill: Callable[[mmap.mmap], str]
) -> None:
    _attack_with_a_reader_watching(store, _attack_mappings, store.unix_path, fill)


def test_reopening_the_region_writable_through_proc_gains_nothing(store: StoreProcess) -> None:
    outcomes = _attack_with_a_reader_watching(store, _reopen_writable, store.unix_path)
    assert isinstance(outcomes, list) and len(outcomes) == 2, outcomes
    assert all(outcome.startswith("refused") for outcome in outcomes), outcomes


def test_a_reader_cannot_truncate_the_region(store: StoreProcess) -> None:
    _attack_with_a_reader_watching(store, _truncate_fds, store.unix_path)


def test_truncating_the_generation_file_kills_nobody(store: StoreProcess) -> None:
    _attack_with_a_reader_watching(store, _truncate_generation_file, store.unix_path)


def test_a_same_uid_process_without_the_password_cannot_open_the_region(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    # Store and attacker without capabilities: as two processes of one ordinary user.
    store = _store_with_values(blinkstore_factory, startup_hook(tmp_path, NO_CAPABILITIES))
    outcome = _attack_with_a_reader_watching(store, _open_through_proc, store.pid)
    assert outcome, "the attacker saw the store's descriptors"


def _memfds_in_children_spawned_while_attaching(path: str, attaches: int) -> tuple[int, int]:
    """Attach ``attaches`` times in a thread while spawning ``ls -l /proc/self/fd`` children
    that keep inherited descriptors: ``(children spawned, children that held a memfd)``."""
    done = threading.Event()
    failed: list[BaseException] = []

    def attach_loop() -> None:
        try:
            for _ in range(attaches):
                handout.attach(path, PASSWORD, BOUND).close()
        except BaseException as exc:
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=attach_loop)
    thread.start()
    spawned = leaked = 0
    try:
        while not done.is_set():
            listing = subprocess.run(
                ["ls", "-l", "/proc/self/fd"], close_fds=False, capture_output=True, check=True
            )
            spawned += 1
            leaked += b"memfd:" in listing.stdout
    finally:
        thread.join()
    if failed:
        raise failed[0]
    return spawned, leaked


def test_received_descriptors_are_close_on_exec(store: StoreProcess) -> None:
    spawned, leaked = child_answer(
        _memfds_in_children_spawned_while_attaching, store.unix_path, 2000, timeout=120
    )
    assert spawned > 20, "children were spawned while attaching"
    assert leaked == 0, f"{leaked} of {spawned} children spawned during attaches held a memfd"
