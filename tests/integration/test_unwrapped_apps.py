"""An app that reads the cache from the request, served by a real server that does not wrap it:
the error is the server's own (no code of ours runs in that request), so the docs must name it
exactly as it is printed, and their fix must work under that same server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import Gunicorn, free_port, wait_until
from harness.processes import REPO

from .integration_support import process_output, running_process, wait_http

pytestmark = pytest.mark.slow

#: The page that explains these errors.
DOC = REPO / "docs" / "frameworks" / "wsgi-asgi.md"
APPS = "tests.integration.unwrapped_apps"


def error_line(output: str, kind: str) -> str | None:
    """The last ``Kind: message`` line of a traceback in ``output``."""
    found = re.findall(rf"^{kind}: .*$", output, re.MULTILINE)
    return found[-1] if found else None


def uvicorn(app: str, port: int) -> list[str]:
    return ["-m", "uvicorn", f"{APPS}:{app}", "--port", str(port)]


def test_request_state_cache_under_bare_uvicorn_fails_as_the_docs_say() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_process(uvicorn("starlette_app", port)) as proc:
        wait_http(base + "/ready", proc=proc)
        assert httpx.get(base + "/hit").status_code == 500
        assert wait_until(lambda: error_line(process_output(proc), "AttributeError"), 10.0)
        error = error_line(process_output(proc), "AttributeError")
    assert error == "AttributeError: 'State' object has no attribute 'cache'"
    assert f"`{error}`" in DOC.read_text()


def test_the_documented_fix_works_under_bare_uvicorn() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_process(uvicorn("starlette_fixed", port), env={"BLINKSTORE_URL": "memory://"}):
        wait_http(base + "/ready")
        assert [httpx.get(base + "/hit").text for _ in range(2)] == ["1", "2"]


def test_environ_cache_under_plain_gunicorn_fails_as_the_docs_say(tmp_path: Path) -> None:
    args = ["--pythonpath", str(REPO), f"{APPS}:wsgi_app"]
    with Gunicorn(args, tmp_path) as server:
        server.start()
        assert httpx.get(server.url + "/hit", timeout=10.0).status_code == 500
        assert wait_until(lambda: error_line(server.log(), "KeyError"), 10.0), server.log()
        error = error_line(server.log(), "KeyError")
    assert error == "KeyError: 'blinkstore.cache'"
    assert f"`{error}`" in DOC.read_text()
