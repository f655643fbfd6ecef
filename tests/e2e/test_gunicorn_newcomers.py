"""What a newcomer tries first, under real gunicorn masters: ``@cache.cached`` on a Flask
module-level function, and a near miss of the config module's name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from harness.gunicorn import CONF, Gunicorn, gunicorn, wait_until

pytestmark = pytest.mark.slow


def test_flask_cached_decorator_at_module_level_shares_one_result(tmp_path: Path):
    with (
        gunicorn([*CONF, "-w", "2", "flask_cached_app:app"], tmp_path) as server,
        httpx.Client(base_url=server.url, headers={"connection": "close"}, timeout=10.0) as http,
    ):
        # Until both workers answered (the second may still be booting when the first does).
        computations: dict[int, set[int]] = {}

        def both_workers_answered() -> bool:
            body = http.get("/report/2024").json()
            computations.setdefault(body["pid"], set()).add(body["computation"])
            return len(computations) == 2

        assert wait_until(both_workers_answered, 60.0), (computations, server.log())
        # Two workers served it, one computation: the result is cached in the store.
        assert list(computations.values()) == [{1}, {1}], server.log()
        assert http.delete("/report/2024").json()["dropped"] is True
        assert http.get("/report/2024").json()["computation"] == 2
        assert "Working outside of application context" not in server.log()


@pytest.mark.parametrize(
    "module", ["blinkstore_gunicorn", "blinkstore_gunicorn.config", "blinkstore_gunicorn.gunicorn"]
)
def test_a_near_miss_of_the_config_module_stops_gunicorn_naming_the_right_one(
    tmp_path: Path, module: str
):
    # gunicorn would load any of them as a config with no setting in it, start without a
    # store, and fail at the first request with KeyError: 'blinkstore.cache'. The package's
    # subpackage ``protocol`` stopped it instead with "Not a string: <module ...>".
    server = Gunicorn(["-c", f"python:{module}", "wsgi_app:app"], tmp_path)
    try:
        server.start(wait=False)
        assert server.process is not None
        assert server.process.wait(60) != 0, server.log()
        assert "Error: blinkstore: " in server.log()
        assert "use -c python:blinkstore_gunicorn.conf" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.close()
