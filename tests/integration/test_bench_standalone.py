"""``bench/`` stands on its own: every benchmark module imports and answers ``--help`` in a
fresh interpreter where neither pytest nor the ``tests`` package can be imported, as on a
machine that has the benchmarks' dependencies but not the test tools."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import REPO

BENCH_MODULES = sorted(module.name for module in pkgutil.iter_modules([str(REPO / "bench")]))
_NO_COMMAND_LINE = {"bare_uvloop", "transport"}

# A None entry in sys.modules makes every later `import` of that name fail, however indirect.
# Modules with a command line get `--help` (argparse prints it and exits 0); the others
# (bench.bare_uvloop, a server started by bench.store; bench.transport, a class two benchmarks
# share) are only imported.
_WITHOUT_TESTS = """
import importlib, sys
for name in ("pytest", "_pytest", "tests"):
    sys.modules[name] = None
module = importlib.import_module("bench." + sys.argv[1])
if hasattr(module, "__path__"):  # a package (bench.abuse): its command line is its __main__
    module = importlib.import_module(module.__name__ + ".__main__")
main = getattr(module, "main", None)
if main is not None:
    try:
        main(["--help"])
    except SystemExit as exit:
        sys.exit(exit.code)
    sys.exit("main(['--help']) returned instead of exiting")
"""


def _run_without_tests(
    module: str, cwd: Path, path: str = str(REPO)
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_TESTS, module],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_suite_of_python_m_bench_is_a_module_here() -> None:
    from bench.__main__ import SUITES

    assert set(SUITES) <= set(BENCH_MODULES)


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_bench_module_runs_without_pytest_or_tests(module: str, tmp_path: Path) -> None:
    result = _run_without_tests(module, tmp_path)
    assert result.returncode == 0, result.stderr
    if module not in _NO_COMMAND_LINE:
        assert "usage:" in result.stdout, result.stdout


def test_the_check_fails_for_a_module_that_imports_tests(tmp_path: Path) -> None:
    # The blocking itself works: a module importing from tests/ is caught, not skipped.
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "leaky.py").write_text("import tests.support.processes\n")
    result = _run_without_tests("leaky", tmp_path, path=f"{tmp_path}{os.pathsep}{REPO}")
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr or "ImportError" in result.stderr
