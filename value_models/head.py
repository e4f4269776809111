"""The head of the built-in value models: a small MLP over a pair of sentence embeddings.

What: ``PairHead`` maps the prompt and response embeddings ``[e(p), e(r), e(p) * e(r)]`` to one
logit of P(label = 1); ``train_head`` fits it, ``predict`` scores pairs, ``save_head`` /
``load_head`` keep it in ``head.safetensors`` (weights, with the ``HeadConfig`` and embedding
size in the file's metadata).

Why apart from ``builtin.py``: the head knows nothing about data, files of a model folder or
the encoder; it takes arrays and gives arrays, so it can be trained and tested on any vectors.

How: AdamW on class-balanced BCE for a fixed number of seeded steps (no early stopping), one
torch thread. ``builtin.train_builtin`` is the entry point that calls it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

__all__ = ["HeadConfig", "PairHead", "load_head", "predict", "save_head", "train_head"]


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
