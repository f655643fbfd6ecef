"""``bench/middleware.py`` stays runnable and measures what it claims: a tiny run prints a row
per kind of app with the bare and wrapped figures, and the wrapped app really is the middleware
handing the request the cache."""

from __future__ import annotations

import re

import pytest

from bench import middleware
from blinkstore_gunicorn.integrations.middleware import BlinkStoreMiddleware


def test_tiny_run_prints_every_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert middleware.main(["--requests", "200", "--runs", "1"]) == 0
    rows = {
        match.group(1).strip(): match.groups()[1:]
        for match in re.finditer(
            r"^([^\d\n]+?)\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)$", capsys.readouterr().out, re.M
        )
    }
    assert set(rows) == {"minimal ASGI app", "Starlette endpoint", "WSGI app"}


def test_the_wrapped_app_is_the_middleware_handing_out_the_cache() -> None:
    # The suite gives both apps the lifespan state, as uvicorn does; without it the bare app
    # finds no cache, and the wrapped one gets it from the middleware.
    with pytest.raises(KeyError):
        middleware._asgi_rate(middleware._bare_asgi, 1, {})
    wrapped = BlinkStoreMiddleware(middleware._bare_asgi, url="memory://")
    assert middleware._asgi_rate(wrapped, 1, {}) > 0


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        middleware.main(["--runs", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
