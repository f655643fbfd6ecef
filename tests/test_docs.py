"""Run the documentation's code: every ```python block right after a ``<!-- test -->`` line.

The blocks of one page run in order, in one namespace, in a fresh interpreter (pages configure
Django, define apps...), with ``BLINKSTORE_URL=memory://``. Failures point at the Markdown line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from harness.gunicorn import free_port, gunicorn, wait_until

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- test -->"
_FENCE = re.compile(r"^```python\s*$")

# Runs in the child: exec each block with its Markdown file and line in tracebacks.
_RUNNER = """
import json, sys
namespace = {"__name__": "__docs__"}
for block in json.load(sys.stdin):
    code = "\\n" * (block["line"] - 1) + block["code"]
    exec(compile(code, block["path"], "exec"), namespace)
"""


class Block(NamedTuple):
    path: str
    line: int  # 1-based line of the block's first code line
    code: str


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def snippets_in(path: Path) -> list[Block]:
    """The ``python`` blocks that follow a test marker (blank lines between are allowed)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    armed_at: int | None = None
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped == MARKER:
            armed_at = index
        elif armed_at is not None and _FENCE.match(stripped):
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            code = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(Block(str(path.relative_to(REPO)), index + 2, code))
            armed_at = None
            index = end
        elif stripped and armed_at is not None:
            raise AssertionError(
                f"{path}:{armed_at + 1}: {MARKER} must be followed by a ```python block"
            )
        index += 1
    return blocks


PAGES = [path for path in markdown_files() if path.exists() and snippets_in(path)]


def test_the_docs_have_tested_snippets() -> None:
    # Guards against a marker typo silently turning every snippet test off.
    assert sum(len(snippets_in(path)) for path in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_page_snippets_run(page: Path, tmp_path: Path) -> None:
    blocks = [block._asdict() for block in snippets_in(page)]
    env = {**os.environ, "BLINKSTORE_URL": "memory://"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        check=False,
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, f"{page.name} snippets failed:\n{result.stderr[-4000:]}"


# -- the quickstart's app.py, run as the page says ------------------------------------------


def quickstart_app() -> str:
    """The ``# app.py`` block of docs/quickstart.md."""
    text = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(# app\.py\n.*?)```", text, re.DOTALL)
    assert match is not None, "docs/quickstart.md has no ```python block starting with # app.py"
    return match.group(1)


def _hits(url: str, count: int) -> list[str]:
    return [httpx.get(url, timeout=10.0).text.split(",")[0] for _ in range(count)]


def test_quickstart_app_runs_under_flask_run_without_a_store(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(quickstart_app(), encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINKSTORE_")}
    env["PYTHONPATH"] = str(REPO)
    log_path = tmp_path / "flask.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}/"
    try:

        def answers() -> bool:
            assert server.poll() is None, log_path.read_text()
            try:
                return httpx.get(url + "health-check-404", timeout=2.0).status_code == 404
            except httpx.HTTPError:
                return False

        assert wait_until(answers, 30.0), log_path.read_text()
        assert _hits(url, 3) == ["hit number 1", "hit number 2", "hit number 3"]
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    output = log_path.read_text()
    assert output.count("BLINKSTORE_URL is not set") == 1, output


@pytest.mark.slow
def test_quickstart_app_workers_share_one_counter_under_gunicorn(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(quickstart_app(), encoding="utf-8")
    args = ["-c", "python:blinkstore_gunicorn.conf", "--workers", "2", "--pythonpath"]
    with gunicorn([*args, str(tmp_path), "app:app"], tmp_path, ready_path="/") as server:
        # The ready check counted already (more than once if a probe timed out on a loaded
        # machine), so the counter starts anywhere: each request adds one, whichever worker.
        hits = _hits(server.url + "/", 3)
        first = int(hits[0].removeprefix("hit number "))
        assert hits == [f"hit number {n}" for n in range(first, first + 3)]
        assert "BLINKSTORE_URL is not set" not in server.log()


# -- a benchmark's figures are the same wherever they are quoted -----------------------------

#: A benchmark, and the page whose paragraphs that name it hold its current figures.
QUOTED_FIGURES = {"bench.restart": "docs/gunicorn.md", "bench.memory_tax": "README.md"}
_FIGURE = re.compile(r"\b\d+(?:\.\d+)?\s(?:ms|s|MiB)\b")


def figures_near(path: Path, command: str) -> set[str]:
    """The figures (``21 ms``, ``162 MiB``) in the paragraphs of ``path`` that name ``command``."""
    paragraphs = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
    return {figure for text in paragraphs if command in text for figure in _FIGURE.findall(text)}


@pytest.mark.parametrize("command", sorted(QUOTED_FIGURES))
def test_benchmark_figures_agree_across_pages(command: str) -> None:
    # A figure re-measured on one page and left stale on another shows up here; the command
    # next to a figure is what ties it to its benchmark.
    reference = figures_near(REPO / QUOTED_FIGURES[command], command)
    assert reference, f"{QUOTED_FIGURES[command]} quotes no figure next to {command}"
    for path in markdown_files():
        stale = figures_near(path, command) - reference
        assert not stale, (
            f"{path.relative_to(REPO)} quotes {sorted(stale)} next to {command}; "
            f"{QUOTED_FIGURES[command]} has {sorted(reference)}"
        )
