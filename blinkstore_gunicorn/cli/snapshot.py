"""``blinkstore snapshot save | info``: the running store's snapshot file, from the shell.

``save`` asks the store for a background save (``BGSAVE``) and waits until it is written;
``info`` shows the file's path, size, keys and age and the last save's status (``INFO
persistence``). Both find the store as the other subcommands do (``--url``, ``$BLINKSTORE_URL``,
else the running store of this user). Exit status as theirs: 1 unreachable, 2 an error reply
or no snapshot configured.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import cast

from blinkstore_gunicorn.cli.discovery import store_url
from blinkstore_gunicorn.cli.ops import EXIT_UNREACHABLE, EXIT_USAGE, common_arguments
from blinkstore_gunicorn.client import CacheConfigError
from blinkstore_gunicorn.client.url import parse_url
from blinkstore_gunicorn.config import human_size
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.errors import ProtocolError

__all__ = ["register"]


class _Failed(Exception):
    """An error reply, or a store without a snapshot (the message says which)."""


class _Session:
    """One blocking RESP connection to the store (the admin commands are not cache ops)."""

    def __init__(self, url: str, timeout: float) -> None:
        parsed = parse_url(url)
        if parsed.unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = parsed.unix_path
        elif parsed.host is not None and parsed.port is not None and parsed.redis_url is None:
            self.sock = socket.socket(socket.AF_INET6 if ":" in parsed.host else socket.AF_INET)
            address = (parsed.host, parsed.port)
        else:
            raise CacheConfigError(f"{parsed.display}: snapshots are a blinkstore store's")
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.reader = resp.ReplyReader()
        if parsed.password is not None:
            self.call("AUTH", parsed.password)

    def call(self, *args: str) -> resp.Reply:
        self.sock.sendall(resp.encode_command(*args))
        while True:
            reply = self.reader.next_reply()
            if isinstance(reply, resp.ErrorReply):
                raise _Failed(reply.message)
            if isinstance(reply, ProtocolError):
                raise OSError(f"unexpected reply: {reply}")
            if reply is not resp.NEED_MORE:
                return cast("resp.Reply", reply)
            data = self.sock.recv(65536)
            if not data:
                raise OSError("the store closed the connection")
            self.reader.feed(data)

    def persistence(self) -> dict[str, str]:
        text = self.call("INFO", "persistence")
        assert isinstance(text, bytes)
        lines = text.decode().splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        if not fields.get("snapshot_path"):
            raise _Failed("this store has no snapshot file (start it with --snapshot PATH)")
        return fields


def _save(session: _Session, args: argparse.Namespace) -> int:
    saves = int(session.persistence()["rdb_saves"])
    session.call("BGSAVE")
    while True:
        fields = session.persistence()
        if fields["rdb_bgsave_in_progress"] == "0" and int(fields["rdb_saves"]) > saves:
            break
        if fields["rdb_last_bgsave_status"] != "ok" and fields["rdb_bgsave_in_progress"] == "0":
            raise _Failed("the background save failed (the store's log says why)")
        time.sleep(0.05)  # polling a save in progress; the store answers at once
    print(f"saved {fields['snapshot_keys']} keys to {fields['snapshot_path']}")
    return 0


def _info(session: _Session, args: argparse.Namespace) -> int:
    fields = session.persistence()
    size = int(fields["snapshot_bytes"])
    age = max(0, int(time.time()) - int(fields["rdb_last_save_time"]))
    rows = [
        ("path", fields["snapshot_path"]),
        ("size", human_size(size) if size >= 0 else "no file yet"),
        ("keys", fields["snapshot_keys"]),
        ("age", f"{age}s (saved or loaded at {fields['rdb_last_save_time']})"),
        ("changes since", fields["rdb_changes_since_last_save"]),
        ("saving now", "yes" if fields["rdb_bgsave_in_progress"] == "1" else "no"),
        ("last status", fields["rdb_last_bgsave_status"]),
    ]
    for name, value in rows:
        print(f"{name:<14}{value}")
    return 0


def _run(args: argparse.Namespace) -> int:
    command = f"blinkstore snapshot {args.action}"
    try:
        session = _Session(store_url(args.url, args.pid), args.timeout)
    except CacheConfigError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{command}: cannot reach the store: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return (_save if args.action == "save" else _info)(session, args)
    except _Failed as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        session.sock.close()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``snapshot save`` and ``snapshot info`` to ``blinkstore``."""
    text = "save the running store's snapshot now, or show it (path, size, keys, age)"
    parser = subparsers.add_parser("snapshot", help=text, description=text)
    parser.add_argument("action", choices=("save", "info"))
    common_arguments(parser, namespace=False)
    parser.set_defaults(handler=_run)
