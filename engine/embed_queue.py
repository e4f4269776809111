"""Bounded, fair sentence embedding: a hash-keyed LRU cache and one dedicated worker thread.

Why: search relevance, ``focus`` over read pages, memory recall and the built-in value models
share one sentence encoder. It used to hold one lock for a caller's whole input and remember
texts by their full content, so one request with a huge input held every other caller back
for as long as it liked, and the cache kept whole documents alive as keys.

How (``BatchedEncoder``, which ``embedder.Embedder`` builds on):

- a call takes at most ``max_texts`` texts (more is a ``ValueError``: callers slice); each
  text is cut at ``max_chars`` characters first (the model reads 256 tokens at most anyway);
- the cache keys are BLAKE2b-128 digests of ``(namespace, text)``: 16 bytes per entry, never
  the text; it keeps the ``cache_size`` most recently used vectors;
- misses are deduplicated, sorted by length (less padding) and cut into batches of at most
  ``batch_size``; each batch is one job on a single thread owned by this encoder (not the
  event loop's default pool), and a caller submits its next batch only when the previous one
  is done. Jobs run in arrival order, so a small call waits for at most one batch of a big
  one: callers interleave batch by batch;
- ``encode`` blocks the calling thread (call it from a worker thread); ``aencode`` awaits on
  the event loop without taking a thread from any other pool.

Tests build a ``BatchedEncoder`` over a fake batch function (``tests/test_stall_bounds.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CACHE_SIZE",
    "MAX_TEXTS_PER_CALL",
    "MAX_TEXT_CHARS",
    "BatchedEncoder",
    "EmbeddingCache",
    "text_key",
]

DEFAULT_BATCH_SIZE = 32
"""Texts per job: bounds how long one job keeps the worker (and the next caller) busy."""
MAX_TEXTS_PER_CALL = 4096
MAX_TEXT_CHARS = 8192
"""Characters of a text kept before tokenising (256 wordpiece tokens rarely need 1,500)."""
DEFAULT_CACHE_SIZE = 4096
"""Vectors remembered (384 float32 each for MiniLM: ~6 MiB)."""

BatchFn = Callable[[list[str]], np.ndarray]
"""``texts -> (len(texts), dim)`` float32 vectors; runs on the encoder's own thread only."""
Batch = list[tuple[bytes, str]]


def text_key(namespace: str, text: str) -> bytes:
    """The cache key of ``text``: a 16-byte BLAKE2b digest, never the text itself.

    >>> len(text_key("minilm", "x" * 1_000_000))
    16
    """
    digest = hashlib.blake2b(namespace.encode(), digest_size=16)
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


class EmbeddingCache:
    """The ``max_size`` most recently used vectors by ``text_key``; thread-safe."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max(0, max_size)
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
            return vector

    def put(self, key: bytes, vector: np.ndarray) -> None:
        if self.max_size == 0:
            return
        with self._lock:
            self._items[key] = vector
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def keys(self) -> list[bytes]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


class BatchedEncoder:
    """``encode``/``aencode`` over a batch function, cached, bounded and fair (module doc)."""

    dim: int

    def __init__(
        self,
        encode_batch: BatchFn,
        dim: int,
        *,
        namespace: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_texts: int = MAX_TEXTS_PER_CALL,
        max_chars: int = MAX_TEXT_CHARS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if batch_size < 1 or max_texts < 1 or max_chars < 1:
            raise ValueError("batch_size, max_texts and max_chars must be >= 1")
        self.dim = dim
        self.batch_size = batch_size
        self.max_texts = max_texts
        self.max_chars = max_chars
        self._batch_fn = encode_batch
        self._namespace = namespace
        self.cache = EmbeddingCache(cache_size)
        self._worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="safework-embed", initializer=_mark_worker
        )

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(N, dim)`` float32 vectors of ``texts`` in order; blocks the calling thread."""
        out, keys, batches = self._plan(texts, batch_size)
        found: dict[bytes, np.ndarray] = {}
        for batch in batches:
            found.update(self._submit(batch).result())
        return self._fill(out, keys, found)

    async def aencode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``encode`` for the event loop: waits on the worker without holding any thread."""
        out, keys, batches = self._plan(texts, batch_size)
        found: dict[bytes, np.ndarray] = {}
        for batch in batches:
            found.update(await asyncio.wrap_future(self._submit(batch)))
        return self._fill(out, keys, found)

    def close(self) -> None:
        """Stop the worker thread once its current job is done (queued jobs are dropped)."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    # ---- the steps

    def _plan(
        self, texts: Sequence[str], batch_size: int | None
    ) -> tuple[np.ndarray, list[bytes], list[Batch]]:
        """The output with cached rows filled, every text's key, and the misses in batches."""
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {size})")
        if len(texts) > self.max_texts:
            raise ValueError(
                f"at most {self.max_texts} texts per call (got {len(texts)}); embed in slices"
            )
        cut = [t[: self.max_chars] for t in texts]
        keys = [text_key(self._namespace, t) for t in cut]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, str] = {}
        for row, (key, text) in enumerate(zip(keys, cut, strict=True)):
            vector = self.cache.get(key)
            if vector is None:
                missing.setdefault(key, text)
            else:
                out[row] = vector
        return out, keys, list(_batches(missing, size))

    def _submit(self, batch: Batch) -> Future[dict[bytes, np.ndarray]]:
        if getattr(_ON_WORKER, "flag", False):  # called from a batch function: no deadlock
            done: Future[dict[bytes, np.ndarray]] = Future()
            done.set_result(self._run(batch))
            return done
        return self._worker.submit(self._run, batch)

    def _run(self, batch: Batch) -> dict[bytes, np.ndarray]:
        """One job, on the worker: what another caller embedded meanwhile is not redone."""
        found = {key: v for key, _ in batch if (v := self.cache.get(key)) is not None}
        todo = [(key, text) for key, text in batch if key not in found]
        if todo:
            vectors = np.asarray(self._batch_fn([text for _, text in todo]), dtype=np.float32)
            if vectors.shape != (len(todo), self.dim):
                raise RuntimeError(f"the batch function returned {vectors.shape} vectors")
            for (key, _), vector in zip(todo, vectors, strict=True):
                self.cache.put(key, vector)
                found[key] = vector
        return found

    def _fill(
        self, out: np.ndarray, keys: list[bytes], found: dict[bytes, np.ndarray]
    ) -> np.ndarray:
        for row, key in enumerate(keys):
            if key in found:
                out[row] = found[key]
        return out


_ON_WORKER = threading.local()


def _mark_worker() -> None:
    """Marks an encoder's worker thread (module level: the thread must not keep the encoder)."""
    _ON_WORKER.flag = True


def _batches(missing: dict[bytes, str], size: int) -> Iterator[Batch]:
    """The misses, shortest first, ``size`` at a time."""
    order = sorted(missing.items(), key=lambda kv: len(kv[1]))
    for start in range(0, len(order), size):
        yield order[start : start + size]
