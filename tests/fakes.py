"""A small, deterministic ``Engine`` for unit tests of the server.

Tokens are characters (one id per character), the chat template is a plain tagged
transcript, and every choice "generates" a scripted reply one word per step, so tests can
reason exactly about token counts, stops, ``n``, logprobs and aborts.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from safework.engine.base import (
    ChoiceDelta,
    Engine,
    EngineOutput,
    SamplingConfig,
    TokenLogprob,
    TopLogprob,
)
from safework.errors import EngineDeadError, EngineError, RequestError
from safework.search.base import (
    Document,
    DocumentNotFound,
    SearchBackend,
    SearchError,
    SearchResult,
)
from safework.value_models.base import ValueModel, ValueScore

IMAGE_TOKEN_ID = 0xF0000
"""The fake engine's image placeholder token (a private-use code point)."""
IMAGE_TOKENS = 16
"""Prompt tokens one image counts for in the fake engine's usage."""


def reading_images(engine: FakeEngine) -> FakeEngine:
    """``engine`` as a model that reads images: ``<image>`` is one token, which "the model"
    expands into ``IMAGE_TOKENS`` (counted in ``prompt_tokens``)."""
    engine.image_placeholder = "<image>"
    engine.image_token_id = IMAGE_TOKEN_ID
    engine.image_markers = ("<image>",)
    return engine


class FakeEngine(Engine):
    def __init__(
        self,
        reply: str = "Hello from the fake engine .",
        *,
        model_id: str = "fake-model",
        max_model_len: int = 512,
        step_delay: float = 0.0,
        fail_after: int | None = None,
        reads_images: bool = False,
    ) -> None:
        self.model_id = model_id
        if reads_images:
            reading_images(self)
        self.images: list[list[Any]] = []
        """The images each request was given (an empty list for a text request)."""
        self.max_model_len = max_model_len
        self.vocab_size = 0x110000  # token ids are code points
        self.reply = reply
        self.step_delay = step_delay
        self.fail_after = fail_after
        self.sampling_defaults: dict[str, Any] = {}
        self.requests: list[tuple[list[int], SamplingConfig]] = []
        self.aborted: list[str] = []
        """Request ids passed to ``abort`` (the request stops at its next step)."""
        self.running: set[str] = set()
        self.started: list[str] = []
        self.finished: set[str] = set()
        """Requests that streamed to their last step."""
        self.closed: list[str] = []
        """Requests whose stream was closed or cancelled before its last step, without an
        ``abort``: the ``Engine`` contract makes that an abort too (vLLM aborts it)."""
        self.prompts: list[str] = []
        self.dead = False

    @property
    def is_dead(self) -> bool:
        return self.dead

    def die(self) -> None:
        """The engine process "exits": running and new requests raise ``EngineDeadError``."""
        self.dead = True

    def reply_for(self, index: int) -> list[str]:
        """Words of choice ``index``: choice 0 is the reply, others are tagged with their index."""
        words = self.reply.split(" ")
        return words if index == 0 else [f"[{index}]", *words]

    async def generate(
        self,
        prompt_token_ids: list[int],
        sampling: SamplingConfig,
        request_id: str,
        *,
        images: Sequence[Any] = (),
    ) -> AsyncIterator[EngineOutput]:
        if self.dead:
            raise EngineDeadError("the fake engine is dead")
        if images and prompt_token_ids.count(IMAGE_TOKEN_ID) != len(images):
            raise RequestError("placeholders and images differ")  # as vLLM refuses it
        self.requests.append((prompt_token_ids, sampling))
        self.images.append(list(images))
        self.started.append(request_id)
        self.running.add(request_id)
        done = False
        try:
            async for out in self._steps(prompt_token_ids, sampling, request_id):
                if self.dead:
                    raise EngineDeadError("the fake engine died")
                if request_id not in self.running:  # aborted: the request stops
                    return
                done = out.finished
                out.prompt_tokens += (IMAGE_TOKENS - 1) * len(images)
                yield out
        finally:
            if done:
                self.finished.add(request_id)
            elif request_id in self.running:
                self.closed.append(request_id)
            self.running.discard(request_id)

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        texts = ["" for _ in range(s.n)]
        tokens = [0] * s.n
        done = [False] * s.n
        step = 0
        while not all(done):
            if self.step_delay:
                await asyncio.sleep(self.step_delay)
            if self.fail_after is not None and step >= self.fail_after:
                raise EngineError("fake engine failure")
            deltas = []
            for i in range(s.n):
                if done[i]:
                    continue
                words = self.reply_for(i)
                word = (" " if step else "") + words[step] if step < len(words) else ""
                finish, stop_reason = None, None
                new_text = texts[i] + word
                for stop in s.stop:
                    if stop in new_text:
                        new_text = new_text[: new_text.index(stop)]
                        finish, stop_reason = "stop", stop
                if finish is None and step + 1 >= len(words):
                    finish = "stop"
                piece = new_text[len(texts[i]) :]
                if tokens[i] + len(piece) >= s.max_tokens and finish is None:
                    piece = piece[: s.max_tokens - tokens[i]]
                    finish = "length"
                texts[i] += piece
                tokens[i] += len(piece)
                done[i] = finish is not None
                logprobs = None
                if s.logprobs is not None:
                    logprobs = [
                        TokenLogprob(
                            ch,
                            -0.5,
                            tuple(TopLogprob(ch, -0.5, ord(ch)) for _ in range(s.logprobs)),
                            ord(ch),
                        )
                        for ch in piece
                    ]
                deltas.append(
                    ChoiceDelta(
                        index=i,
                        text=piece,
                        token_ids=[ord(c) for c in piece],
                        logprobs=logprobs,
                        finish_reason=finish,
                        stop_reason=stop_reason,
                    )
                )
            step += 1
            yield EngineOutput(request_id, len(prompt), deltas, finished=all(done))

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self.running.discard(request_id)

    def unended(self) -> list[str]:
        """Started requests that were neither finished, aborted nor closed."""
        ended = self.finished | set(self.aborted) | set(self.closed)
        return [rid for rid in self.started if rid not in ended]

    async def tokenize(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        if self.image_placeholder is not None:
            text = text.replace(self.image_placeholder, chr(IMAGE_TOKEN_ID))
        return [ord(c) for c in text]

    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        parts = [f"<{m['role']}>{m['content']}" for m in messages]
        if not continue_final_message:
            parts = [p + "</>" for p in parts]
        if add_generation_prompt:
            parts.append("<assistant>")
        prompt = "".join(parts)
        self.prompts.append(prompt)
        return prompt


class KeywordValueModel(ValueModel):
    """Scores 0.1 when the response contains its keyword, else 0.9 (spec ``fake:KEYWORD``)."""

    def __init__(self, name: str, spec: str, keyword: str) -> None:
        self.name, self.spec, self.keyword = name, spec, keyword
        self.calls: list[int] = []

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        self.calls.append(len(responses))
        return [
            ValueScore(self.name, 0.1 if self.keyword in r else 0.9, {self.keyword: 0.0})
            for r in responses
        ]


def load_fake_value_model(name: str, spec: str, arg: str, ctx: Any) -> KeywordValueModel:
    return KeywordValueModel(name, spec, arg)


class SlowValueModel(ValueModel):
    """Scores 0.9 after ``seconds`` per text of CPU-like work in a worker thread (spec
    ``slow:SECONDS``), recording when it scored each text: a model that a cancelled request
    must not wait for."""

    def __init__(self, name: str, spec: str, seconds: float) -> None:
        self.name, self.spec, self.seconds = name, spec, seconds
        self.scored_at: list[float] = []
        """``time.monotonic()`` at the end of every scored text."""

    def _work(self, n: int) -> list[ValueScore]:
        for _ in range(n):
            time.sleep(self.seconds)
            self.scored_at.append(time.monotonic())
        return [ValueScore(self.name, 0.9) for _ in range(n)]

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        return await asyncio.to_thread(self._work, len(responses))


def load_slow_value_model(name: str, spec: str, arg: str, ctx: Any) -> SlowValueModel:
    return SlowValueModel(name, spec, float(arg))


class StepEngine(FakeEngine):
    """Guided-decoding fake: call ``k`` of ``generate`` returns ``script[k]`` as its candidates.

    Each script entry is a list of candidate texts; a text ending in the step delimiter stops
    there (``stop_reason`` = the delimiter), any other text ends with end-of-sequence.
    """

    def __init__(self, script: list[list[str]], delimiter: str = "\n") -> None:
        super().__init__()
        self.script = script
        self.delimiter = delimiter
        self.calls = 0

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        texts = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        deltas = []
        for i in range(s.n):
            text = texts[i % len(texts)]
            at_delim = text.endswith(self.delimiter)
            deltas.append(
                ChoiceDelta(
                    index=i,
                    text=text,
                    token_ids=[ord(c) for c in text],
                    finish_reason="stop",
                    stop_reason=self.delimiter if at_delim else None,
                )
            )
        yield EngineOutput(request_id, len(prompt), deltas, finished=True)


class ScriptEngine(FakeEngine):
    """Search-loop fake: call ``k`` of ``generate`` writes ``script[k]`` (the last one repeats).

    Text streams a few characters per step; the first stop string in it ends the choice
    (kept when ``include_stop_str_in_output``), as vLLM does. Every token has logprob -0.1.
    """

    def __init__(
        self,
        script: list[str],
        *,
        routes: dict[str, str] | None = None,
        chunk: int = 5,
        **kw: Any,
    ) -> None:
        kw.setdefault("max_model_len", 8192)
        super().__init__(**kw)
        self.script = script
        self.routes = routes or {}
        """A prompt containing the key is answered with the value (the script is not used)."""
        self.chunk = chunk
        self.calls = 0
        self.seen: list[str] = []
        self.samples_differ = False
        """With ``n`` > 1, choice ``i`` writes the script's next entries in turn (the call's
        own entry, then the ones after it) instead of all writing the same one."""

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        prompt_text = "".join(chr(t) for t in prompt)
        self.seen.append(prompt_text)
        routed = [reply for key, reply in self.routes.items() if key in prompt_text]
        if routed:
            texts = [routed[0]] * s.n
        elif self.samples_differ:
            texts = [self.script[min(self.calls + i, len(self.script) - 1)] for i in range(s.n)]
            self.calls += s.n
        else:
            texts = [self.script[min(self.calls, len(self.script) - 1)]] * s.n
            self.calls += 1
        ends = [self._cut(text, s) for text in texts]
        longest = max(len(text) for text, _, _ in ends)
        for start in range(0, max(longest, 1), self.chunk):
            last = start + self.chunk >= longest
            deltas = []
            for i, (text, finish, stop_reason) in enumerate(ends):
                if start and start >= len(text):
                    continue  # this choice has finished
                piece = text[start : start + self.chunk]
                done = start + self.chunk >= len(text)
                logprobs = None
                if s.logprobs is not None:
                    logprobs = [TokenLogprob(ch, -0.1) for ch in piece]
                deltas.append(
                    ChoiceDelta(
                        index=i,
                        text=piece,
                        token_ids=[ord(c) for c in piece],
                        logprobs=logprobs,
                        finish_reason=finish if done else None,  # type: ignore[arg-type]
                        stop_reason=stop_reason if done else None,
                    )
                )
            yield EngineOutput(request_id, len(prompt), deltas, finished=last)

    @staticmethod
    def _cut(text: str, s: SamplingConfig) -> tuple[str, str, str | None]:
        """The text as the engine would return it: up to its first stop string (kept when
        ``include_stop_str_in_output``) and ``max_tokens`` characters; its finish reason."""
        finish, stop_reason = "stop", None
        hits = [(text.find(stop), stop) for stop in s.stop if stop in text]
        if hits:
            at, stop_reason = min(hits)
            text = text[: at + len(stop_reason)] if s.include_stop_str_in_output else text[:at]
        if len(text) > s.max_tokens:
            text, finish, stop_reason = text[: s.max_tokens], "length", None
        return text, finish, stop_reason


class FakeSearchBackend(SearchBackend):
    """Documents in memory, ranked by words shared with the query; can fail on demand."""

    def __init__(
        self,
        docs: dict[str, tuple[str, str]],
        *,
        name: str = "fake",
        fail: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.docs = docs
        self.name = name
        self.fail = fail
        """``"search"`` or ``"read"``: that call raises ``SearchError``."""
        self.delay = delay
        self.queries: list[str] = []
        self.closed = False

    @staticmethod
    def _words(text: str) -> set[str]:
        return set(re.findall(r"\w+", text.lower()))

    async def search(self, query: str, k: int) -> list[SearchResult]:
        self.queries.append(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail == "search":
            raise SearchError(self.name, "the index is on fire")
        words = self._words(query)
        ranked = sorted(
            self.docs.items(), key=lambda kv: -len(words & self._words(kv[1][0] + " " + kv[1][1]))
        )
        return [
            SearchResult(i, t, x[:200], f"https://docs.test/{i}", 1.0) for i, (t, x) in ranked[:k]
        ]

    async def read(self, doc_id: str) -> Document:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail == "read":
            raise SearchError(self.name, "read failed")
        if doc_id not in self.docs:
            raise DocumentNotFound(self.name, f"no document {doc_id!r}")
        title, text = self.docs[doc_id]
        return Document(doc_id, title, text, f"https://docs.test/{doc_id}")

    async def close(self) -> None:
        self.closed = True


class BagOfWordsEncoder:
    """A deterministic stand-in for MiniLM: hashed bag of words, L2-normalised."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


SEARCH_DOCS = {
    "element:tungsten": (
        "tungsten",
        "Symbol: W\nAtomic number: 74\nDense grey metal, formerly called wolfram.",
    ),
    "element:helium": ("helium", "Symbol: He\nAtomic number: 2\nA light noble gas."),
}


def load_fake_search(name: str, arg: str, ctx: Any) -> FakeSearchBackend:
    """Spec ``fake:docs`` (works), ``fake:fail-search``, ``fake:fail-read`` or ``fake:slow``."""
    fail = arg.removeprefix("fail-") if arg.startswith("fail-") else None
    return FakeSearchBackend(
        SEARCH_DOCS, name=name, fail=fail, delay=30.0 if arg == "slow" else 0.0
    )
