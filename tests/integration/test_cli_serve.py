"""``blinkstore serve`` as a process: signals, socket files, flags, environment, exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import REPO, resp_command, short_tempdir
from tests.conftest import StoreFactory


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
    """Run ``python -m blinkstore_gunicorn ARGS`` to completion; (exit status, stderr)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("BLINKSTORE_")}
    child_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "blinkstore_gunicorn", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=child_env,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stderr + done.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(blinkstore_factory: StoreFactory, sig: signal.Signals) -> None:
    store = blinkstore_factory(tcp=True)
    assert store.unix_path is not None
    idle = store.connect()
    try:
        assert store.stop(sig) == 0  # by itself: stop() kills it after a bound (exit -9)
        assert not os.path.exists(store.unix_path)
        assert idle.recv(10) == b""  # idle connections are closed, not left hanging
    finally:
        idle.close()
    log = store.log_text()
    assert "blinkstore stopped" in log
    assert "Traceback" not in log


def test_start_line_says_where_and_how(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--memory-limit", "32MB", tcp=True)
    start = next(line for line in store.log_text().splitlines() if "listening on" in line)
    assert f"unix://{store.unix_path}" in start
    assert store.tcp_address is not None and f":{store.tcp_address[1]}" in start
    assert "memory limit 32MiB" in start
    assert f"pid {store.pid}" in start


def test_replies_in_flight_are_finished(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory()
    value = b"v" * (4 << 20)
    with store.connect() as sock:
        sock.sendall(resp_command("SET", "big", value))
        assert sock.recv(10) == b"+OK\r\n"
        sock.sendall(resp_command("GET", "big"))
        # The store has started writing the reply (into the socket buffer), not yet read.
        assert sock.recv(1, socket.MSG_PEEK) == b"$"
        store.proc.send_signal(signal.SIGTERM)
        expected = b"$%d\r\n%b\r\n" % (len(value), value)
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
        assert data == expected
    assert store.wait_exit() == 0


def test_stale_socket_file_is_replaced(blinkstore_factory: StoreFactory) -> None:
    with short_tempdir() as directory:
        path = directory / "store.sock"
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()  # the file stays, nobody listens: what a killed store leaves behind
        store = blinkstore_factory(directory=directory)
        assert store.unix_path == str(path)
        assert "removing stale socket file" in store.log_text()
        with store.connect() as sock:
            sock.sendall(b"GET k\n")
            assert sock.recv(100) == b"NOT_FOUND\n"


def test_live_socket_is_refused(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory()
    assert store.unix_path is not None
    code, output = run_cli("serve", "--unix", store.unix_path)
    assert code == 2
    assert "already served by a running store" in output
    with store.connect() as sock:  # the first store is untouched
        sock.sendall(resp_command("PING"))
        assert sock.recv(10) == b"+PONG\r\n"


def test_a_regular_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    code, output = run_cli("serve", "--unix", str(path))
    assert code == 2 and "not a socket" in output
    assert path.read_text() == "precious"


def test_tcp_port_in_use_exits_2(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory(unix=False, tcp=True)
    assert store.tcp_address is not None
    host, port = store.tcp_address
    code, output = run_cli("serve", "--tcp", f"{host}:{port}")
    assert code == 2 and "address already in use" in output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--memory-limit", "lots"],
            {},
            "--memory-limit (BLINKSTORE_MEMORY_LIMIT): invalid size 'lots'",
        ),
        ([], {"BLINKSTORE_MAX_CONNECTIONS": "0"}, "--max-connections (BLINKSTORE_MAX_CONNECTIONS)"),
        (["--log-level", "chatty"], {}, "invalid log level 'chatty'"),
        (["--tcp", "0.0.0.0:0"], {}, "without a password"),
        (["--tcp", "127.0.0.1:http"], {}, "invalid port 'http'"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["--unix", ""], {}, "empty socket path"),
    ],
)
def test_bad_settings_exit_2_with_a_message(
    args: list[str], env: dict[str, str], message: str
) -> None:
    code, output = run_cli("serve", *args, env=env)
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output


def test_env_vars_apply_and_flags_win(blinkstore_factory: StoreFactory) -> None:
    env = {"BLINKSTORE_MEMORY_LIMIT": "1MB", "BLINKSTORE_MAX_CONNECTIONS": "7"}
    store = blinkstore_factory("--max-connections", "9", env=env)
    with store.connect() as sock:
        sock.sendall(resp_command("CONFIG", "GET", "max*"))
        reply = sock.recv(4096)
    assert b"$9\r\nmaxmemory\r\n$7\r\n1048576\r\n" in reply
    assert b"$10\r\nmaxclients\r\n$1\r\n9\r\n" in reply


def test_env_var_alone_picks_the_socket(blinkstore_factory: StoreFactory) -> None:
    with short_tempdir() as directory:
        path = directory / "env.sock"
        store = blinkstore_factory(
            unix=False, directory=directory, env={"BLINKSTORE_UNIX": str(path)}
        )
        assert store.urls == [f"unix://{path}"]


def test_a_misspelled_variable_is_reported_with_the_closest_name(
    blinkstore_factory: StoreFactory,
) -> None:
    env = {"BLINKSTORE_MEMORYLIMIT": "1GB", "BLINKSTORE_URL": "unix:///elsewhere.sock"}
    store = blinkstore_factory(env=env)
    log = store.log_text()
    assert (
        "blinkstore serve: warning: BLINKSTORE_MEMORYLIMIT is not a blinkstore setting and is "
        "ignored (did you mean BLINKSTORE_MEMORY_LIMIT?)" in log
    )
    # BLINKSTORE_URL is read by the clients: known, so not reported.
    assert "BLINKSTORE_URL" not in log


def test_version_and_help() -> None:
    from blinkstore_gunicorn import __version__

    code, output = run_cli("--version")
    assert code == 0 and output.strip() == f"blinkstore {__version__}"
    code, output = run_cli("serve", "--help")
    assert code == 0
    for flag in ("--unix", "--tcp", "--memory-limit", "--max-value-size", "--max-connections"):
        assert flag in output
    assert "BLINKSTORE_MEMORY_LIMIT" in output
    code, output = run_cli()
    assert code == 2 and "serve" in output


def test_console_script_is_the_same_command() -> None:
    script = shutil.which("blinkstore", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the package is not installed with its console script")
    done = subprocess.run(
        [script, "--version"], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.startswith("blinkstore ")
