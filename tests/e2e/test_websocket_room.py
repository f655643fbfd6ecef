"""The example app's WebSocket room under gunicorn with 4 uvicorn workers: a message sent on a
socket that one worker holds reaches the sockets every other worker holds."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from harness.gunicorn import gunicorn
from harness.processes import REPO

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

CONFIG = str(REPO / "examples" / "fastapi_app" / "gunicorn.conf.py")
WORKERS = 4
#: Sockets opened at most while looking for one on every worker.
MAX_SOCKETS = 80
TIMEOUT = 10.0


def receive(socket: ClientConnection) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(socket.recv(timeout=TIMEOUT))
    return body


def test_a_message_reaches_the_sockets_of_every_worker(tmp_path: Path) -> None:
    with (
        gunicorn(
            ["-c", CONFIG, "--workers", str(WORKERS)], tmp_path, ready_path="/stats"
        ) as server,
        ExitStack() as sockets,
    ):
        url = f"ws://127.0.0.1:{server.port}/rooms/lobby"
        by_worker: dict[int, list[ClientConnection]] = {}
        deadline = time.monotonic() + 60
        # The kernel hands each new connection to whichever worker accepts first: open sockets
        # until every worker holds some.
        opened = 0
        while len(by_worker) < WORKERS and opened < MAX_SOCKETS:
            assert time.monotonic() < deadline, f"only workers {sorted(by_worker)} accepted"
            socket = sockets.enter_context(connect(url, open_timeout=TIMEOUT))
            opened += 1
            joined = receive(socket)
            assert joined["joined"] == "lobby"
            by_worker.setdefault(joined["pid"], []).append(socket)
        assert len(by_worker) >= 2, "every socket landed on one worker"
        sender_pid, (sender, *_) = next(iter(by_worker.items()))
        sender.send("hello from one worker")
        expected = {"text": "hello from one worker", "pid": sender_pid}
        for members in by_worker.values():
            for socket in members:
                assert receive(socket) == expected
        # And back: a socket on another worker answers, and the first one hears it.
        other_pid, (other, *_) = list(by_worker.items())[-1]
        other.send("hello back")
        assert receive(sender) == {"text": "hello back", "pid": other_pid}
