"""Hidden states for ``safework-train analyze mi``: one forward pass per batch of answers.

For each item (a prompt rendered with the chat template, the answer's token ids, a reference
text) ``answer_states`` returns, for each chosen layer, the hidden state at every answer token:
the state the model computed *after reading* that token (row ``t`` is at the position of answer
token ``t``), so a peak at row ``t`` is labelled with token ``t``. ``reference_states`` runs the
reference as an assistant answer to the same prompt and averages its states over its tokens:
the representation the answer's states are compared with (``mi.py``).

Layers are indices into ``output_hidden_states`` (0 is the embeddings, ``n_layers`` the last
block's output); negative indices count from the end. ``default_layers`` is a middle layer and
the last. Batches are right-padded; padding never reaches a returned row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Item", "answer_states", "default_layers", "reference_states", "resolve_layers"]


@dataclass(frozen=True)
class Item:
    prompt_ids: list[int]
    """The prompt as the model reads it (chat template applied, generation prompt included)."""
    answer_ids: list[int]


def resolve_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    """``layers`` as indices in ``0..n_layers`` (negative ones from the end); ``ValueError``
    naming the first one out of range."""
    out = []
    for layer in layers:
        index = layer + n_layers + 1 if layer < 0 else layer
        if not 0 <= index <= n_layers:
            raise ValueError(f"layer {layer} is outside 0..{n_layers} (or -{n_layers + 1}..-1)")
        out.append(index)
    return out


def default_layers(n_layers: int) -> list[int]:
    """A middle layer and the last."""
    return sorted({max(1, n_layers // 2), n_layers})


def _forward(model: Any, sequences: list[list[int]], pad_id: int) -> tuple[Any, ...]:
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True
        )
    return out.hidden_states


def answer_states(
    model: Any, items: Sequence[Item], layers: Sequence[int], pad_id: int, batch_size: int = 8
) -> list[dict[int, np.ndarray]]:
    """Per item, ``{layer: (len(answer_ids), d)}`` float32 states at the answer's tokens."""
    out: list[dict[int, np.ndarray]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        hidden = _forward(model, [i.prompt_ids + i.answer_ids for i in chunk], pad_id)
        for row, item in enumerate(chunk):
            lo, hi = len(item.prompt_ids), len(item.prompt_ids) + len(item.answer_ids)
            out.append({layer: hidden[layer][row, lo:hi].float().cpu().numpy() for layer in layers})
    return out


def reference_states(
    model: Any, items: Sequence[Item], layers: Sequence[int], pad_id: int, batch_size: int = 8
) -> list[dict[int, np.ndarray]]:
    """Per item, ``{layer: (d,)}``: the mean state over the tokens of ``answer_ids`` (here the
    reference's ids)."""
    return [
        {layer: states.mean(axis=0) for layer, states in per_item.items()}
        for per_item in answer_states(model, items, layers, pad_id, batch_size)
    ]
