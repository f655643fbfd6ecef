"""The short slice of the abuse suite (``python -m bench.abuse --quick``) against live stores.

Only outcomes are asserted (memory bound, crashes, hangs, internal errors, sentinel, refusal);
the latency figures are printed, never judged here.
"""

from __future__ import annotations

import pytest

from bench.abuse.__main__ import QUICK, main
from bench.abuse.fuzz import Generator, replies_whatever_the_split

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@pytest.mark.parametrize("scenario", sorted(QUICK))
def test_quick_abuse_scenario_passes(scenario: str) -> None:
    report = QUICK[scenario]()
    print("\n".join(report.lines()))  # type: ignore[attr-defined]
    assert report.ok, report  # type: ignore[attr-defined]


def test_memory_scenario_runs_only_the_attacks_chosen() -> None:
    report = QUICK["memory"](attacks=["preauth"])
    assert report.ok, report  # type: ignore[attr-defined]
    started = report.attacks  # type: ignore[attr-defined]
    assert started["preauth"] >= 100
    assert started["slow"] == started["partial"] == started["garbage"] == 0


def test_unknown_attack_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["memory", "--attacks", "slow,flood"])
    assert exit_info.value.code == 2
    assert "unknown attack(s): flood" in capsys.readouterr().err


def test_split_check_accepts_text_and_generated_pipelines() -> None:
    # The in-process split check compares byte for byte: a pipeline answered whole must be
    # answered the same when cut anywhere (here: a text SET then GET, and a RESP pipeline).
    assert replies_whatever_the_split(b"SET k some value\nGET k\nDEL k\n") is None
    generator = Generator(7, b"sentinel")
    _, inputs = generator.session(5)
    assert replies_whatever_the_split(b"".join(inputs)) is None
