"""``StoreServer`` inside a plain asyncio loop (no uvloop), as a library would embed it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from blinkstore_gunicorn.config import ConfigError, StoreSettings
from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.server import StoreServer
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from harness.processes import resp_command, short_tempdir


async def ask(path: str, request: bytes, size: int) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readexactly(size), 5)
    finally:
        writer.close()


async def reply_then_eof(path: str, request: bytes) -> bytes:
    """Everything the store sends before it closes the connection."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def run(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on the default asyncio loop, never uvloop, whatever policy is installed."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro_factory())
    finally:
        loop.close()


def test_serves_and_stops_on_plain_asyncio() -> None:
    with short_tempdir() as directory:
        path = str(directory / "s.sock")

        async def main() -> None:
            server = StoreServer(StoreSettings(unix=path, memory_limit=1 << 20))
            await server.start()
            try:
                assert server.urls == [f"unix://{path}"]
                assert server.stats.event_loop == "asyncio"
                assert await ask(path, resp_command("SET", "k", "v"), 5) == b"+OK\r\n"
                assert await ask(path, b"GET k\n", 11) == b"VALUE dg==\n"
                assert server.stats.commands_processed == 2
                assert server.stats.connections_received == 2
            finally:
                await server.stop()
            assert not os.path.exists(path)

        run(main)


def test_active_expiry_without_access() -> None:
    with short_tempdir() as directory:
        path = str(directory / "s.sock")

        async def main() -> None:
            server = StoreServer(StoreSettings(unix=path))
            await server.start()
            try:
                request = b"".join(
                    resp_command("SET", f"k{i}", "v", "PX", "50") for i in range(100)
                )
                assert await ask(path, request, 500) == b"+OK\r\n" * 100
                assert len(server.engine) == 100
                # Nobody touches the keys: the 100 ms expiry timer removes them.
                for _ in range(50):
                    await asyncio.sleep(0.05)
                    if len(server.engine) == 0:
                        break
                assert len(server.engine) == 0
                assert server.engine.stats().expirations == 100
            finally:
                await server.stop()

        run(main)


def test_start_errors_are_config_errors(tmp_path: Path) -> None:
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("keep me")

    async def main() -> None:
        server = StoreServer(StoreSettings(unix=str(not_a_socket)))
        with pytest.raises(ConfigError, match="not a socket") as info:
            await server.start()
        assert info.value.setting == "unix"

    run(main)
    assert not_a_socket.read_text() == "keep me"


class FailingEngine(MemoryEngine):
    """An engine with a bug: reading one particular key raises."""

    def get(self, key: bytes) -> bytes | None:
        if key == b"boom":
            raise RuntimeError("engine bug")
        return super().get(key)


def test_an_internal_error_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with short_tempdir() as directory:
        path = str(directory / "s.sock")

        async def main() -> None:
            server = StoreServer(StoreSettings(unix=path), engine=FailingEngine())
            await server.start()
            try:
                assert await reply_then_eof(path, resp_command("GET", "boom")) == b""
                assert await ask(path, resp_command("SET", "k", "v"), 5) == b"+OK\r\n"
                assert await reply_then_eof(path, b"GET k\nGET boom\nGET k\n") == b"VALUE dg==\n"
                assert await ask(path, resp_command("GET", "k"), 7) == b"$1\r\nv\r\n"
            finally:
                await server.stop()

        with caplog.at_level("ERROR", logger="blinkstore.server"):
            run(main)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert "closing this connection" in errors[0].getMessage()
    assert errors[0].exc_info is not None


def test_deferred_replies_keep_pipeline_order() -> None:
    """A handler may answer later (``DEFERRED`` + ``client.deliver``), as parked waiters do."""
    with short_tempdir() as directory:
        path = str(directory / "s.sock")
        waiting: list[Client] = []
        closed: list[int] = []

        def wait_handler(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
            waiting.append(c)
            c.on_close.append(lambda: closed.append(c.id))
            return DEFERRED

        async def main() -> None:
            server = StoreServer(StoreSettings(unix=path))
            server.dispatcher.full_table[b"WAIT"] = (wait_handler, 1)
            await server.start()
            try:
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(
                    resp_command("SET", "a", "1")
                    + resp_command("WAIT")
                    + resp_command("GET", "a")
                    + resp_command("PING")
                )
                assert await asyncio.wait_for(reader.readexactly(5), 5) == b"+OK\r\n"
                await asyncio.sleep(0.1)
                assert len(waiting) == 1
                # Other connections are served while this one waits.
                assert await ask(path, resp_command("SET", "a", "2"), 5) == b"+OK\r\n"
                waiting[0].deliver(b"+DONE\r\n")
                waiting[0].deliver(b"+TWICE\r\n")  # a second delivery is ignored
                expected = b"+DONE\r\n$1\r\n2\r\n+PONG\r\n"
                assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
                # The one-command fast path defers too; closing runs the close callbacks.
                writer.write(resp_command("WAIT"))
                await asyncio.sleep(0.1)
                assert len(waiting) == 2
                writer.close()
                await asyncio.sleep(0.1)
                assert closed == [waiting[0].id, waiting[0].id]
                waiting[1].deliver(b"+LATE\r\n")  # the connection is gone: ignored
            finally:
                await server.stop()

        run(main)
