"""The pieces every built-in data recipe shares: a ``Row`` before it gets its id, seeds derived
from labels, quotas, and the dev-first group split.

They live apart from the recipes (``mix.py``) so that any module writing rows can use them
without importing the recipes. Run the doctests: ``pytest --doctest-modules training/rows.py``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safework.errors import ConfigError
from safework.value_models.data import normalize

__all__ = ["Row", "assign_groups", "derive_seed", "need", "quotas", "seeded_rng", "shuffled"]


@dataclass
class Row:
    """One conversation before it gets its id: a user prompt and the assistant's turn."""

    task: str
    source: str
    prompt: str
    content: str
    meta: dict[str, Any]
    messages: list[dict[str, Any]] | None = None
    """The whole conversation when it is more than the prompt and ``content`` (a search
    transcript: the protocol's system message, and ``masked`` spans on the assistant turn)."""

    @property
    def key(self) -> str:
        """The prompt's identity for dedupe and the split check."""
        return normalize(self.prompt)

    def record(self, row_id: str) -> dict[str, Any]:
        """The JSONL object (the dataset format)."""
        return {
            "id": row_id,
            "task": self.task,
            "source": self.source,
            "messages": self.messages
            or [
                {"role": "user", "content": self.prompt},
                {"role": "assistant", "content": self.content},
            ],
            "meta": self.meta,
        }


def derive_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from ``seed`` and labels: far apart for different labels."""
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def seeded_rng(seed: int, *parts: str) -> random.Random:
    """A ``random.Random`` seeded by ``derive_seed(seed, *parts)``."""
    return random.Random(derive_seed(seed, *parts))


def quotas(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainders; sums to ``total``).

    >>> quotas(10, {"a": 0.5, "b": 0.3, "c": 0.2})
    {'a': 5, 'b': 3, 'c': 2}
    """
    norm = sum(weights.values())
    exact = {name: total * w / norm for name, w in weights.items()}
    out = {name: int(v) for name, v in exact.items()}
    by_remainder = sorted(exact, key=lambda n: (out[n] - exact[n], n))
    for name in by_remainder[: total - sum(out.values())]:
        out[name] += 1
    return out


def assign_groups(
    groups: Sequence[Sequence[Row]], n_dev: int, n_train: int
) -> tuple[list[Row], list[Row]]:
    """Fill dev, then train, group by group (in the given order); a group never straddles the
    split (rows of a group that do not fit are left out)."""
    dev: list[Row] = []
    train: list[Row] = []
    for group in groups:
        if len(dev) < n_dev:
            dev.extend(group[: n_dev - len(dev)])
        elif len(train) < n_train:
            train.extend(group[: n_train - len(train)])
        else:
            break
    return dev, train


def shuffled(items: Iterable[Any], seed: int, label: str) -> list[Any]:
    """``items`` in an order that depends only on ``seed`` and ``label``."""
    out = list(items)
    seeded_rng(seed, "order", label).shuffle(out)
    return out


def need(rows: Sequence[Row], want: int, key: str, what: str) -> None:
    """Raise ``ConfigError`` naming config key ``key`` when ``rows`` has fewer than ``want``."""
    if len(rows) < want:
        raise ConfigError(
            f"{key}: wanted {want} {what} but the sources give only {len(rows)} after the dev "
            f"split and dedupe; lower {key}"
        )
