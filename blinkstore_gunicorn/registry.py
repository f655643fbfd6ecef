"""The running stores of one user on one host, so that ``blinkstore stats`` finds them.

Every ``blinkstore serve`` process (also the ones gunicorn and ``blinkstore run`` start) writes
one small JSON file, ``<pid>.json``, into a per-user directory once it listens, and removes it
when it stops. A store killed with SIGKILL leaves its file behind: readers skip entries whose
process is gone (the pid and its start time must both match) and delete them.

The directory is ``$BLINKSTORE_REGISTRY_DIR`` or ``/tmp/blinkstore-stores-<uid>`` (one fixed
place, like tmux's ``/tmp/tmux-<uid>``, so a shell finds a store started by a service without
a shared ``XDG_RUNTIME_DIR``). It is created with mode 0700 and used only while it is a real
directory owned by this user that nobody else can enter; files are 0600. An entry holds the
store's password (if any) so that the same user's CLI can authenticate: nobody else can read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "REGISTRY_ENV",
    "RegistryError",
    "StoreEntry",
    "register",
    "registry_dir",
    "running_stores",
    "unregister",
]

#: Overrides the registry directory (tests, or containers sharing one with a sidecar).
REGISTRY_ENV = "BLINKSTORE_REGISTRY_DIR"
#: Ancestors recorded per store: the gunicorn master or ``blinkstore run``, then a shell.
_ANCESTORS = 3


class RegistryError(OSError):
    """The registry directory is unusable or unsafe (someone else's, a symlink, group access)."""


@dataclass(frozen=True)
class StoreEntry:
    """One running store as its registry file describes it."""

    pid: int
    urls: list[str]
    started: float
    process_start: str = ""
    ancestors: list[int] = field(default_factory=list)
    cwd: str = ""
    password: str | None = None

    @property
    def url(self) -> str:
        """Where the store listens (its Unix socket if it has one), without the password."""
        return next((u for u in self.urls if u.startswith("unix://")), self.urls[0])

    @property
    def client_url(self) -> str:
        """:attr:`url` with the password, as clients need it."""
        if self.password is None:
            return self.url
        return f"{self.url}?password={quote(self.password, safe='')}"

    def matches(self, pid: int) -> bool:
        """Whether ``pid`` is this store or one of the processes that started it."""
        return pid == self.pid or pid in self.ancestors


def registry_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$BLINKSTORE_REGISTRY_DIR`` or ``/tmp/blinkstore-stores-<uid>``."""
    env = os.environ if environ is None else environ
    return Path(env.get(REGISTRY_ENV) or f"/tmp/blinkstore-stores-{os.geteuid()}")


def _check_dir(directory: Path) -> None:
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise RegistryError(f"cannot use {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RegistryError(f"{directory} is not a directory (a symlink or a file); not using it")
    if st.st_uid != os.geteuid():
        raise RegistryError(f"{directory} belongs to uid {st.st_uid}, not to us; not using it")
    if st.st_mode & 0o077:
        raise RegistryError(
            f"{directory} has mode {stat.S_IMODE(st.st_mode):04o}, open to other users; "
            "not using it (chmod 700 it)"
        )


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read().decode("ascii", "replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where /proc is missing)."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def _ancestors(pid: int) -> list[int]:
    found: list[int] = []
    while len(found) < _ANCESTORS:
        fields = _proc_stat(pid)
        if not fields or len(fields) < 2:
            break
        pid = int(fields[1])
        if pid <= 1:
            break
        found.append(pid)
    return found


def _is_running(entry: StoreEntry) -> bool:
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A recycled pid has another start time.
    return not entry.process_start or _process_start(entry.pid) == entry.process_start


def register(
    urls: Sequence[str], password: str | None = None, *, directory: Path | None = None
) -> Path:
    """Write this process's entry (raises :class:`RegistryError` when the directory is unsafe).

    Returns the entry's path, for :func:`unregister`.
    """
    directory = directory or registry_dir()
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    _check_dir(directory)
    pid = os.getpid()
    entry = StoreEntry(
        pid=pid,
        urls=list(urls),
        started=time.time(),
        process_start=_process_start(pid),
        ancestors=_ancestors(pid),
        cwd=os.getcwd(),
        password=password,
    )
    path = directory / f"{pid}.json"
    temporary = directory / f".{pid}.json.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(entry), file)
    # Readers see a whole entry or none.
    os.replace(temporary, path)
    running_stores(directory)  # drops the entries of stores killed before they could
    return path


def unregister(path: Path) -> None:
    """Remove an entry written by :func:`register` (no error when it is gone already)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _load(path: Path) -> StoreEntry | None:
    try:
        with open(path, encoding="utf-8") as file:
            raw = json.load(file)
        return StoreEntry(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        # Not ours or damaged: an entry that cannot be read cannot be used either.
        return None


def running_stores(directory: Path | None = None) -> list[StoreEntry]:
    """The live stores, oldest first; entries of dead stores are removed on the way.

    An absent directory means no stores; an unsafe one raises :class:`RegistryError`.
    """
    directory = directory or registry_dir()
    if not os.path.lexists(directory):
        return []
    _check_dir(directory)
    stores = []
    for path in directory.glob("*.json"):
        entry = _load(path)
        if entry is None or not entry.urls:
            continue
        if _is_running(entry):
            stores.append(entry)
        else:
            unregister(path)
    return sorted(stores, key=lambda entry: entry.started)
