"""docs/frameworks/django.md, run as a reader would: a real ``django-admin startproject``, the
page's files added to it, each ``$ gunicorn ...`` command of the page run as written.

The page marks project files with a first-line comment (``# mysite/views.py``); each such block is
appended to that file, as a reader pastes it into the generated project (a later
``urlpatterns`` replaces the generated one). The only addition to the commands is a free
loopback port to bind (tests never collide on port 8000).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import gunicorn
from harness.processes import REPO

PAGE = REPO / "docs" / "frameworks" / "django.md"
_BLOCK = re.compile(r"^```(?P<language>\w+)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
_PROJECT_FILE = re.compile(r"# (?P<path>mysite/[\w/]+\.py)\n")


def fenced_blocks(language: str) -> list[str]:
    """The page's fenced code blocks in ``language``, in order."""
    return [
        match["code"]
        for match in _BLOCK.finditer(PAGE.read_text(encoding="utf-8"))
        if match["language"] == language
    ]


def project_files() -> list[tuple[str, str]]:
    """``(path, code)`` of every python block that names a project file on its first line."""
    files = []
    for code in fenced_blocks("python"):
        named = _PROJECT_FILE.match(code)
        if named:
            files.append((named["path"], code))
    return files


def gunicorn_commands() -> list[list[str]]:
    """The argv of each ``$ gunicorn ...`` line of the page's console blocks."""
    commands = []
    for block in fenced_blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ gunicorn "):
                commands.append(shlex.split(line[2:]))
    return commands


def test_the_page_has_what_this_test_runs() -> None:
    paths = [path for path, _ in project_files()]
    assert paths == ["mysite/settings.py", "mysite/views.py", "mysite/urls.py"]
    assert [argv[-1] for argv in gunicorn_commands()] == [
        "mysite.wsgi:application",
        "mysite.asgi:application",
    ]
    for argv in gunicorn_commands():
        assert argv[1:3] == ["-c", "python:blinkstore_gunicorn.conf"], argv


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("django-docs")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(root)],
        check=True,
        timeout=60,
    )
    for path, code in project_files():
        with open(root / path, "a", encoding="utf-8") as file:
            file.write("\n" + code)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv", gunicorn_commands(), ids=[argv[-1].split(":")[0] for argv in gunicorn_commands()]
)
def test_the_counter_example_runs_as_written(project: Path, argv: list[str]) -> None:
    # The harness runs ``python -m gunicorn --bind 127.0.0.1:<free port> ... <argv[1:]>``.
    with gunicorn(argv[1:], project, ready_path="/counter/") as server, httpx.Client() as client:
        replies = [client.get(server.url + "/counter/") for _ in range(30)]
        # New connections, which gunicorn hands to whichever worker accepts first.
        replies += [httpx.get(server.url + "/counter/") for _ in range(20)]
        log = server.log()
    assert [reply.status_code for reply in replies] == [200] * len(replies), log[-4000:]
    visits = [reply.json()["visits"] for reply in replies]
    # One counter for every worker: consecutive numbers, none repeated.
    assert visits == list(range(visits[0], visits[0] + len(visits))), visits
