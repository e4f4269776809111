"""The built-in value models' network: MiniLM fine-tuned end to end as a cross-encoder, with heads.

What: ``CrossEncoder`` reads one token sequence, either a pair ``[CLS] prompt [SEP] response
[SEP]`` (token types 0 then 1) or a prompt alone ``[CLS] prompt [SEP]``, mean-pools the last
hidden states and feeds four heads: ``safe`` (P(the pair is safe)), ``values`` (P(helpful and
harmless)), ``prompt`` (P(the prompt alone is a harmful request)) and ``risk`` (one sigmoid per
risk kind of ``dataset.RISK_KINDS``). One forward pass gives every head, so a server that
scores a candidate with ``builtin:safety`` and ``builtin:values`` runs the encoder once.

Why a cross-encoder: the earlier model embedded prompt and response separately with a frozen
encoder and learned the topic (AUROC 0.97 on its own split, 0.65 on real judged answers);
attention across the pair lets the model read the answer in the light of the request.

Truncation (``Budget``): a prompt keeps its first and last tokens (a jailbreak template often
wraps the request in the middle or at the end; the cut is a simplification), a response its
first tokens (a refusal or a compliant opening) and its most recent ones (what decoding just
added). Pairs stay under ~150 tokens, which keeps a guided-decoding step (4 candidates) cheap.

How: ``train_cross_encoder`` runs AdamW (encoder and heads at their own learning rates, word
embeddings frozen, linear warm-up and decay) on the summed, class-balanced BCE of the heads
that label each row, for a fixed, seeded number of steps over length-bucketed batches; there
is no early stopping, so validation numbers are not tuned on. ``predict`` scores rows in
length-sorted batches. ``save_model`` / ``load_model`` keep weights and settings in one
safetensors file; the tokenizer and architecture come from the cached MiniLM folder
(``engine.embedder.minilm_dir``), never from a model hub. ``builtin.py`` is the entry point.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "HEADS",
    "Budget",
    "CrossEncoder",
    "Row",
    "TrainConfig",
    "encode_rows",
    "load_model",
    "predict",
    "save_model",
    "torch_threads",
    "train_cross_encoder",
]

HEADS = ("safe", "values", "prompt", "risk")


@dataclass(frozen=True)
class Budget:
    """Token budgets (without special tokens): first ``*_head`` and last ``*_tail`` tokens."""

    prompt_head: int = 24
    prompt_tail: int = 40
    response_head: int = 16
    response_tail: int = 64
    alone_head: int = 48
    alone_tail: int = 80
    """A prompt alone (the prompt classifier) may read more of it."""


@dataclass(frozen=True)
class TrainConfig:
    """The training schedule (fields documented for ``safework-train value``)."""

    steps: int = field(default=300, metadata={"help": "optimizer steps (no early stopping)"})
    batch_size: int = 32
    lr: float = field(default=8e-5, metadata={"help": "encoder learning rate"})
    head_lr: float = field(default=2e-3, metadata={"help": "learning rate of the heads"})
    weight_decay: float = 0.01
    warmup: float = 0.1
    """Share of the steps with a linear warm-up."""
    risk_weight: float = 0.5
    """Weight of the risk-category loss beside the three binary heads."""
    seed: int = 0
    threads: int = 0
    """torch threads while training; 0: torch's default."""
    budget: Budget = Budget()


@dataclass(frozen=True)
class Row:
    """What the network trains on: texts and the labels of each head (None: no label)."""

    prompt: str
    response: str | None
    safe: int | None = None
    values: int | None = None
    harmful: int | None = None
    risk: str | None = None
    """Risk kind ("" = none); None: the row does not train the risk head."""


class CrossEncoder(nn.Module):
    """A BERT-style encoder, mean pooling, dropout and the ``HEADS``."""

    def __init__(self, encoder: nn.Module, risk_kinds: Sequence[str], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.risk_kinds = tuple(risk_kinds)
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        sizes = {"safe": 1, "values": 1, "prompt": 1, "risk": len(self.risk_kinds)}
        # "values" would shadow ModuleDict.values: the modules are keyed "<head>_head"
        self.heads = nn.ModuleDict({f"{h}_head": nn.Linear(hidden, n) for h, n in sizes.items()})

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # (B, T, H)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, H)
        pooled = self.dropout(pooled)
        out = {k.removesuffix("_head"): head(pooled) for k, head in self.heads.items()}
        return {k: (v.squeeze(-1) if k != "risk" else v) for k, v in out.items()}


# --------------------------------------------------------------------------- tokenization


def _clip(ids: list[int], head: int, tail: int) -> list[int]:
    """The first ``head`` and last ``tail`` ids (all of them when they fit)."""
    return ids if len(ids) <= head + tail else ids[:head] + ids[len(ids) - tail :]


def encode_rows(
    tokenizer: Any, prompts: Sequence[str], responses: Sequence[str | None], budget: Budget
) -> list[tuple[list[int], list[int]]]:
    """(input ids, token type ids) per row, clipped to ``budget``."""
    texts = list(dict.fromkeys([*prompts, *(r for r in responses if r is not None)]))
    ids = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"], strict=True))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = []
    for prompt, response in zip(prompts, responses, strict=True):
        if response is None:
            p = _clip(ids[prompt], budget.alone_head, budget.alone_tail)
            out.append(([cls, *p, sep], [0] * (len(p) + 2)))
            continue
        p = _clip(ids[prompt], budget.prompt_head, budget.prompt_tail)
        r = _clip(ids[response], budget.response_head, budget.response_tail)
        out.append(([cls, *p, sep, *r, sep], [0] * (len(p) + 2) + [1] * (len(r) + 1)))
    return out


def _collate(encoded: Sequence[tuple[list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)  # (B, T)
    types = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, T)
    for i, (ids, tt) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        types[i, : len(tt)] = torch.tensor(tt)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (0: leave the setting), then restore."""
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- training


def _targets(rows: Sequence[Row], kinds: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per head: targets (N,) or (N, K), and a mask of the rows that label it."""
    index = {k: i for i, k in enumerate(kinds)}
    out: dict[str, torch.Tensor] = {}
    for head, attr in (("safe", "safe"), ("values", "values"), ("prompt", "harmful")):
        values = [getattr(r, attr) for r in rows]
        out[head] = torch.tensor([float(v or 0) for v in values])
        out[f"{head}_mask"] = torch.tensor([v is not None for v in values])
    risk = torch.zeros((len(rows), len(kinds)))
    for i, r in enumerate(rows):
        if r.risk:
            risk[i, index[r.risk]] = 1.0
    out["risk"] = risk
    out["risk_mask"] = torch.tensor([r.risk is not None for r in rows])
    return out


def _balance(target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weights giving both classes of a binary head the same total weight (over the mask)."""
    n, pos = float(mask.sum()), float((target * mask).sum())
    if pos == 0 or pos == n:
        return torch.ones_like(target)
    return torch.where(target > 0.5, n / (2 * pos), n / (2 * (n - pos)))


def _batches(lengths: Sequence[int], batch_size: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Endless seeded batches of row indices, each of similar lengths (less padding)."""
    while True:
        order = torch.randperm(len(lengths), generator=gen).tolist()
        chunk = batch_size * 16
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
            batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[b]


def _loss(
    logits: dict[str, torch.Tensor], t: dict[str, torch.Tensor], idx: list[int], risk_weight: float
) -> torch.Tensor:
    total, terms = torch.zeros(()), 0
    for head in ("safe", "values", "prompt"):
        mask = t[f"{head}_mask"][idx]
        if mask.any():
            bce = nn.functional.binary_cross_entropy_with_logits(
                logits[head][mask], t[head][idx][mask], reduction="none"
            )
            total = total + (bce * t[f"{head}_weight"][idx][mask]).mean()
            terms += 1
    mask = t["risk_mask"][idx]
    if mask.any():
        risk, target = logits["risk"][mask], t["risk"][idx][mask]  # (b, K)
        total = total + risk_weight * nn.functional.binary_cross_entropy_with_logits(risk, target)
        terms += 1
    return total / max(terms, 1)


def _optimizer(model: CrossEncoder, config: TrainConfig) -> torch.optim.Optimizer:
    model.encoder.get_input_embeddings().weight.requires_grad_(False)
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": encoder, "lr": config.lr},
            {"params": list(model.heads.parameters()), "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )


def _lr_scale(step: int, warm: int, steps: int) -> float:
    """Linear warm-up over ``warm`` steps, then linear decay to ~0 at ``steps``."""
    return (step + 1) / warm if step < warm else (steps - step) / (steps - warm + 1)


def train_cross_encoder(
    model: CrossEncoder,
    tokenizer: Any,
    rows: Sequence[Row],
    config: TrainConfig = TrainConfig(),
    progress: bool = False,
) -> list[float]:
    """Fine-tune ``model`` in place on ``rows``; the loss of every step. Leaves it in eval mode."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    encoded = encode_rows(
        tokenizer, [r.prompt for r in rows], [r.response for r in rows], config.budget
    )
    t = _targets(rows, model.risk_kinds)
    for head in ("safe", "values", "prompt"):
        t[f"{head}_weight"] = _balance(t[head], t[f"{head}_mask"])
    opt = _optimizer(model, config)
    base = [g["lr"] for g in opt.param_groups]
    warm = max(1, round(config.warmup * config.steps))
    batches = _batches([len(ids) for ids, _ in encoded], config.batch_size, gen)
    losses: list[float] = []
    model.train()
    with torch_threads(config.threads):
        for step in tqdm(range(config.steps), desc="training", disable=not progress):
            scale = _lr_scale(step, warm, config.steps)
            for group, lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = lr * scale
            idx = next(batches)
            logits = model(**_collate([encoded[i] for i in idx], tokenizer.pad_token_id))
            loss = _loss(logits, t, idx, config.risk_weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.item()))
    model.eval()
    return losses


# --------------------------------------------------------------------------- scoring


def predict(
    model: CrossEncoder,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str | None],
    budget: Budget = Budget(),
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Probabilities per head: ``safe``, ``values``, ``prompt`` (N,) and ``risk`` (N, K)."""
    n = len(prompts)
    out = {h: np.zeros(n) for h in ("safe", "values", "prompt")}
    out["risk"] = np.zeros((n, len(model.risk_kinds)))
    if n == 0:
        return out
    encoded = encode_rows(tokenizer, prompts, responses, budget)
    order = sorted(range(n), key=lambda i: len(encoded[i][0]))
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            logits = model(**_collate([encoded[i] for i in idx], tokenizer.pad_token_id))
            for head, value in logits.items():
                out[head][idx] = torch.sigmoid(value).double().numpy()
    return out


# --------------------------------------------------------------------------- files


def save_model(model: CrossEncoder, path: Path, meta: dict[str, Any]) -> None:
    """Weights (float32 safetensors) with the risk kinds and ``meta`` in the file's metadata."""
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    info = {"risk_kinds": json.dumps(model.risk_kinds), "meta": json.dumps(meta, default=str)}
    save_file(tensors, str(path), metadata=info)


def load_model(path: Path, encoder_folder: Path) -> tuple[CrossEncoder, dict[str, Any]]:
    """The model saved by ``save_model`` (eval mode) on the architecture of ``encoder_folder``,
    and its metadata."""
    from transformers import AutoConfig, AutoModel

    with safe_open(str(path), framework="pt") as fh:
        info = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    config = AutoConfig.from_pretrained(encoder_folder, local_files_only=True)
    encoder = AutoModel.from_config(config, add_pooling_layer=False)  # mean pooling instead
    model = CrossEncoder(encoder, json.loads(info["risk_kinds"]))
    model.load_state_dict(state)
    return model.eval(), json.loads(info.get("meta", "{}"))
