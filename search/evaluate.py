"""Score question answering with exact answers: search mode against closed-book.

Used by ``safework-train calibrate`` (fit the confidence calibration), the benchmark
(``bench/search.py``) and evaluation. Each question runs through the same
``DeliberativeSearch`` the server uses, on an ``Engine`` in this process, many at a time
(the engine batches them); closed-book answers come from the plain chat prompt, greedy, with
the answer-token probability as their confidence.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm.auto import tqdm

from safework.engine.base import Engine, SamplingConfig
from safework.engine.embedder import Encoder
from safework.engine.reasoning import split_reasoning, starts_in_reasoning

from .answering import SOURCE_ORDER, pick_source
from .base import SearchBackend
from .calibration import (
    Calibration,
    CalibrationMap,
    Method,
    answer_probability,
    auroc,
    ece_floor,
)
from .calibration import expected_calibration_error as ece
from .deliberative import DeliberativeSearch, SearchConfig
from .prompts import first_line, protocol_messages
from .verbal import wording_for


class Question(Protocol):
    """A question with a known answer (``safework.search.corpus.QAItem`` is one)."""

    @property
    def question(self) -> str: ...

    def is_correct(self, prediction: str) -> bool: ...


@dataclass
class QAResult:
    item: Question
    prediction: str
    correct: bool
    confidence: float | None
    source: str | None
    calibrated: float | None = None
    seconds: float = 0.0
    protocol: str = ""
    wording: str | None = None
    """With ``verbal_confidence``: the band the answer was worded in (``verbal.py``)."""
    model_wording: str | None = None
    """... and the band the model's own words expressed, if any."""
    model_text: str = ""
    """What the model itself wrote (the loop's insertions left out), to see why it answered
    so."""
    candidates: dict[str, float] = field(default_factory=dict)
    """Every raw confidence the answer had, by source (``confidence`` is one of them)."""

    def __post_init__(self) -> None:
        if not self.candidates and self.source is not None and self.confidence is not None:
            self.candidates = {self.source: self.confidence}


async def _bounded(coros: Sequence[Any], concurrency: int, desc: str | None = None) -> list[Any]:
    """Await ``coros`` with at most ``concurrency`` in flight; a progress bar when ``desc``."""
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(coros), desc=desc, unit="question", disable=desc is None)

    async def one(coro: Any) -> Any:
        async with gate:
            result = await coro
        bar.update(1)
        return result

    try:
        return list(await asyncio.gather(*(one(c) for c in coros)))
    finally:
        bar.close()


async def answer_with_search(
    engine: Engine,
    backend: SearchBackend,
    encoder: Encoder,
    items: Sequence[Question],
    config: SearchConfig,
    *,
    calibration: Calibration | None = None,
    max_tokens: int = 512,
    concurrency: int = 8,
    progress: str | None = None,
) -> list[QAResult]:
    """Each item through the deliberative search loop, greedy; ``progress``: a bar's label."""

    async def one(i: int, item: Question) -> QAResult:
        messages = [{"role": "user", "content": item.question}]
        session = DeliberativeSearch(
            config, backend, messages, item.question, encoder, calibration=calibration
        )
        ids = await engine.tokenize(await engine.render_chat(protocol_messages(messages)))
        sampling = SamplingConfig(max_tokens=max_tokens, temperature=0.0)
        start = time.perf_counter()
        answer = await session.answer(engine, ids, sampling, f"qa-search-{i}")
        conf, wording = answer.confidence, answer.wording or {}
        return QAResult(
            item,
            answer.answer,
            item.is_correct(answer.answer),
            conf.raw,
            conf.source,
            conf.calibrated,
            time.perf_counter() - start,
            answer.protocol,
            wording.get("wording"),
            wording.get("model"),
            "".join(seg.text for seg in session.state.segments if seg.generated),
            dict(conf.candidates),
        )

    return await _bounded([one(i, item) for i, item in enumerate(items)], concurrency, progress)


async def answer_closed_book(
    engine: Engine,
    items: Sequence[Question],
    *,
    max_tokens: int = 48,
    concurrency: int = 8,
) -> list[QAResult]:
    async def one(i: int, item: Question) -> QAResult:
        prompt = await engine.render_chat([{"role": "user", "content": item.question}])
        ids = await engine.tokenize(prompt)
        sampling = SamplingConfig(max_tokens=max_tokens, temperature=0.0, logprobs=0)
        text, logprobs, start = "", [], time.perf_counter()
        async for out in engine.generate(ids, sampling, f"qa-closed-{i}"):
            for d in out.choices:
                text += d.text
                logprobs += [lp.logprob for lp in d.logprobs or []]
        # a reasoning model's answer is what follows its reasoning (none if the budget cut it)
        prediction = first_line(split_reasoning(text, starts_in_reasoning(prompt))[1])
        conf = round(answer_probability(logprobs), 4)
        return QAResult(
            item,
            prediction,
            item.is_correct(prediction),
            conf,
            "logprob",
            seconds=time.perf_counter() - start,
            protocol="closed-book",
        )

    return await _bounded([one(i, item) for i, item in enumerate(items)], concurrency)


def summarize(results: Sequence[QAResult]) -> dict[str, Any]:
    """Accuracy, ECE of the raw and (where present) calibrated confidence, AUROC of the
    final confidence (does it tell right answers from wrong ones), timings."""
    n = len(results)
    out: dict[str, Any] = {"n": n}
    if not n:
        return out
    correct = [r.correct for r in results]
    out["accuracy"] = round(sum(correct) / n, 4)
    scored = [r for r in results if r.confidence is not None]
    if scored:
        raw = [r.confidence for r in scored]
        out["mean_confidence"] = round(sum(raw) / len(raw), 4)  # type: ignore[arg-type]
        out["ece_raw"] = round(ece(raw, [r.correct for r in scored]), 4)  # type: ignore[arg-type]
    calibrated = [r for r in results if r.calibrated is not None]
    if calibrated:
        conf = [r.calibrated for r in calibrated]
        out["ece_calibrated"] = round(ece(conf, [r.correct for r in calibrated]), 4)  # type: ignore[arg-type]
        floor, floor_p95 = ece_floor(conf)  # type: ignore[arg-type]
        out["ece_calibrated_floor"] = {"mean": round(floor, 4), "p95": round(floor_p95, 4)}
    # an answer with no confidence (no answer at all, or an engine error) counts as "none",
    # so the keys stay strings and the report can be written with sorted keys
    out["sources"] = dict(sorted(Counter(r.source or "none" for r in results).items()))
    protocols = [r.protocol for r in results if r.protocol in ("model", "fallback")]
    if protocols:
        out["protocol_model"] = protocols.count("model")
        out["protocol_model_rate"] = round(protocols.count("model") / len(protocols), 4)
    confident = [r for r in results if _final_confidence(r) is not None]
    if confident:
        wrong = sum(
            _final_confidence(r) >= CONFIDENTLY_WRONG_AT and not r.correct for r in confident
        )  # type: ignore[operator]
        out["confidently_wrong"] = wrong
        out["confidently_wrong_rate"] = round(wrong / len(confident), 4)
        # does the number the user sees tell right from wrong (0.5: a constant does not)?
        separation = auroc(
            [_final_confidence(r) for r in confident], [r.correct for r in confident]
        )  # type: ignore[misc]
        out["auroc"] = None if separation is None else round(separation, 4)
    worded = wording_summary(results)
    if worded:
        out["wording"] = worded
    out["seconds_mean"] = round(sum(r.seconds for r in results) / n, 3)
    return out


CONFIDENTLY_WRONG_AT = 0.8
"""An answer this confident (calibrated, else raw) and wrong is confidently wrong."""


def _final_confidence(r: QAResult) -> float | None:
    return r.calibrated if r.calibrated is not None else r.confidence


def wording_summary(results: Sequence[QAResult]) -> dict[str, Any]:
    """Linguistic calibration of worded answers (``verbal_confidence``): per band, the
    answers and how many were right (a band's words should match its accuracy); and how
    often the model's own wording named the band of its calibrated number."""
    worded = [r for r in results if r.wording is not None]
    if not worded:
        return {}
    bands = {}
    for band in sorted({r.wording for r in worded}):
        rows = [r for r in worded if r.wording == band]
        right = sum(r.correct for r in rows)
        bands[band] = {"n": len(rows), "correct": right, "accuracy": round(right / len(rows), 4)}
    own = [r for r in worded if r.model_wording is not None]
    agree = sum(r.model_wording == r.wording for r in own)
    return {
        "n": len(worded),
        "bands": bands,
        "model_worded": len(own),
        "model_agrees": agree,
        "model_agreement": round(agree / len(own), 4) if own else None,
    }


def fit_calibration(
    model: str, results: Sequence[QAResult], method: Method = "platt", min_examples: int = 10
) -> Calibration:
    """One map per confidence source with at least ``min_examples`` answers (every raw
    confidence an answer had counts, not only the one it reported), and the preferred
    source: the one whose confidence separates right answers from wrong ones best (AUROC;
    a tie keeps ``SOURCE_ORDER``'s)."""
    calibration = Calibration(model)
    separation: dict[str, float] = {}
    for source in SOURCE_ORDER:
        rows = [r for r in results if source in r.candidates]
        if len(rows) < min_examples:
            continue
        conf = [r.candidates[source] for r in rows]
        hits = [r.correct for r in rows]
        calibration.maps[source] = CalibrationMap.fit(conf, hits, method)
        value = auroc(conf, hits)
        if value is not None:
            separation[source] = round(value, 4)
    if separation:
        calibration.preferred = max(
            separation, key=lambda s: (separation[s], -SOURCE_ORDER.index(s))
        )
        calibration.info["auroc"] = separation
    return calibration


def apply_calibration(calibration: Calibration, results: Sequence[QAResult]) -> None:
    """Fill ``calibrated`` in place (held-out results scored before the map existed), taking
    the source the calibration prefers where an answer has it, and re-band worded answers."""
    for r in results:
        source = pick_source(r.candidates, calibration)
        if source is None:
            continue
        r.source, r.confidence = source, r.candidates[source]
        r.calibrated = calibration.calibrate(source, r.confidence)
        if r.wording is not None and r.calibrated is not None:
            r.wording = wording_for(r.calibrated)


async def calibrate(
    engine: Engine,
    backend: SearchBackend,
    encoder: Encoder,
    dev: Sequence[Question],
    test: Sequence[Question],
    config: SearchConfig,
    *,
    method: Method = "platt",
    concurrency: int = 8,
    max_tokens: int = 512,
    progress: bool = False,
) -> tuple[Calibration, dict[str, Any]]:
    """Fit on ``dev``'s search answers, measure on held-out ``test``: the map and a report.

    Both halves are answered in one pool (the engine batches them; no half waits for the
    other's stragglers); the map is fitted on the dev answers only. ``progress``: a progress
    bar on stderr.
    """
    results = await answer_with_search(
        engine,
        backend,
        encoder,
        [*dev, *test],
        config,
        concurrency=concurrency,
        max_tokens=max_tokens,
        progress="calibration questions" if progress else None,
    )
    fit_on, held_out = results[: len(dev)], results[len(dev) :]
    calibration = fit_calibration(engine.model_id, fit_on, method)
    apply_calibration(calibration, fit_on)
    apply_calibration(calibration, held_out)
    report = {
        "model": engine.model_id,
        "backend": backend.name,
        "method": method,
        "dev": summarize(fit_on),
        "test": summarize(held_out),
        "sources": sorted(calibration.maps),
        "preferred": calibration.preferred,
    }
    calibration.info.update(
        backend=backend.name,
        method=method,
        dev_n=len(fit_on),
        test_n=len(held_out),
        test_ece_raw=report["test"].get("ece_raw"),
        test_ece_calibrated=report["test"].get("ece_calibrated"),
        test_accuracy=report["test"].get("accuracy"),
        test_auroc=report["test"].get("auroc"),
    )
    return calibration, report
