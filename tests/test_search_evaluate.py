"""Search-mode QA scoring and calibration fitting, on a scripted engine."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from safework.search.deliberative import SearchConfig
from safework.search.evaluate import (
    QAResult,
    answer_closed_book,
    answer_with_search,
    calibrate,
    summarize,
)

from .fakes import SEARCH_DOCS, BagOfWordsEncoder, FakeSearchBackend, ScriptEngine

CONFIG = SearchConfig(prior_check=False, retrieve_first=False)


@dataclass(frozen=True)
class Q:
    question: str
    answer: str

    def is_correct(self, prediction: str) -> bool:
        return prediction.strip() == self.answer


def overconfident() -> ScriptEngine:
    """Always answers 74 with confidence 9: right on half the questions below."""
    return ScriptEngine(["<answer>74</answer><confidence>9</confidence>"])


QUESTIONS = [Q(f"question {i} about tungsten", "74" if i % 2 else "2") for i in range(24)]


async def test_search_answers_are_scored_with_their_confidence() -> None:
    results = await answer_with_search(
        overconfident(), FakeSearchBackend(SEARCH_DOCS), BagOfWordsEncoder(), QUESTIONS[:4], CONFIG
    )
    assert [r.correct for r in results] == [False, True, False, True]
    assert {r.confidence for r in results} == {0.9}
    summary = summarize(results)
    assert summary["accuracy"] == 0.5
    assert summary["ece_raw"] == pytest.approx(0.4)
    assert summary["sources"] == {"stated": 4}
    assert summary["auroc"] == 0.5  # the same 0.9 on every answer tells nothing


def test_the_summary_measures_how_well_the_final_confidence_separates() -> None:
    """AUROC of the number the user sees: the calibrated one where a map gave it."""
    results = [
        QAResult(QUESTIONS[0], "74", True, 0.9, "stated", calibrated=0.8),
        QAResult(QUESTIONS[1], "74", True, 0.9, "stated", calibrated=0.7),
        QAResult(QUESTIONS[2], "3", False, 0.9, "stated", calibrated=0.2),
    ]
    assert summarize(results)["auroc"] == 1.0
    all_right = summarize(results[:2])
    assert "auroc" in all_right
    assert all_right["auroc"] is None


def test_answers_without_a_confidence_source_are_counted_and_the_summary_writes_as_json() -> None:
    """An answer that states no confidence has no source; the summary still writes with
    sorted keys (the eval report does), counting it under "none"."""
    results = [
        QAResult(QUESTIONS[1], "74", True, 0.9, "stated"),
        QAResult(QUESTIONS[0], "", False, None, None),
        QAResult(QUESTIONS[2], "74", False, 0.4, "logprob"),
    ]
    summary = summarize(results)
    assert summary["sources"] == {"logprob": 1, "none": 1, "stated": 1}
    assert json.loads(json.dumps(summary, sort_keys=True))["sources"]["none"] == 1


async def test_closed_book_uses_the_answer_token_probability() -> None:
    engine = ScriptEngine(["74\nbecause"])
    results = await answer_closed_book(engine, QUESTIONS[:2])
    assert [r.prediction for r in results] == ["74", "74"]
    assert results[0].confidence == pytest.approx(0.9048, abs=1e-3)  # exp(-0.1)
    assert "<search>" not in engine.seen[0]
    # a reasoning model: the answer after its reasoning, not the reasoning's first line
    engine = ScriptEngine(["<think>\nIt is heavy.\n</think>\n\n74\nbecause"])
    assert [r.prediction for r in await answer_closed_book(engine, QUESTIONS[:1])] == ["74"]


async def test_calibration_fitted_on_dev_lowers_the_held_out_error() -> None:
    calibration, report = await calibrate(
        overconfident(),
        FakeSearchBackend(SEARCH_DOCS),
        BagOfWordsEncoder(),
        QUESTIONS[:12],
        QUESTIONS[12:],
        CONFIG,
    )
    assert sorted(calibration.maps) == ["stated"]
    assert report["test"]["ece_raw"] == pytest.approx(0.4)
    assert report["test"]["ece_calibrated"] < 0.05
    # 12 answers at ~0.5: a calibrated model would show about 0.11 by chance alone
    floor = report["test"]["ece_calibrated_floor"]
    assert 0.05 < floor["mean"] < floor["p95"] < 0.35
    assert calibration.calibrate("stated", 0.9) == pytest.approx(0.5, abs=0.05)
    assert calibration.info["test_n"] == 12
