"""Linguistic calibration: wording bands, the classifier, and the loop's worded answers."""

from __future__ import annotations

from typing import Any

import pytest

from safework.engine.base import SamplingConfig
from safework.search.calibration import Calibration, CalibrationMap
from safework.search.deliberative import SearchConfig
from safework.search.evaluate import QAResult, answer_with_search, summarize
from safework.search.verbal import (
    CONFIDENT_AT,
    CUES,
    LIKELY_AT,
    WORDINGS,
    classify,
    phrase,
    verbalize,
    wording_for,
)

from .fakes import SEARCH_DOCS, BagOfWordsEncoder, FakeSearchBackend, ScriptEngine
from .test_deliberative import answer_event, run, start, text_of

# Each band in words a writer (or a model) might use, none of them the module's own phrases.
PHRASINGS = {
    "confident": [
        "I am sure the answer is 74.",
        "I'm certain: it is helium.",
        "It is definitely 1869.",
        "Without doubt, the symbol is W.",
        "We are fully confident in this.",
        "The entry confirms it: 41.",
    ],
    "likely": [
        "It is probably 74.",
        "The source indicates 1869, though I'm not entirely certain.",
        "I think the answer is Paris.",
        "It appears to be niobium.",
        "Most likely 41.",
        "The sources point to Marie Curie.",
    ],
    "unverified": [
        "I'm not sure about this.",
        "I couldn't confirm it anywhere.",
        "I was not able to verify the year.",
        "I don't know; my best guess is 12.",
        "That seems unlikely to be right.",
        "No reliable sources mention it, so I am not confident.",
        "I am unsure.",
    ],
}


@pytest.mark.parametrize("band", WORDINGS)
def test_each_band_is_read_from_many_phrasings(band: str) -> None:
    for text in PHRASINGS[band]:
        assert classify(text) == band, text


def test_plain_statements_state_no_confidence() -> None:
    for text in ["The atomic number of tungsten is 74.", "Paris.", "", "Result [1] gives it."]:
        assert classify(text) is None


def test_the_bands_split_the_confidence_scale() -> None:
    assert wording_for(1.0) == wording_for(CONFIDENT_AT) == "confident"
    assert wording_for(CONFIDENT_AT - 1e-6) == wording_for(LIKELY_AT) == "likely"
    assert wording_for(LIKELY_AT - 1e-6) == wording_for(0.0) == "unverified"


@pytest.mark.parametrize("band", WORDINGS)
@pytest.mark.parametrize(
    "answer", ["74", "The capital of France is Paris.", "Marie Curie", "W", "It was 1869."]
)
def test_a_worded_answer_reads_back_as_its_band_and_keeps_the_answer(
    band: str, answer: str
) -> None:
    text = phrase(band, answer)  # type: ignore[arg-type]
    assert classify(text) == band
    assert answer.rstrip(".").split()[-1] in text


def test_the_cue_sentences_read_back_as_their_band() -> None:
    for band, cue in CUES.items():
        assert classify(cue) == band


def test_no_answer_is_never_worded_as_a_guess() -> None:
    for band in WORDINGS:
        text = phrase(band, "unknown")
        assert classify(text) == "unverified"
        assert "guess" not in text


def test_verbalize_words_the_calibrated_number_and_reads_the_model() -> None:
    v = verbalize(0.9, 0.3, "Result [1] gives 74. I'm confident of this.")
    assert v is not None
    assert v.to_json() == {
        "wording": "unverified",
        "basis": "calibrated",
        "model": "confident",
        "agrees": False,
    }
    raw_only = verbalize(0.9, None, "I'm confident of this.")
    assert raw_only is not None
    assert (raw_only.basis, raw_only.agrees) == ("raw", True)
    assert verbalize(0.6, None, None).agrees is None  # type: ignore[union-attr]
    assert verbalize(None, None, "I'm sure.") is None


def stated_map(a: float, b: float) -> Calibration:
    return Calibration("fake-model", {"stated": CalibrationMap("platt", {"a": a, "b": b})})


async def worded(engine: ScriptEngine, calibration: Calibration | None) -> dict[str, Any]:
    session, ids = await start(engine, calibration=calibration, verbal_confidence=True)
    outs = [o async for o in session(engine, ids, SamplingConfig(max_tokens=200), "r")]
    event = answer_event(outs)
    return {
        "content": text_of(outs).split("</think>")[-1].strip(),
        "event": event,
        "summary": session.summary(),
    }


SURE = "Result [1] states 74. I'm confident of this.\n<answer>74</answer><confidence>9</confidence>"


async def test_the_answer_is_worded_by_its_calibrated_confidence_not_the_stated_one() -> None:
    # A map that says a stated 9 is right a quarter of the time: the words follow the map.
    out = await worded(ScriptEngine([SURE]), stated_map(1.0, -3.3))
    assert out["event"]["confidence"]["calibrated"] < LIKELY_AT
    assert out["content"] == "I could not verify this. My best guess: 74"
    assert out["event"]["answer"] == "74"  # the bare answer stays in the event
    assert out["event"]["wording"] == {
        "wording": "unverified",
        "basis": "calibrated",
        "model": "confident",
        "agrees": False,
    }
    assert out["summary"]["wording"] == out["event"]["wording"]
    assert out["summary"]["answer"] == "74"


async def test_a_model_whose_words_match_its_calibrated_number_agrees() -> None:
    out = await worded(ScriptEngine([SURE]), stated_map(1.0, 1.0))
    assert out["event"]["confidence"]["calibrated"] >= CONFIDENT_AT
    assert out["content"] == "I'm confident: 74"
    assert out["event"]["wording"]["agrees"] is True


async def test_without_a_calibration_the_raw_confidence_is_worded() -> None:
    engine = ScriptEngine(["<answer>74</answer><confidence>6</confidence>"])
    out = await worded(engine, None)
    assert out["content"] == "The sources suggest 74, but I am not certain."
    assert out["event"]["wording"] == {
        "wording": "likely",
        "basis": "raw",
        "model": None,
        "agrees": None,
    }


async def test_the_fallback_answer_is_worded_and_has_no_model_wording() -> None:
    engine = ScriptEngine(["I am not sure what to do."], routes={"Answer the question": "74"})
    out = await worded(engine, None)
    assert out["event"]["protocol"] == "fallback"
    assert out["event"]["confidence"]["source"] == "logprob"
    assert out["event"]["wording"]["model"] is None  # its words before any answer are not its
    assert classify(out["content"]) == out["event"]["wording"]["wording"]


async def test_wording_is_off_by_default() -> None:
    _, outs = await run(ScriptEngine([SURE]))
    assert "wording" not in answer_event(outs)
    assert text_of(outs).split("</think>")[-1].strip() == "74"


def result(correct: bool, calibrated: float, wording: str, model: str | None) -> QAResult:
    return QAResult(None, "x", correct, 0.9, "stated", calibrated, 0.0, "model", wording, model)  # type: ignore[arg-type]


def test_the_summary_counts_each_band_and_the_models_agreement() -> None:
    rows = [
        result(True, 0.9, "confident", "confident"),
        result(True, 0.85, "confident", "likely"),
        result(False, 0.82, "confident", None),
        result(False, 0.3, "unverified", "unverified"),
    ]
    summary = summarize(rows)
    assert summary["wording"] == {
        "n": 4,
        "bands": {
            "confident": {"n": 3, "correct": 2, "accuracy": 0.6667},
            "unverified": {"n": 1, "correct": 0, "accuracy": 0.0},
        },
        "model_worded": 3,
        "model_agrees": 2,
        "model_agreement": 0.6667,
    }
    assert summary["confidently_wrong"] == 1
    assert summary["confidently_wrong_rate"] == 0.25
    assert summary["protocol_model"] == 4


async def test_search_evaluation_reports_the_wording_of_each_answer() -> None:
    class Q:
        question = "What is the atomic number of tungsten?"

        def is_correct(self, prediction: str) -> bool:
            return prediction == "74"

    results = await answer_with_search(
        ScriptEngine([SURE]),
        FakeSearchBackend(SEARCH_DOCS),
        BagOfWordsEncoder(),
        [Q(), Q()],
        SearchConfig(prior_check=False, verbal_confidence=True),
    )
    assert [(r.wording, r.model_wording) for r in results] == [("confident", "confident")] * 2
    assert summarize(results)["wording"]["model_agreement"] == 1.0
