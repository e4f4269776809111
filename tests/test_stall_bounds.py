"""One heavy request must not stall the others: the embedder, ``focus``, page reads, ``ddgs``.

Issue 17, finding 4. Fakes only at the edges: a batch function (or a tiny random BERT that
sleeps per batch) for the sentence model, ``httpx.MockTransport`` for the web, a ``DDGS``
whose ``text`` hangs. The last test runs the whole app: a search that reads a 50 MB page
with a slow embedder, while ``/health`` is probed and a plain chat (whose memory recall needs
the same embedder) runs beside it.

Timing bounds are loose (several times the expected figure) so a loaded 2-core machine passes;
the failure they catch is of another order (seconds to minutes of waiting).

Run: ``pytest tests/test_stall_bounds.py``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import BertConfig, BertModel, BertTokenizerFast

from safework.engine.embed_queue import BatchedEncoder
from safework.engine.embedder import Embedder
from safework.memory.store import MemoryStore
from safework.search import base as search_base
from safework.search.base import Document, SearchBackend, SearchError, SearchResult, SearchTimeout
from safework.search.duckduckgo import DuckDuckGoBackend
from safework.search.filtering import FOCUS_MAX_CHUNKS, focus
from safework.search.webfetch import DEFAULT_MAX_TEXT_CHARS, SafeFetcher
from safework.server import search as server_search
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings
from safework.server.search import SearchSettings

from .conftest import serve
from .fakes import BagOfWordsEncoder, ScriptEngine

NEEDLE = "Tungsten has atomic number 74 and the highest melting point of all metals."
QUESTION = "What is the atomic number of tungsten?"


def huge_page(megabytes: int = 50, needle_at: int = 150_000) -> str:
    """About ``megabytes`` MB of distinct filler paragraphs (none cached twice), with
    ``NEEDLE`` near ``needle_at`` characters."""
    para = "Filler paragraph {} about nothing in particular, repeated to make the page long. " * 5
    count = megabytes * 1_000_000 // (len(para) + 2)
    before = needle_at // (len(para) + 2)
    paras = [para.format(*[i] * 5) for i in range(count)]
    return "\n\n".join([*paras[:before], NEEDLE, *paras[before:]])


# --------------------------------------------------------------------------- the embedder


def counting_batch(seen: list[list[str]], delay_s: float = 0.0) -> Any:
    def batch(texts: list[str]) -> np.ndarray:
        seen.append(list(texts))
        time.sleep(delay_s)
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    return batch


def test_cache_keys_are_hashes_and_the_cache_is_bounded() -> None:
    seen: list[list[str]] = []
    enc = BatchedEncoder(counting_batch(seen), 2, cache_size=8)
    texts = [f"{i} " + "long text " * 1000 for i in range(20)]
    enc.encode(texts)
    assert len(enc.cache) == 8
    assert all(isinstance(k, bytes) and len(k) == 16 for k in enc.cache.keys())  # noqa: SIM118 (a method)
    enc.encode(texts[-8:])  # the most recent eight are remembered
    assert sum(len(s) for s in seen) == 20


def test_texts_per_call_and_chars_per_text_are_capped() -> None:
    seen: list[list[str]] = []
    enc = BatchedEncoder(counting_batch(seen), 2, max_texts=10, max_chars=100)
    with pytest.raises(ValueError, match="at most 10 texts"):
        enc.encode(["x"] * 11)
    enc.encode(["y" * 1_000_000])
    assert [len(t) for t in seen[0]] == [100]


def test_a_huge_call_does_not_hold_the_encoder() -> None:
    """50 batches of 40 ms for one caller; another's single text waits for one batch."""
    seen: list[list[str]] = []
    enc = BatchedEncoder(counting_batch(seen, delay_s=0.04), 2, batch_size=8)
    big = threading.Thread(target=enc.encode, args=([f"text {i}" for i in range(400)],))
    big.start()
    while not seen:
        time.sleep(0.005)
    t0 = time.monotonic()
    enc.encode(["a small request"])
    waited = time.monotonic() - t0
    assert big.is_alive()  # the big call is still going...
    assert waited < 0.5  # ...and the small one did not wait for it (2 s in all)
    big.join()


async def test_aencode_takes_no_thread_from_the_default_pool() -> None:
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(default)
    release = threading.Event()
    blocker = asyncio.ensure_future(asyncio.to_thread(release.wait, 10))
    try:
        enc = BatchedEncoder(counting_batch([]), 2)
        vecs = await asyncio.wait_for(enc.aencode(["a", "b"]), 2.0)
        assert vecs.shape == (2, 2)
    finally:
        release.set()
        await blocker


# --------------------------------------------------------------------------- focus, pages


def test_focus_on_a_50_mb_page_is_bounded_and_still_finds_the_answer() -> None:
    page = huge_page()
    calls: list[int] = []
    bag = BagOfWordsEncoder()

    class Counting:
        def encode(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return bag.encode(texts)

    t0 = time.monotonic()
    excerpt = focus(page, QUESTION, 600, Counting())
    elapsed = time.monotonic() - t0
    assert calls == [FOCUS_MAX_CHUNKS + 1]  # the query and the shortlisted pieces, once
    assert NEEDLE in excerpt
    assert len(excerpt) <= 600
    assert elapsed < 3.0  # ~0.1 s: only the first 200,000 characters are cut into pieces


def test_focus_rejects_a_degenerate_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_chars"):
        focus("a " * 1000, "a", 10, BagOfWordsEncoder(), chunk_chars=0)


async def test_a_fetched_page_keeps_at_most_200k_characters() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(50 * 16):  # 50 MiB offered
            yield b"word " * 13_107

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/plain"}, content=body())

    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    fetcher = SafeFetcher(transport=httpx.MockTransport(handler), resolver=resolve)
    page = await fetcher.fetch("http://example.com/big")
    await fetcher.close()
    assert page.truncated
    assert len(page.text) == DEFAULT_MAX_TEXT_CHARS


# --------------------------------------------------------------------------- ddgs threads


class HangingDDGS:
    """``ddgs.DDGS`` whose ``text`` blocks until ``release`` is set (a dead network)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def __call__(self, timeout: int) -> HangingDDGS:
        return self

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.started += 1
        if not self.release.wait(10):
            raise TimeoutError("fake ddgs gave up")
        return [{"title": query, "href": f"https://example.org/{query}", "body": "found"}]


async def test_hung_ddgs_calls_stay_in_their_own_threads_and_then_fail_fast() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
    fake = HangingDDGS()
    backend = DuckDuckGoBackend(
        ddgs_class=fake, timeout_s=0.2, retries=0, threads=2, slot_wait_s=0.05
    )
    try:
        for query in ("one", "two"):
            with pytest.raises(SearchTimeout):
                await backend.search(query, 3)
        # The two hung threads are not the loop's: its default pool still answers at once.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 1.0) == 42
        t0 = time.monotonic()
        with pytest.raises(SearchError, match="busy") as caught:
            await backend.search("three", 3)
        assert not isinstance(caught.value, SearchTimeout)
        assert time.monotonic() - t0 < 0.15
        assert fake.started == 2  # the refused search never reached ddgs
    finally:
        fake.release.set()
    for _ in range(500):  # the hung calls end: their slots come back
        if not backend._threads.in_use:
            break
        await asyncio.sleep(0.01)
    assert [r.title for r in await backend.search("four", 3)] == ["four"]
    await backend.close()


async def test_a_batch_larger_than_the_pool_still_runs() -> None:
    fake = HangingDDGS()
    fake.release.set()
    backend = DuckDuckGoBackend(ddgs_class=fake, timeout_s=2.0, threads=2, slot_wait_s=0.0)
    results = await backend.search_many([f"q{i}" for i in range(7)], 1)
    assert [r[0].title for r in results] == [f"q{i}" for i in range(7)]
    await backend.close()


# --------------------------------------------------------------------------- the whole app

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "filler", "text", "tungsten", "74"]
KEYS = {"sk-alice-0001": "alice"}
ALICE = {"Authorization": "Bearer sk-alice-0001"}


class SlowEmbedder(Embedder):
    """A tiny random BERT that takes ``delay_s`` per batch, like MiniLM on a busy CPU."""

    delay_s = 0.25

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.big_batch = threading.Event()

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        if len(texts) >= 16:
            self.big_batch.set()
        time.sleep(self.delay_s)
        return super()._encode_batch(texts)


@pytest.fixture(scope="module")
def slow_embedder(tmp_path_factory: pytest.TempPathFactory) -> SlowEmbedder:
    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return SlowEmbedder(folder)


class HugePageBackend(SearchBackend):
    """One search result, whose page is 50 MB of text."""

    name = "huge"

    def __init__(self) -> None:
        self.page = huge_page()

    async def search(self, query: str, k: int) -> list[SearchResult]:
        return [SearchResult("big", "Big page", self.page[:200], "https://big.test/")]

    async def read(self, doc_id: str) -> Document:
        return Document("big", "Big page", self.page, "https://big.test/")

    async def close(self) -> None:
        """Nothing to close."""


def load_huge_page(name: str, arg: str, ctx: Any) -> HugePageBackend:
    return HugePageBackend()


@pytest.fixture
def app(
    slow_embedder: SlowEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setitem(search_base.LOADERS, "huge", "tests.test_stall_bounds:load_huge_page")
    monkeypatch.setattr(server_search, "default_encoder", lambda cache: slow_embedder)
    monkeypatch.setattr(memory_serving, "default_encoder", lambda: slow_embedder)
    store = MemoryStore(tmp_path, slow_embedder, background=False)
    store.add(
        "alice",
        question="What is the boiling point of water?",
        reasoning="wrong",
        corrected_reasoning="right",
        model="fake-model",
    )
    store.close()
    engine = ScriptEngine(
        [
            "<search>tungsten</search>",
            "<read>1</read>",
            "<answer>74</answer><confidence>7</confidence>",
        ],
        routes={"PLAIN": "plain answer"},
    )
    search = SearchSettings(
        backends={"huge": "huge:page"},
        defaults={"prior_check": False, "retrieve_first": False, "min_similarity": -1.0},
        timeout_s=30.0,
    )
    memory = MemorySettings(folder=tmp_path, min_similarity=-1.0)
    with serve(engine, api_keys=KEYS, memory=memory, search=search) as client:
        yield client


def test_health_and_a_plain_chat_stay_fast_while_a_search_reads_a_huge_page(
    app: TestClient, slow_embedder: SlowEmbedder
) -> None:
    slow_embedder.big_batch.clear()
    heavy: dict[str, Any] = {}

    def search() -> None:
        body = {"model": "fake-model:search", "messages": [{"role": "user", "content": QUESTION}]}
        heavy["response"] = app.post("/v1/chat/completions", json=body, headers=ALICE)

    searcher = threading.Thread(target=search)
    searcher.start()
    assert slow_embedder.big_batch.wait(20), "the search never reached focus()"
    chat: dict[str, Any] = {}

    def plain() -> None:
        t0 = time.monotonic()
        body = {"messages": [{"role": "user", "content": "PLAIN question"}]}
        chat["response"] = app.post("/v1/chat/completions", json=body, headers=ALICE)
        chat["seconds"] = time.monotonic() - t0

    chatter = threading.Thread(target=plain)
    chatter.start()
    probes = []
    for _ in range(100):
        t0 = time.monotonic()
        assert app.get("/health").status_code == 200
        probes.append(time.monotonic() - t0)
    chatter.join(10)
    searcher.join(30)
    p99 = sorted(probes)[math.ceil(0.99 * len(probes)) - 1]
    assert p99 < 0.1, f"/health p99 {p99 * 1000:.0f} ms"
    assert chat["response"].status_code == 200, chat["response"].text
    assert chat["response"].json()["choices"][0]["message"]["content"] == "plain answer"
    assert chat["seconds"] < 2.0  # a batch of the search's, then its own: ~0.5 s
    assert heavy["response"].status_code == 200, heavy["response"].text
    assert heavy["response"].json()["choices"][0]["message"]["content"] == "74"
