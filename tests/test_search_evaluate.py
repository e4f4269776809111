"""Search-mode QA scoring and calibration fitting, on a scripted engine."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from safework.search.deliberative import SearchConfig
from safework.search.evaluate import (
    QAResult,
    answer_closed_book,
    answer_with_search,
    apply_calibration,
    calibrate,
    fit_calibration,
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
    # every raw confidence the answers had is fitted; both are constant here, so neither
    # separates right from wrong better, and the stated one stays the preferred
    assert sorted(calibration.maps) == ["logprob", "stated"]
    assert calibration.info["auroc"] == {"stated": 0.5, "logprob": 0.5}
    assert calibration.preferred == "stated"
    assert report["test"]["ece_raw"] == pytest.approx(0.4)
    assert report["test"]["ece_calibrated"] < 0.05
    # 12 answers at ~0.5: a calibrated model would show about 0.11 by chance alone
    floor = report["test"]["ece_calibrated_floor"]
    assert 0.05 < floor["mean"] < floor["p95"] < 0.35
    assert calibration.calibrate("stated", 0.9) == pytest.approx(0.5, abs=0.05)
    assert calibration.info["test_n"] == 12


def _answers(n: int, seed: int) -> list[QAResult]:
    """Answers stating 0.9 on every one; their answer-token probability is high on the right
    ones and low on the wrong ones (with some overlap)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        right = bool(i % 3)
        token_p = float(np.clip(rng.normal(0.85 if right else 0.55, 0.12), 0.05, 0.999))
        out.append(
            QAResult(
                QUESTIONS[i % len(QUESTIONS)],
                "74",
                right,
                0.9,
                "stated",
                candidates={"stated": 0.9, "logprob": round(token_p, 4)},
            )
        )
    return out


def test_the_calibration_prefers_the_source_that_tells_right_from_wrong() -> None:
    """A model that states 9 on every answer: its stated confidence is calibrated by a map and
    tells nothing (AUROC 0.5); its answer-token probability separates right from wrong, so
    the calibration prefers it, and held-out answers report it."""
    fitted = fit_calibration("m", _answers(60, seed=0))
    assert sorted(fitted.maps) == ["logprob", "stated"]
    assert fitted.info["auroc"]["stated"] == 0.5
    assert fitted.info["auroc"]["logprob"] > 0.8
    assert fitted.preferred == "logprob"
    held_out = _answers(60, seed=1)
    assert {r.source for r in held_out} == {"stated"}
    apply_calibration(fitted, held_out)
    assert {r.source for r in held_out} == {"logprob"}
    assert all(r.confidence == r.candidates["logprob"] for r in held_out)
    summary = summarize(held_out)
    assert summary["auroc"] > 0.8
    assert summary["sources"] == {"logprob": 60}
    # the same answers reported by their stated number tell nothing
    stated_only = _answers(60, seed=1)
    for r in stated_only:
        r.candidates = {"stated": 0.9}
    apply_calibration(fit_calibration("m", stated_only), stated_only)
    assert summarize(stated_only)["auroc"] == 0.5


def test_an_answer_without_the_preferred_source_keeps_its_own() -> None:
    fitted = fit_calibration("m", _answers(60, seed=0))
    only_stated = [QAResult(QUESTIONS[1], "74", True, 0.9, "stated")]
    apply_calibration(fitted, only_stated)
    assert only_stated[0].source == "stated"
    assert only_stated[0].calibrated == fitted.calibrate("stated", 0.9)
