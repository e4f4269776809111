"""Stage effects: Wilson and Newcombe intervals against known values, and the comparison."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from safework.training.effects import counts, effects, markdown, newcombe, wilson


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605.
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson(10, 10)[1] == pytest.approx(1.0, abs=1e-12)


def test_newcombe_matches_published_values() -> None:
    # Newcombe (1998), Table II, method 10: 56/70 - 48/80 -> 0.0524-0.3339.
    assert newcombe(48, 80, 56, 70) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    # 9/10 - 3/10 -> 0.1705-0.8090.
    assert newcombe(3, 10, 9, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = random.Random(0)
    covered, trials = 0, 2000
    for _ in range(trials):
        k1 = sum(rng.random() < 0.3 for _ in range(40))
        k2 = sum(rng.random() < 0.45 for _ in range(40))
        lo, hi = newcombe(k1, 40, k2, 40)
        covered += lo <= 0.15 <= hi
    assert 0.93 <= covered / trials <= 0.985


def report(unsafe: int, capability: int, search: dict | None = None) -> dict:
    metrics: dict = {
        "safety": {"unsafe_rate": {"overall": {"combined": {"rate": 0, "k": unsafe, "n": 80}}}},
        "capability": {"accuracy": {"rate": 0, "k": capability, "n": 200}},
        "calibration": search or {"skipped": "no search_backend configured"},
    }
    return metrics


def test_effects_say_which_way_is_better_and_when_it_is_clear() -> None:
    before = report(30, 60, {"n": 40, "correct": 20, "protocol_model": 0})
    after = report(10, 66, {"n": 40, "correct": 22, "protocol_model": 36})
    rows = {e.metric: e for e in effects(before, after)}
    assert rows["unsafe, harmful + jailbreak"].verdict == "better"  # 30/80 -> 10/80, down
    assert rows["capability levels"].verdict == "no clear change"  # 60 -> 66 of 200
    assert rows["search protocol followed"].verdict == "better"
    assert rows["search accuracy"].after == (22, 40)
    assert "search confidently wrong" not in rows  # neither report has it
    assert effects(after, before)[0].verdict == "worse"
    table = markdown(list(rows.values()), "base", "sft")
    assert "| unsafe, harmful + jailbreak | 30/80 | 10/80 | -25.0 |" in table


def test_effects_command_compares_saved_reports_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safework.training.cli import main

    paths = []
    for label, metrics in (
        ("base", report(30, 60)),
        ("sft", report(10, 66)),
        ("m3rl", report(12, 90)),
    ):
        (tmp_path / label).mkdir()
        (tmp_path / label / "report.json").write_text(
            json.dumps({"label": label, "metrics": metrics})
        )
        paths.append(tmp_path / label)
    # a folder or the report file itself
    assert main(["effects", str(paths[0]), str(paths[1] / "report.json"), str(paths[2])]) == 0
    out = capsys.readouterr().out
    assert out.index("## base -> sft") < out.index("## sft -> m3rl")
    assert "| capability levels | 66/200 | 90/200 | +12.0 |" in out
    assert main(["effects", "--json", *map(str, paths)]) == 0
    steps = json.loads(capsys.readouterr().out)
    assert [(s["before"], s["after"]) for s in steps] == [("base", "sft"), ("sft", "m3rl")]
    assert steps[0]["effects"][0]["verdict"] == "better"
    # one report, a missing one, or a file that is not a report: a clear error, exit 1
    assert main(["effects", str(paths[0])]) == 1
    assert main(["effects", str(paths[0]), str(tmp_path / "nope")]) == 1
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert main(["effects", str(paths[0]), str(tmp_path / "junk.json")]) == 1
    err = capsys.readouterr().err
    for message in ("two or more", "no such eval report", "not an eval report"):
        assert message in err


def test_a_skipped_group_has_no_counts() -> None:
    assert counts(report(1, 1), ("calibration", "correct")) is None
    assert (
        counts(
            {"capability": {"accuracy": {"rate": None, "k": 0, "n": 0}}}, ("capability", "accuracy")
        )
        is None
    )
