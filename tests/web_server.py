"""A real HTTP server on fake engines for the web page's browser tests (``test_web_page.py``).

``WebEngine`` answers every profile the page uses from one scripted engine, picking its
reply by what the prompt holds: the search protocol, an aligned step, a continued
correction, a question that never finishes, or a plain question with ``<think>`` reasoning.
Text streams a few characters per step with a delay, so a browser sees it grow.

``LiveServer`` runs uvicorn in a background thread on a free port, because a browser needs a
socket, not Starlette's in-process ``TestClient``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from safework.engine.base import ChoiceDelta, EngineOutput, SamplingConfig
from safework.search import base as search_base
from safework.server import ServerConfig, create_app
from safework.server import search as server_search
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings
from safework.server.search import SearchSettings
from safework.value_models import registry
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .fakes import BagOfWordsEncoder, FakeEngine

PLAIN_REASONING = "Tungsten is W. W is element number 79."
PLAIN_ANSWER = "The atomic number of tungsten is 79, like gold."
PLAIN_REPLY = f"<think>{PLAIN_REASONING}</think>{PLAIN_ANSWER}"
CONTINUATION = " So the answer is 74."
CORRECTED_ANSWER = "Tungsten has atomic number 74."
HANG = "never stop"
"""A question containing this is answered slowly and forever (until the client goes)."""
ALIGNED_STEPS = [["unsafe step\n", "A rude but careful step.\n"], ["Final answer: stay safe."]]
"""Candidates per aligned step: ``unsafe`` fails the safety model, ``rude`` lowers values."""
SEARCH_TURNS = [
    "<search>tungsten atomic number</search>",
    "<answer>74</answer><confidence>7</confidence>",
]
SEARCH_MARK = "You can search before you answer."


class WebEngine(FakeEngine):
    """One scripted engine for the plain, aligned and search profiles and ``/cot/edit``."""

    def __init__(self, *, step_delay: float = 0.04, chunk: int = 4) -> None:
        super().__init__(max_model_len=8192, step_delay=step_delay)
        self.chunk = chunk

    def replies(self, prompt: str, n: int) -> list[str]:
        """The text of each of ``n`` choices for ``prompt`` (a tagged transcript)."""
        aligned_stream = prompt.endswith(ALIGNED_STEPS[0][1])  # cascade: the rest, streamed
        if n > 1 or aligned_stream:  # an aligned step's K candidates, or the stream after it
            step = ALIGNED_STEPS[1] if "careful step" in prompt else ALIGNED_STEPS[0]
            return [step[i % len(step)] for i in range(n)]
        if SEARCH_MARK in prompt:
            return [SEARCH_TURNS[1] if SEARCH_TURNS[0] in prompt else SEARCH_TURNS[0]]
        if prompt.endswith("</think>\n\n"):  # the answer after a continued correction
            return [CORRECTED_ANSWER]
        if not prompt.endswith("<assistant>"):  # a corrected reasoning to continue
            return [CONTINUATION + "</think>"]
        return [PLAIN_REPLY]

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        text = "".join(chr(t) for t in prompt)
        if HANG in text.rsplit("<user>", 1)[-1]:
            async for out in self._forever(len(prompt), request_id):
                yield out
            return
        texts = [self._cut(reply, s) for reply in self.replies(text, s.n)]
        longest = max(len(t) for t, _ in texts)
        for start in range(0, max(longest, 1), self.chunk):
            await asyncio.sleep(self.step_delay)
            deltas = [
                self._delta(i, t, stop, start)
                for i, (t, stop) in enumerate(texts)
                if start < max(len(t), 1)
            ]
            yield EngineOutput(
                request_id, len(prompt), deltas, finished=start + self.chunk >= longest
            )

    def _delta(self, index: int, text: str, stop: str | None, start: int) -> ChoiceDelta:
        piece = text[start : start + self.chunk]
        last = start + self.chunk >= len(text)
        finish = "stop" if last else None
        return ChoiceDelta(
            index=index,
            text=piece,
            token_ids=[ord(c) for c in piece],
            finish_reason=finish,
            stop_reason=stop if last else None,
        )

    @staticmethod
    def _cut(text: str, s: SamplingConfig) -> tuple[str, str | None]:
        """``text`` up to its first stop string (kept when asked), and that stop string.

        Replies are far shorter than any token budget the tests set, so ``max_tokens`` is not
        applied."""
        hits = [(text.find(stop), stop) for stop in s.stop if stop in text]
        if not hits:
            return text, None
        at, stop = min(hits)
        return (text[: at + len(stop)] if s.include_stop_str_in_output else text[:at]), stop

    async def _forever(self, prompt_len: int, request_id: str) -> AsyncIterator[EngineOutput]:
        while True:
            await asyncio.sleep(0.1)
            delta = ChoiceDelta(index=0, text="and on ", token_ids=[1])
            yield EngineOutput(request_id, prompt_len, [delta], False)


KEY, OTHER_KEY = "sk-site-alice-0001", "sk-site-bob-00002"


def site_config(memory: Path | None, mistake_steps: int = 0) -> dict[str, Any]:
    """``ServerConfig`` fields for every profile and the memory, behind two keys (tenants
    ``alice`` and ``bob``): value model ``safety`` refuses steps saying "unsafe", ``values``
    scores steps saying "rude" low; search over the fake documents. Answers are not checked
    against corrected mistakes unless ``mistake_steps`` says so: the pages and the terminal
    chat expect the scripted answer after a correction (``test_memory_watch.py`` tests that)."""
    return {
        "api_keys": {KEY: "alice", OTHER_KEY: "bob"},
        "value_models": ValueModelsConfig(
            {
                "safety": ValueModelEntry("fake:unsafe", weight=0.7, threshold=0.5),
                "values": ValueModelEntry("fake:rude", weight=0.3, threshold=0.0),
            },
            {"candidates": 2},
        ),
        "search": SearchSettings(
            backends={"docs": "fake:docs"},
            defaults={"prior_check": False, "retrieve_first": False},
            max_turns=4,
            timeout_s=2.0,
        ),
        "memory": (
            MemorySettings(folder=memory, mistake_steps=mistake_steps)
            if memory is not None
            else None
        ),
    }


@contextmanager
def fakes_installed() -> Iterator[None]:
    """The loaders ``site_config`` names (``fake:...``) and the bag-of-words encoder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")
        mp.setitem(search_base.LOADERS, "fake", "tests.fakes:load_fake_search")
        mp.setattr(server_search, "default_encoder", lambda cache: BagOfWordsEncoder())
        mp.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)
        yield


def skip_or_fail(reason: str) -> None:
    """Skip a browser test where Chromium is missing, but fail under CI (``$CI``), where
    ``make test`` installs it: a browser test must never go quietly missing there."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app on ``engine`` served by uvicorn in a daemon thread at ``self.url``."""

    def __init__(self, engine: FakeEngine, **config: Any) -> None:
        app = create_app(ServerConfig(**config), engine_factory=lambda _: engine)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="critical",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down; a stream still open after a second is cut."""
        self.server.should_exit = True
        self.thread.join(timeout)


@contextmanager
def live_server(engine: FakeEngine, **config: Any) -> Iterator[LiveServer]:
    server = LiveServer(engine, **config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
