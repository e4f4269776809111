"""The server side of the correction memory: recall at inference, storage, management.

``MemoryService`` wraps the tenant-scoped ``MemoryStore`` (SQLite + FAISS, ``memory/``) for
the routes: every call takes the tenant the API key maps to, so no route can reach another
tenant's records (theirs answer 404, exactly like a missing one). The store is synchronous
and thread-safe; calls run in worker threads so the event loop never waits on SQLite, FAISS
or the embedder.

At inference ``recall`` finds the tenant's closest corrections to the question and
``guidance`` turns them into a compact block for the system message: the question, the
mistake, the correction. A failing recall fails open (the answer goes on without hits; logged,
counted in ``safework_memory_failures{op="recall"}``); a failing store is an
``UnavailableError`` (503), raised only when nothing was stored, so a retry never stores twice.
Each tenant's records and bytes are held to ``max_records`` / ``max_bytes`` (``quota.py``):
room is reserved before generating, so a full memory refuses before any work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from safework.errors import (
    ConfigError,
    NotFoundError,
    QuotaExceededError,
    RequestError,
    UnavailableError,
)
from safework.memory.mistakes import mistake_step, repeats
from safework.memory.records import PREFERENCE, PreferenceLimitError
from safework.memory.store import CorrectionRecord, MemoryHit, MemoryStore

from ..metrics import ServerMetrics
from ..protocol import MemoryOptions
from ..serving_common import default_encoder
from .quota import MemoryQuota, MiB, Reservation, record_bytes
from .watch import MistakeWatch

logger = logging.getLogger("safework.server")
T = TypeVar("T")
GUIDANCE_HEADER = (
    "The user corrected your reasoning on similar questions before. Do not repeat those "
    "mistakes; follow the corrections:"
)
PREFERENCES_HEADER = "The user's standing preferences. Follow them in every answer:"
EXCERPT_CHARS = 300


@dataclass
class MemorySettings:
    """What ``ServerConfig`` carries for the memory (``safework serve`` flags)."""

    folder: Path | None = None
    """``--memory-dir``; default ``<cache>/memory``."""
    store: str | None = None
    """``--memory-store``: a ``postgresql://`` URL shared by replicas; None: SQLite in
    ``folder``."""
    enabled: bool = True
    """Recall corrections at inference unless a request turns it off."""
    top_k: int = 3
    min_similarity: float = 0.5
    hnsw_threshold: int = 20_000
    """Records per tenant from which the index is HNSW (approximate) instead of exact."""
    max_records: int = 10_000
    """Records one tenant may keep (``--memory-max-records``; 0: no limit)."""
    max_bytes: int = 64 * MiB
    """UTF-8 bytes of text one tenant may keep (``--memory-max-bytes``; 0: no limit)."""
    mistake_steps: int = 4
    """Steps of each plain answer checked against the tenant's mistake keys while it is
    generated (``--memory-mistake-steps``; 0: recall by question only). ``watch.py``."""
    mistake_similarity: float = 0.65
    """A draft step at least this similar to a corrected mistake, and holding a word only the
    mistake had (or at least ``SURE_SIMILARITY`` similar), is replaced by the correction
    (``--memory-mistake-similarity``; ``memory/mistakes.py``'s ``repeats``). Chosen with
    bench/memory_mistakes.py: at 0.6 a control answer was rewritten with another fact's
    correction; at 0.8 alone only 17 of 77 repeated mistakes were caught."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError("--memory-top-k must be at least 1")
        if self.max_records < 0 or self.max_bytes < 0:
            raise ConfigError("--memory-max-records and --memory-max-bytes must be >= 0 (0: none)")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError("--memory-min-similarity must lie in [-1, 1]")
        if not -1.0 <= self.mistake_similarity <= 1.0:
            raise ConfigError("--memory-mistake-similarity must lie in [-1, 1]")
        if self.mistake_steps < 0:
            raise ConfigError("--memory-mistake-steps must be >= 0 (0: off)")


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def guidance(hits: list[MemoryHit], preferences: list[CorrectionRecord] | None = None) -> str:
    """The block the model reads: the tenant's preferences (one line each, whole: they are
    short), then one numbered entry per past correction."""
    lines = []
    if preferences:
        lines.append(PREFERENCES_HEADER)
        lines += [f"- {' '.join(p.text.split())}" for p in preferences]
    if hits:
        lines.append(GUIDANCE_HEADER)
    for i, hit in enumerate(hits, 1):
        r = hit.record
        lines.append(f"{i}. Question: {_excerpt(r.question)}")
        lines.append(f"   Mistake: {_excerpt(r.reasoning)}")
        lines.append(f"   Correction: {_excerpt(r.corrected_reasoning)}")
        if r.answer:
            lines.append(f"   Answer: {_excerpt(r.answer)}")
    return "\n".join(lines)


def _repeats(step: str, hit: MemoryHit, threshold: float) -> bool:
    """Whether the draft ``step`` repeats the mistake of ``hit``'s record (``repeats``)."""
    mistake = mistake_step(hit.record.reasoning, hit.record.corrected_reasoning)
    return mistake is not None and repeats(step, mistake, hit.similarity, threshold)


def not_found(record_id: str) -> NotFoundError:
    return NotFoundError(
        f"No memory record {record_id!r}.", param="memory_id", code="memory_not_found"
    )


class MemoryService:
    def __init__(self, store: MemoryStore, settings: MemorySettings, metrics: ServerMetrics):
        self.store = store
        self.settings = settings
        self.metrics = metrics
        for tenant, count in store.counts().items():
            metrics.count_memory_records(tenant, count)
        self.quota = MemoryQuota(settings.max_records, settings.max_bytes, store.usage())
        """Each tenant's records and bytes against ``max_records`` / ``max_bytes``."""

    @classmethod
    async def load(cls, settings: MemorySettings, metrics: ServerMetrics) -> MemoryService:
        def open_store() -> MemoryStore:
            from safework.files import cache_dir

            folder = settings.folder or cache_dir() / "memory"
            encoder = default_encoder()
            return MemoryStore(
                folder, encoder, hnsw_threshold=settings.hnsw_threshold, database=settings.store
            )

        store = await asyncio.to_thread(open_store)
        logger.info("correction memory: %s (indexes in %s)", store.db, store.folder)
        service = cls(store, settings, metrics)
        store.on_remote_change = service._remote_change
        return service

    # ------------------------------------------------------------------ inference

    def _enabled(self, options: MemoryOptions) -> bool:
        """The memory guides this request: its own setting, else the server's."""
        return self.settings.enabled if options.enabled is None else options.enabled

    async def recall(
        self, tenant: str, question: str, options: MemoryOptions | None
    ) -> list[MemoryHit]:
        """The tenant's closest corrections to ``question`` (none when memory is off)."""
        options = options or MemoryOptions()
        if not self._enabled(options) or not question.strip():
            return []
        k = options.top_k or self.settings.top_k
        threshold = (
            self.settings.min_similarity
            if options.min_similarity is None
            else options.min_similarity
        )
        start = time.perf_counter()
        try:
            hits = await asyncio.to_thread(self.store.search, tenant, question, k, threshold)
        except Exception:  # fail open: the answer goes on without past corrections
            logger.exception("memory recall failed; answering without corrections")
            self.metrics.memory_failures.labels("recall").inc()
            return []
        self.metrics.memory_latency.observe(time.perf_counter() - start)
        self.metrics.memory_hits.observe(len(hits))
        return hits

    def mistake_watch(self, tenant: str, options: MemoryOptions | None) -> MistakeWatch | None:
        """A watch over the first steps of this tenant's answer (``watch.py``), or None: memory
        or mistake keys off for the request, or the tenant has no mistake keys (then nothing is
        held back and nothing costs)."""
        options = options or MemoryOptions()
        if not self._enabled(options) or options.mistakes is False:
            return None
        if self.settings.mistake_steps == 0 or not self.store.has_mistakes(tenant):
            return None
        threshold = (
            self.settings.mistake_similarity
            if options.mistake_similarity is None
            else options.mistake_similarity
        )

        async def find(step: str, used: frozenset[str]) -> MemoryHit | None:
            start = time.perf_counter()
            try:
                found = await asyncio.to_thread(
                    self.store.search_mistakes, tenant, [step], len(used) + 3, threshold
                )
            except Exception:  # fail open, like recall: the draft goes on unchecked
                logger.exception("memory mistake search failed; the answer goes on unchecked")
                self.metrics.memory_failures.labels("recall").inc()
                return None
            self.metrics.memory_latency.observe(time.perf_counter() - start)
            hit = next(
                (h for h in found[0] if h.record.id not in used and _repeats(step, h, threshold)),
                None,
            )
            self.metrics.memory_mistakes.labels("kept" if hit is None else "replaced").inc()
            return hit

        return MistakeWatch(find, steps=self.settings.mistake_steps)

    async def preferences(
        self, tenant: str, options: MemoryOptions | None
    ) -> list[CorrectionRecord]:
        """The tenant's standing preferences (none when memory is off for the request; fails
        open like ``recall``)."""
        if not self._enabled(options or MemoryOptions()):
            return []
        try:
            return await asyncio.to_thread(self.store.preferences, tenant)
        except Exception:
            logger.exception("reading memory preferences failed; answering without them")
            self.metrics.memory_failures.labels("recall").inc()
            return []

    # ------------------------------------------------------------------ records

    def reserve(self, tenant: str, size: int) -> Reservation:
        """Claim room for one record of at least ``size`` bytes before generating it; a
        ``QuotaExceededError`` (429) when the tenant's memory is full."""
        return self.quota.reserve(tenant, size)

    async def remember(
        self, tenant: str, reservation: Reservation | None = None, **fields: Any
    ) -> CorrectionRecord:
        """Store a correction; durable (committed) when this returns. It takes the place of
        ``reservation`` in the tenant's quota (without one it is simply counted)."""
        try:
            with self._unavailable("store", "cannot store now", "nothing was stored, retry later"):
                record = await asyncio.to_thread(self.store.add, tenant, **fields)
        except PreferenceLimitError as e:
            raise QuotaExceededError(
                f"{e} (DELETE /v1/memory/{{id}}; list them with GET /v1/memory?kind=preference)",
                param="kind",
                code="memory_quota_exceeded",
            ) from e
        except ValueError as e:
            raise RequestError(str(e)) from e
        self.metrics.count_memory_records(tenant, 1)
        size = record_bytes(fields)
        if reservation is not None:
            reservation.commit(size)
        else:
            self.quota.added(tenant, size)
        return record

    @contextlib.contextmanager
    def _unavailable(self, op: str, what: str, then: str) -> Iterator[None]:
        """The database failing (or away: a restarted PostgreSQL) is a 503 that names it;
        the failed transaction was rolled back, so ``then`` (a retry) is safe."""
        try:
            yield
        except (*self.store.db.errors, OSError) as e:
            logger.warning("memory %s failed: %s: %s", op, type(e).__name__, e)
            self.metrics.memory_failures.labels(op).inc()
            raise UnavailableError(
                f"the correction memory {what} ({type(e).__name__}); {then}",
                code="memory_unavailable",
            ) from e

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        with self._unavailable("read", "cannot be read now", "retry later"):
            return await asyncio.to_thread(fn, *args)

    async def get(self, tenant: str, record_id: str) -> CorrectionRecord:
        record = await self._read(self.store.get, tenant, record_id)
        if record is None:
            raise not_found(record_id)
        return record

    async def delete(self, tenant: str, record_id: str) -> None:
        record = await self._read(self.store.get, tenant, record_id)
        if record is None:
            raise not_found(record_id)
        with self._unavailable("delete", "cannot delete now", "nothing was deleted, retry later"):
            deleted = await asyncio.to_thread(self.store.delete, tenant, record_id)
        if not deleted:
            raise not_found(record_id)
        self.metrics.count_memory_records(tenant, -1)
        self.quota.removed(tenant, record_bytes(vars(record)))

    async def add_preference(self, tenant: str, text: str, model: str) -> CorrectionRecord:
        """Store a standing preference (``POST /v1/memory``), counted in the tenant's quota."""
        fields = {"question": text, "corrected_reasoning": text, "model": model}
        reservation = self.reserve(tenant, record_bytes(fields))
        try:
            return await self.remember(
                tenant,
                reservation,
                question=text,
                reasoning="",
                corrected_reasoning=text,
                model=model,
                kind=PREFERENCE,
            )
        finally:
            reservation.release()

    async def list(
        self,
        tenant: str,
        limit: int,
        after: str | None,
        contains: str | None,
        kind: str | None = None,
    ) -> tuple[list[CorrectionRecord], bool]:
        if after is not None and await self._read(self.store.get, tenant, after) is None:
            raise not_found(after)
        return await self._read(
            lambda: self.store.list(tenant, limit=limit, after=after, contains=contains, kind=kind)
        )

    def _remote_change(self, tenant: str) -> None:
        """Another process changed ``tenant``'s records (the store's listener thread): take
        its usage from the database, so quotas and the records gauge hold across replicas.
        Requests racing on several replicas can still pass a limit by one record each."""
        try:
            records, size = self.store.usage(tenant).get(tenant, (0, 0))
        except Exception:
            logger.warning("the memory usage of a tenant could not be refreshed", exc_info=True)
            return
        before = self.quota.used.get(tenant)
        self.metrics.count_memory_records(tenant, records - (before.records if before else 0))
        self.quota.set_used(tenant, records, size)

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)
