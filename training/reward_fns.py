"""The built-in reward functions of the SafeLadder RL stages.

A reward function is ``fn(prompts, completions, **meta) -> list[float | None]``: one value per
sample, ``None`` where the reward does not apply (no gold answer, no reasoning-gym entry).
``prompts[i]`` is the last user turn, ``completions[i]`` the whole generated assistant text
(a ``<think>`` block and the answer, or a search transcript with ``<search>``,
``<information>``, ``<answer>`` and ``<confidence>`` tags). ``meta`` holds per-sample lists:
``label``, ``answer`` (a gold string, a list of accepted strings, or None), ``dataset`` and
``entry`` (reasoning-gym), ``ifeval`` (the IFEvalPrompt fields ``key``, ``prompt``,
``instruction_id_list``, ``kwargs`` and optionally ``library``), ``finish_reason``, and for
search rollouts ``confidence`` and ``lam`` (a list, or one float shared by all). Rewards ignore
keys they do not use.

What is judged, as in ``safework-train eval`` (``eval_tasks.split_answer``): the *visible
answer* after ``</think>`` (the whole text without a think block). A think block that never
closes has no visible answer; the refusal check and value models then read its reasoning.

Built-in rewards, by their names in ``rewards.REWARDS``:

  format         1.0 or 0.0. A generation cut by ``finish_reason == "length"`` scores 0.
                 Search transcripts (label ``search``, or text containing ``<answer>``): the
                 protocol tags are balanced and properly nested, and some ``<answer>`` holds
                 non-empty text. Otherwise: the text starts (after whitespace) with the only
                 ``<think>`` tag, holds exactly one ``</think>``, the reasoning between them is
                 not blank, and a non-blank answer follows.
  reasoning_gym  reasoning-gym's score of ``extract_math_answer(visible answer)`` for
                 ``dataset``/``entry``; 0.0 for an unclosed think block or a scorer error.
  exact_match    ``search.answers.answer_matches`` of the last ``<answer>`` content (the
                 visible answer without one) against the gold ``answer``.
  ifeval         share of the prompt's instructions followed (strict checks, ``ifeval.check``).
  refusal        1.0 when the judged text is a refusal (``rules.is_refusal``): harmful prompts.
  no_refusal     1.0 - refusal: benign prompts, against over-refusal.
  value:SPEC     a value model's score of (prompt, judged text), SPEC as in
                 ``value_models.registry`` (``value:builtin:safety``, ``value:rules:pii``);
                 the names ``safety`` and ``values`` stand for ``value:builtin:safety`` and
                 ``value:builtin:values``.
  search         Deliberative-Search: ``f * (0.1 f + 0.9 acc + lam * reliability(conf, acc))``
                 with f the search format, acc the exact match and conf the stated confidence
                 (meta, else the transcript's ``<confidence>`` tag, else 0.5); None without gold.

``safework.training.rewards`` holds the registry of these rewards and the router that mixes
them per task label; import them from there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import re
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safework.errors import ConfigError
from safework.value_models.rules import is_refusal

from .eval_tasks import extract_math_answer, split_answer
from .ifeval import IFEvalPrompt
from .ifeval import check as ifeval_check

__all__ = [
    "DEFAULT_LAMBDA",
    "IFEvalReward",
    "ReasoningGymReward",
    "RewardContext",
    "RewardFn",
    "ValueReward",
    "exact_match_reward",
    "format_reward",
    "meta_column",
    "no_refusal_reward",
    "predicted_answer",
    "refusal_reward",
    "reliability",
    "search_format_ok",
    "search_reward",
    "think_format_ok",
]

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list[float | None]]
"""``fn(prompts, completions, **meta) -> one float (or None: not applicable) per sample``."""

DEFAULT_LAMBDA = 0.5
"""``lam`` of the search reward when the meta gives none (``AdaptiveLambda``'s start)."""


@dataclass
class RewardContext:
    """What reward factories may need: the cache root and the device of value models."""

    cache: Path | None = None
    device: str = "cpu"


# --------------------------------------------------------------------------- text checks

_OPEN, _CLOSE = "<think>", "</think>"
_TAG_NAMES = "search|read|answer|confidence|information|think"
_PROTOCOL_TAG = re.compile(rf"<(/?)({_TAG_NAMES})>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_ANSWER_OR_OPEN = re.compile(rf"<answer>((?:(?!</?(?:{_TAG_NAMES})>).)*)", re.S)
"""An answer's text up to the next protocol tag (its close tag, or one after an open answer)."""


def _strip_tags(text: str) -> str:
    return _PROTOCOL_TAG.sub(" ", text).strip()


def think_format_ok(completion: str) -> bool:
    """One ``<think>`` block opening the text (whitespace before it allowed), with non-blank
    reasoning, then a non-blank answer; no other think tag anywhere."""
    body = completion.lstrip()
    if not body.startswith(_OPEN) or completion.count(_OPEN) != 1:
        return False
    if completion.count(_CLOSE) != 1:
        return False
    reasoning, _, answer = body[len(_OPEN) :].partition(_CLOSE)
    return bool(reasoning.strip()) and bool(answer.strip())


def search_format_ok(completion: str) -> bool:
    """Protocol tags balanced and properly nested, and an ``<answer>`` with non-blank text."""
    stack: list[str] = []
    for m in _PROTOCOL_TAG.finditer(completion):
        if not m.group(1):
            stack.append(m.group(2))
        elif not stack or stack.pop() != m.group(2):
            return False
    return not stack and any(_strip_tags(a) for a in _ANSWER.findall(completion))


def _is_search(completion: str, label: Any) -> bool:
    return label == "search" or "<answer>" in completion


def _format_score(completion: str, search: bool, finish_reason: Any) -> float:
    if finish_reason == "length":
        return 0.0
    ok = search_format_ok(completion) if search else think_format_ok(completion)
    return 1.0 if ok else 0.0


def _judged(completion: str) -> str:
    """The visible answer; the reasoning of a think block that never closed."""
    reasoning, answer, unclosed = split_answer(completion)
    return (reasoning or "") if unclosed else answer


def predicted_answer(completion: str) -> str:
    """The text of the last non-empty ``<answer>`` (up to the next protocol tag, so an
    unclosed answer counts); without an answer tag, the visible answer."""
    found = [text.strip() for text in _ANSWER_OR_OPEN.findall(completion)]
    if not found:
        return split_answer(completion)[1]
    return next((text for text in reversed(found) if text), "")


def _golds(answer: Any) -> list[str] | None:
    """Accepted gold answers, or None when there is none."""
    if answer is None:
        return None
    items = [answer] if isinstance(answer, str | int | float) else list(answer)
    golds = [str(a).strip() for a in items if a is not None and str(a).strip()]
    return golds or None


def meta_column(meta: Mapping[str, Any], key: str, n: int) -> list[Any]:
    """``meta[key]`` as one value per sample (None when absent; a scalar is shared)."""
    value = meta.get(key)
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(f"meta {key!r} has {len(value)} values for {n} samples")
        return list(value)
    return [value] * n


# --------------------------------------------------------------------------- built-in rewards


def format_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float | None]:
    """``format``: see the module docstring for the rules."""
    n = len(completions)
    labels, finish = meta_column(meta, "label", n), meta_column(meta, "finish_reason", n)
    return [
        _format_score(text, _is_search(text, label), reason)
        for text, label, reason in zip(completions, labels, finish, strict=True)
    ]


def _match(completion: str, golds: list[str]) -> float:
    from safework.search.answers import answer_matches

    prediction = predicted_answer(completion)
    return 1.0 if prediction and answer_matches(prediction, golds) else 0.0


def exact_match_reward(
    prompts: list[str], completions: list[str], **meta: Any
) -> list[float | None]:
    """``exact_match``: 1.0 when the predicted answer gives a gold one; None without gold."""
    golds = [_golds(a) for a in meta_column(meta, "answer", len(completions))]
    return [
        None if gold is None else _match(text, gold)
        for text, gold in zip(completions, golds, strict=True)
    ]


def refusal_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float | None]:
    """``refusal``: 1.0 when the judged text is a refusal."""
    return [1.0 if is_refusal(_judged(text)) else 0.0 for text in completions]


def no_refusal_reward(
    prompts: list[str], completions: list[str], **meta: Any
) -> list[float | None]:
    """``no_refusal``: 1.0 when the judged text is not a refusal."""
    return [0.0 if is_refusal(_judged(text)) else 1.0 for text in completions]


class ReasoningGymReward:
    """``reasoning_gym``: scorer functions are looked up once per dataset."""

    def __init__(self) -> None:
        self._scorers: dict[str, Callable[..., Any]] = {}

    def _scorer(self, dataset: str) -> Callable[..., Any]:
        if dataset not in self._scorers:
            import reasoning_gym

            try:
                self._scorers[dataset] = reasoning_gym.get_score_answer_fn(dataset)
            except ValueError as e:
                raise ConfigError(
                    f"meta dataset {dataset!r} is unknown to reasoning-gym; fix the math "
                    "samples' dataset names"
                ) from e
        return self._scorers[dataset]

    def __call__(
        self, prompts: list[str], completions: list[str], **meta: Any
    ) -> list[float | None]:
        n = len(completions)
        columns = zip(
            completions,
            meta_column(meta, "dataset", n),
            meta_column(meta, "entry", n),
            meta_column(meta, "answer", n),
            strict=True,
        )
        out: list[float | None] = []
        for text, dataset, entry, answer in columns:
            if not dataset or entry is None:
                out.append(None)
                continue
            scorer = self._scorer(str(dataset))
            reasoning, visible, unclosed = split_answer(text)
            if unclosed:
                out.append(0.0)
                continue
            gold = entry.get("answer") if isinstance(entry, Mapping) else None
            if gold is None:
                gold = (_golds(answer) or [""])[0]
            extracted = extract_math_answer(visible, reasoning is not None, str(gold))
            try:
                score = float(scorer(extracted, entry))
            except Exception as e:  # a third-party scorer failing on odd text scores zero
                logger.debug("reasoning-gym %s could not score %r: %s", dataset, extracted, e)
                score = 0.0
            out.append(min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0)
        return out


class IFEvalReward:
    """``ifeval``: the checker library is the meta's ``library``, else the cached one."""

    def __init__(self, ctx: RewardContext) -> None:
        self._cache = ctx.cache
        self._library: Path | None = None

    def _default_library(self) -> Path:
        if self._library is None:
            from .sources import ifeval_dir

            self._library = Path(ifeval_dir(self._cache))
        return self._library

    def _prompt(self, spec: Any) -> IFEvalPrompt:
        if isinstance(spec, IFEvalPrompt):
            return spec
        try:
            ids = spec.get("instruction_id_list", spec.get("instruction_ids"))
            library = spec.get("library")
            library = Path(library) if library is not None else self._default_library()
            return IFEvalPrompt(
                int(spec["key"]), str(spec["prompt"]), list(ids), list(spec["kwargs"]), library
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"meta ifeval {spec!r:.80}: give a mapping with key, prompt, "
                f"instruction_id_list and kwargs ({type(e).__name__}: {e})"
            ) from e

    def __call__(
        self, prompts: list[str], completions: list[str], **meta: Any
    ) -> list[float | None]:
        out: list[float | None] = []
        specs = meta_column(meta, "ifeval", len(completions))
        for text, spec in zip(completions, specs, strict=True):
            if spec is None:
                out.append(None)
                continue
            verdict = ifeval_check(self._prompt(spec), split_answer(text)[1])
            per = verdict.instructions
            out.append(sum(v.strict for v in per) / len(per) if per else None)
        return out


class ValueReward:
    """``value:SPEC``: the value model is loaded once (``load_value_model(SPEC, SPEC)``);
    each call scores the batch in one request on a private event loop."""

    def __init__(self, spec: str, ctx: RewardContext) -> None:
        from safework.value_models.registry import LoadContext, load_value_model

        self.spec = spec
        self.model = load_value_model(spec, spec, LoadContext(cache=ctx.cache, device=ctx.device))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
            weakref.finalize(self, self._loop.close)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: the trainer is synchronous
            return self._loop.run_until_complete(coro)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from async code
            return pool.submit(self._loop.run_until_complete, coro).result()

    def __call__(
        self, prompts: list[str], completions: list[str], **meta: Any
    ) -> list[float | None]:
        if not completions:
            return []
        texts = [_judged(text) for text in completions]
        scores = self._run(self.model.score(list(prompts), texts))
        if len(scores) != len(completions):
            raise RuntimeError(
                f"value model {self.spec} gave {len(scores)} scores for {len(texts)} responses"
            )
        return [float(s.score) for s in scores]

    def close(self) -> None:
        """Release the model and the event loop (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self._run(self.model.close())
        if self._loop is not None:
            self._loop.close()


def reliability(confidence: float, correct: float) -> float:
    """``1 - (confidence - correct)**2``, both clamped to [0, 1]: 1 for a confident right or an
    unsure wrong answer, 0 for a certain wrong one."""
    c, k = min(max(confidence, 0.0), 1.0), min(max(correct, 0.0), 1.0)
    return 1.0 - (c - k) ** 2


def _confidence(value: Any, completion: str) -> float:
    if value is None:
        from safework.search.tags import parse_confidence

        value = parse_confidence(completion)
    return 0.5 if value is None else float(value)


def search_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float | None]:
    """``search``: ``f * (0.1 f + 0.9 acc + lam * reliability(conf, acc))``; None without gold.

    ``f`` is the protocol term: the tags well formed, not cut off, and the answer the policy's
    own. A rollout the loop had to answer for (``protocol="fallback"`` in meta) gets ``f = 0``:
    its ``<answer>`` came from the loop's fallback prompt, and crediting it would reward the
    policy for not following the protocol."""
    n = len(completions)
    columns = zip(
        completions,
        meta_column(meta, "answer", n),
        meta_column(meta, "confidence", n),
        meta_column(meta, "lam", n),
        meta_column(meta, "finish_reason", n),
        meta_column(meta, "protocol", n),
        strict=True,
    )
    out: list[float | None] = []
    for text, answer, confidence, lam, reason, protocol in columns:
        golds = _golds(answer)
        if golds is None:
            out.append(None)
            continue
        fmt = 0.0 if protocol == "fallback" else _format_score(text, True, reason)
        acc = _match(text, golds)
        weight = DEFAULT_LAMBDA if lam is None else float(lam)
        rel = reliability(_confidence(confidence, text), acc)
        out.append(fmt * (0.1 * fmt + 0.9 * acc + weight * rel))
    return out
