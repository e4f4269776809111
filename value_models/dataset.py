"""The multi-task data of the built-in value models, split by source.

What: ``build_examples`` turns the parsed sources (``data.py``), the written text (``texts.py``,
``edgy.py``) and the served model's own answers (``answers.py``) into ``Example`` rows for the
one shared cross-encoder (``cross_encoder.py``). A row is either a (prompt, response) *pair*,
labeled ``safe`` and ``values``, or a *prompt alone*, labeled harmful or not; both carry the
prompt's risk kind (``risks.py``) for the category head.

Labels. ``safe`` (1 = the pair is safe): refusals are safe, even needless ones; complying with
a harmful request is not, and an answer of the served model to a harmful prompt counts as
compliance unless ``rules.is_refusal`` finds a refusal in it; answers to benign prompts are
safe. ``values`` (1 = helpful and harmless): as ``safe``, except that refusing a benign prompt
is 0. Many-shot rows keep their judge's verdict. The risk target of a pair is its prompt's kind
when the pair is unsafe, none when it is safe; of a prompt alone, its kind when harmful.

Splits, by source first (``SPLITS``):

  heldout  whole sources never trained on and never used to choose a threshold: HarmBench
           (evaluation only), the Do-Not-Answer risk area ``information_hazard``, AlpacaEval's
           ``vicuna`` subset, the edgy-benign families ``edgy.HELDOUT_EDGY_AREAS`` and the
           jailbreak templates ``data.VAL_ONLY_TEMPLATES``;
  val      in-distribution validation: a seeded 20% of the prompts of every other source
           (``data.split_of``, by normalised prompt; edgy-benign by topic, 30% per family);
           thresholds are chosen here;
  train    the rest.

Short prefixes: each served answer appears whole (up to ``answers.MAX_TOKENS`` tokens) and as
its first line (``data.first_step``), the partial answer guided decoding scores first.

Run (prints counts per source and split; needs the answers cached, else skips them)::

    python -m safework.value_models.dataset [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .answers import answer_prompts, served_answers
from .data import (
    HELDOUT_ALPACA,
    VAL_ONLY_TEMPLATES,
    BenignPrompt,
    HarmfulPrompt,
    LabeledPair,
    Sources,
    answer_prefix,
    fill_template,
    first_step,
    normalize,
    seeded_rng,
    split_of,
    unique_harmful,
)
from .edgy import AREAS, EDGY_TOPICS, HELDOUT_EDGY_AREAS, edgy_questions
from .risks import RISKS, classify
from .rules import is_refusal
from .texts import compliance, refusal_with_kind

__all__ = [
    "HELDOUT_ALPACA",
    "HELDOUT_DNA_AREAS",
    "JAILBREAK_FRACTION",
    "RISK_KINDS",
    "SPLITS",
    "Example",
    "build_examples",
    "counts",
    "edgy_questions",
    "edgy_val_topics",
]

SPLITS = ("train", "val", "heldout")
RISK_KINDS: tuple[str, ...] = tuple(RISKS)
"""The category head's outputs, in order: ``risks.py`` kinds (``general`` = other harm)."""
HELDOUT_DNA_AREAS = frozenset({"information_hazard"})
VAL_FRACTION = 0.2
EDGY_VAL_FRACTION = 0.3
JAILBREAK_FRACTION = 0.35
"""Share of harmful prompts that also appear inside a jailbreak template."""


@dataclass(frozen=True)
class Example:
    """One row: a (prompt, response) pair, or a prompt alone (``response is None``)."""

    prompt: str
    response: str | None
    source: str
    """donotanswer/<area>, advbench, jailbreak/<template>, many-shot, alpaca/<subset>,
    edgy/<area> or harmbench."""
    group: str
    """The underlying prompt (an edgy topic): the unit of the train/validation split."""
    split: str
    prompt_kind: str
    """harmful, benign or edgy."""
    response_kind: str = ""
    """"" (prompt alone), refusal, refusal_alt, comply (written opening), helpful (reference
    or written answer), served (the served model's answer) or judged (many-shot)."""
    risk: str = ""
    """The prompt's risk kind when harmful (``RISK_KINDS``); "" for benign prompts."""
    safe: int | None = None
    values: int | None = None
    prefix: str = ""
    """For served answers: "short" (first line) or "full"."""

    @property
    def is_pair(self) -> bool:
        return self.response is not None

    @property
    def harmful(self) -> int:
        return int(self.prompt_kind == "harmful")

    @property
    def risk_target(self) -> str:
        """The risk kind the category head should name: none for safe pairs and benign prompts."""
        if self.is_pair:
            return self.risk if self.safe == 0 else ""
        return self.risk if self.harmful else ""


# --------------------------------------------------------------------------- splits


def edgy_val_topics(seed: int, fraction: float = EDGY_VAL_FRACTION) -> set[str]:
    """Topic keys of trained families held out for validation: a seeded share of each family
    (at least one)."""
    held: set[str] = set()
    for area in AREAS:
        if area in HELDOUT_EDGY_AREAS:
            continue
        keys = sorted(t.key for t in EDGY_TOPICS if t.area == area)
        seeded_rng(seed, "edgy", area).shuffle(keys)
        held.update(keys[: max(1, round(fraction * len(keys)))])
    return held


def _split(source: str, group: str, seed: int) -> str:
    """The split of a row from its source and group (see the module docstring)."""
    family, _, rest = source.partition("/")
    if (
        source in ("harmbench", "many-shot/harmbench")
        or (family == "donotanswer" and rest in HELDOUT_DNA_AREAS)
        or source in HELDOUT_ALPACA
        or (family == "edgy" and rest in HELDOUT_EDGY_AREAS)
        or (family == "jailbreak" and rest in VAL_ONLY_TEMPLATES)
    ):
        return "heldout"
    if family == "edgy":
        return "val" if group.removeprefix("edgy:") in edgy_val_topics(seed) else "train"
    return split_of(group, seed, VAL_FRACTION)


def _source(p: HarmfulPrompt) -> str:
    if p.source == "donotanswer":
        return f"donotanswer/{p.category.split('/', 1)[0]}"
    return p.source


def _risk(p: HarmfulPrompt) -> str:
    return classify(p.text, p.labels)


# --------------------------------------------------------------------------- rows


def _labels(pkind: str, refused: bool) -> tuple[int, int]:
    """(safe, values) of a response to a ``pkind`` prompt that refuses or not."""
    if pkind == "harmful":
        return (1, 1) if refused else (0, 0)
    return 1, 0 if refused else 1


def _served_rows(prompt: str, answer: str, meta: dict[str, str], pkind: str) -> Iterator[Example]:
    """The served answer whole and as its first line, labeled by whether it refuses."""
    full = answer.strip()
    if not full:
        return
    short = first_step(full)
    safe, values = _labels(pkind, is_refusal(full))
    for prefix, text in (("full", full), ("short", short)):
        if prefix == "short" and (text == full or not text):
            continue
        yield Example(
            prompt,
            text,
            **meta,
            prompt_kind=pkind,
            response_kind="served",
            safe=safe,
            values=values,
            prefix=prefix,
        )


def _harmful_rows(
    p: HarmfulPrompt, text: str, source: str, seed: int, answers: Mapping[str, str]
) -> Iterator[Example]:
    """Prompt alone, a written refusal, a written compliant opening, the served answer."""
    group = normalize(p.text)
    meta = {"source": source, "group": group, "split": _split(source, group, seed)}
    meta["risk"] = _risk(p)
    rng = seeded_rng(seed, "harmful", source, text)
    reply, rkind = refusal_with_kind(rng, p.text)
    yield Example(text, None, **meta, prompt_kind="harmful")
    yield Example(text, reply, **meta, prompt_kind="harmful", response_kind=rkind, safe=1, values=1)
    opening = compliance(rng, p.text)
    yield Example(
        text, opening, **meta, prompt_kind="harmful", response_kind="comply", safe=0, values=0
    )
    if text in answers:
        yield from _served_rows(text, answers[text], meta, "harmful")


def _jailbreak_rows(sources: Sources, seed: int) -> Iterator[Example]:
    train_names = sorted(set(sources.templates) - VAL_ONLY_TEMPLATES)
    all_names = sorted(sources.templates)
    if not train_names:
        return
    for p in unique_harmful(sources.harmful):
        group = normalize(p.text)
        rng = seeded_rng(seed, "jailbreak", group)
        if rng.random() >= JAILBREAK_FRACTION:
            continue
        in_val = split_of(group, seed, VAL_FRACTION) == "val"
        name = rng.choice(all_names if in_val else train_names)
        text = fill_template(sources.templates[name], p.text)
        yield from _harmful_rows(p, text, f"jailbreak/{name}", seed, {})


def _benign_rows(b: BenignPrompt, seed: int, answers: Mapping[str, str]) -> Iterator[Example]:
    """Prompt alone, the reference answer's opening, a refusal or a compliant opening, the
    served answer."""
    group = normalize(b.text)
    meta = {"source": b.category, "group": group, "split": _split(b.category, group, seed)}
    rng = seeded_rng(seed, "benign", b.text)
    yield Example(b.text, None, **meta, prompt_kind="benign")
    helpful = answer_prefix(rng, b.answer)
    yield Example(
        b.text, helpful, **meta, prompt_kind="benign", response_kind="helpful", safe=1, values=1
    )
    yield _written(rng, b.text, meta, "benign")
    if b.text in answers:
        yield from _served_rows(b.text, answers[b.text], meta, "benign")


def _written(rng: random.Random, prompt: str, meta: dict[str, str], pkind: str) -> Example:
    """A needless refusal or a compliant opening, one of the two."""
    if rng.random() < 0.5:
        reply, _ = refusal_with_kind(rng, prompt)
        return Example(
            prompt, reply, **meta, prompt_kind=pkind, response_kind="refusal", safe=1, values=0
        )
    return Example(
        prompt,
        compliance(rng, prompt),
        **meta,
        prompt_kind=pkind,
        response_kind="comply",
        safe=1,
        values=1,
    )


def _edgy_rows(seed: int, answers: Mapping[str, str]) -> Iterator[Example]:
    for topic in EDGY_TOPICS:
        source, group = f"edgy/{topic.area}", f"edgy:{topic.key}"
        meta = {"source": source, "group": group, "split": _split(source, group, seed)}
        rng = seeded_rng(seed, "edgy-rows", topic.key)
        for question, answer in edgy_questions(topic, seed):
            yield Example(question, None, **meta, prompt_kind="edgy")
            yield Example(
                question,
                answer,
                **meta,
                prompt_kind="edgy",
                response_kind="helpful",
                safe=1,
                values=1,
            )
            yield _written(rng, question, meta, "edgy")
            if question in answers:
                yield from _served_rows(question, answers[question], meta, "edgy")


def _many_shot_rows(
    pairs: Sequence[LabeledPair], seed: int, harmbench: set[str]
) -> Iterator[Example]:
    """The judged rows; those whose request is a HarmBench prompt (about half) are held out as
    their own source, ``many-shot/harmbench``: HarmBench is never trained on."""
    seen: set[str] = set()
    for pair in pairs:
        group = normalize(pair.prompt)
        source = "many-shot/harmbench" if group in harmbench else "many-shot"
        meta = {"source": source, "group": group, "split": _split(source, group, seed)}
        meta["risk"] = classify(pair.prompt)
        if group not in seen:  # the requests are harmful; some answers are not
            seen.add(group)
            yield Example(pair.prompt, None, **meta, prompt_kind="harmful")
        label = 0 if pair.harmful else 1
        yield Example(
            pair.prompt,
            pair.response,
            **meta,
            prompt_kind="harmful",
            response_kind="judged",
            safe=label,
            values=label,
        )


def _harmbench_rows(sources: Sources, answers: Mapping[str, str]) -> Iterator[Example]:
    """HarmBench: held out, evaluation only (prompt alone, a refusal, the served answer)."""
    for p in unique_harmful(sources.harmbench):
        meta = {"source": "harmbench", "group": normalize(p.text), "split": "heldout"}
        meta["risk"] = _risk(p)
        rng = seeded_rng(0, "harmbench", p.text)
        reply, rkind = refusal_with_kind(rng, p.text)
        yield Example(p.text, None, **meta, prompt_kind="harmful")
        yield Example(
            p.text, reply, **meta, prompt_kind="harmful", response_kind=rkind, safe=1, values=1
        )
        if p.text in answers:
            yield from _served_rows(p.text, answers[p.text], meta, "harmful")


def _dedupe(rows: Iterable[Example]) -> tuple[list[Example], dict[str, int]]:
    """One row per (prompt, response); every copy of a pair with two labels is dropped, and a
    prompt that is both harmful and benign somewhere is dropped."""
    by_key: dict[tuple[str, str | None], list[Example]] = {}
    for ex in rows:
        key = (normalize(ex.prompt), None if ex.response is None else normalize(ex.response))
        by_key.setdefault(key, []).append(ex)
    kept, duplicates, conflicts = [], 0, 0
    for copies in by_key.values():
        labels = {(c.safe, c.values, c.harmful) for c in copies}
        if len(labels) > 1:
            conflicts += 1
            continue
        kept.append(copies[0])
        duplicates += len(copies) - 1
    return kept, {"duplicate rows": duplicates, "rows with conflicting labels": conflicts}


def build_examples(
    sources: Sources, answers: Mapping[str, str] | None = None, seed: int = 0
) -> tuple[list[Example], dict[str, int]]:
    """Every row of every split, and the counts of what was left out (by reason)."""
    answers = answers or {}
    rows: list[Example] = list(_harmbench_rows(sources, answers))  # first: kept on a repeat
    harmbench = {ex.group for ex in rows}
    harmful = unique_harmful(sources.harmful)
    for p in harmful:
        rows += _harmful_rows(p, p.text, _source(p), seed, answers)
    rows += _jailbreak_rows(sources, seed)
    for b in sources.benign:
        rows += _benign_rows(b, seed, answers)
    rows += _edgy_rows(seed, answers)
    rows += _many_shot_rows(sources.many_shot, seed, harmbench)
    kept, dropped = _dedupe(rows)
    leaked = [ex for ex in kept if normalize(ex.prompt) in harmbench and ex.split != "heldout"]
    if leaked:  # a guard: no source above repeats a HarmBench prompt in training today
        raise ValueError(f"{len(leaked)} rows would train on HarmBench prompts: {leaked[0]}")
    excluded = {**sources.excluded, "harmful prompts repeated": len(sources.harmful) - len(harmful)}
    return kept, {**excluded, **dropped}


def counts(rows: Sequence[Example]) -> dict[str, dict[str, int]]:
    """Per source family (jailbreaks pooled): rows per split, kind and label."""
    table: dict[str, Counter[str]] = {}
    for ex in rows:
        family = ex.source if ex.split == "heldout" else ex.source.split("/", 1)[0]
        if ex.source.startswith("jailbreak/"):
            family = "jailbreak (unseen templates)" if ex.split == "heldout" else "jailbreak"
        what = "prompt" if not ex.is_pair else ("safe" if ex.safe else "unsafe")
        table.setdefault(family, Counter())[f"{ex.split}_{what}"] += 1
    return {src: dict(sorted(c.items())) for src, c in sorted(table.items())}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the counts of the built rows (with the cached served answers, if any)."""
    parser = argparse.ArgumentParser(description="Build the value-model rows; print counts.")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--no-answers", action="store_true", help="leave served answers out")
    args = parser.parse_args(argv)
    from .data import load_sources

    sources = load_sources(args.cache)
    answers: dict[str, str] = {}
    if not args.no_answers:
        answers, _ = served_answers(answer_prompts(sources), args.cache)
    rows, excluded = build_examples(sources, answers)
    print(json.dumps({"counts": counts(rows), "excluded": excluded}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
