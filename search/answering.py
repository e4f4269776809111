"""How the search loop turns a model turn into an ``Answer``, and the closed-book prior.

``make_answer`` picks the confidence (the source the model's calibration prefers, else the
stated ``<confidence>`` when the model gives one, else the probability of the answer's own
tokens) and maps it through the model's fitted calibration. ``closed_book`` asks the model the
question without search, so the loop can say where the sources contradict what the model
believed; a reasoning model is asked with an empty reasoning block, so what comes back is its
answer and not the first line of its thinking. Both run once per answer; the loop in
``deliberative.py`` owns the state and the streaming.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from safework.engine.base import Engine, SamplingConfig
from safework.engine.reasoning import CLOSE_TAG, OPEN_TAG, starts_in_reasoning

from . import tags
from .calibration import Calibration, answer_probability
from .state import Answer, Turn

ConfidenceSource = Literal["auto", "stated", "logprob", "agreement"]

_ANSWER_OPEN = re.compile(r"<\s*answer\s*>", re.I)


def make_answer(
    text: str,
    turn: Turn,
    stated_text: str | None,
    mode: ConfidenceSource,
    calibration: Calibration | None,
) -> Answer:
    """The answer ``text`` of ``turn``; ``stated_text`` is the model's own answering turn (its
    ``<confidence>`` and the words before ``<answer>``), ``None`` for the server's fallback.

    ``auto`` takes the source the model's calibration found to separate right answers from
    wrong ones best (``Calibration.preferred``) when the answer has it, else the stated
    confidence, else the answer tokens' probability."""
    candidates: dict[str, float] = {}
    stated = tags.parse_confidence(stated_text) if stated_text else None
    if stated is not None and mode in ("auto", "stated"):
        candidates["stated"] = round(stated, 4)
    if mode in ("auto", "logprob") and turn.logprobs:
        candidates["logprob"] = round(answer_probability(answer_logprobs(text, turn)), 4)
    source = pick_source(candidates, calibration)
    raw = None if source is None else candidates[source]
    calibrated = None
    if source is not None and calibration is not None:
        calibrated = calibration.calibrate(source, candidates[source])
    finish = "length" if turn.finish_reason == "length" and not text else "stop"
    reasoning = None
    if stated_text is not None:
        reasoning = _ANSWER_OPEN.split(stated_text, maxsplit=1)[0]
    return Answer(text, raw, source, calibrated, finish, reasoning, candidates)


SOURCE_ORDER = ("agreement", "stated", "logprob")
"""Without a preference from the calibration, the first of these an answer has is used."""


def pick_source(candidates: Mapping[str, float], calibration: Calibration | None) -> str | None:
    """Which of an answer's raw confidences to report: the calibration's preferred source
    when the answer has it, else the first in ``SOURCE_ORDER``."""
    preferred = calibration.preferred if calibration is not None else None
    if preferred in candidates:
        return preferred
    return next((s for s in SOURCE_ORDER if s in candidates), None)


def answer_logprobs(answer: str, turn: Turn) -> list[float]:
    """Logprobs of the tokens that overlap the answer's characters in the turn (all of the
    turn's when the answer is not found in it)."""
    start = turn.text.find(answer) if answer else -1
    if start < 0:
        return [lp.logprob for lp in turn.logprobs]
    end, pos, out = start + len(answer), 0, []
    for lp in turn.logprobs:
        lo, pos = pos, pos + len(lp.token)
        if pos > start and lo < end:
            out.append(lp.logprob)
    return out or [lp.logprob for lp in turn.logprobs]


async def closed_book(
    engine: Engine, messages: Sequence[dict[str, Any]], rid: str, salt: str | None
) -> tuple[str | None, int]:
    """The model's own one-line answer without search (greedy, the request's cache salt) and
    the tokens it generated for it."""
    prompt = await engine.render_chat(list(messages))
    in_reasoning = starts_in_reasoning(prompt)
    text, tokens = None, 0
    if not in_reasoning:
        text, tokens = await _one_line(engine, prompt, f"{rid}-prior", salt)
    if in_reasoning or (text or "").startswith(OPEN_TAG):
        opening = "" if in_reasoning else f"{OPEN_TAG}\n"
        prompt = f"{prompt}{opening}\n{CLOSE_TAG}\n\n"
        text, more = await _one_line(engine, prompt, f"{rid}-prior-2", salt)
        tokens += more
    return text, tokens


async def _one_line(
    engine: Engine, prompt: str, rid: str, salt: str | None
) -> tuple[str | None, int]:
    ids = await engine.tokenize(prompt)
    budget = min(32, engine.max_model_len - len(ids))
    if budget <= 0:
        return None, 0
    sampling = SamplingConfig(max_tokens=budget, temperature=0.0, stop=["\n"], cache_salt=salt)
    text, tokens = "", 0
    async with contextlib.aclosing(engine.generate(ids, sampling, rid)) as steps:
        async for step in steps:
            text += "".join(d.text for d in step.choices if d.index == 0)
            tokens += sum(len(d.token_ids) for d in step.choices)
    return text.strip() or None, tokens
