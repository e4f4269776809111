"""End-to-end clients against the real server on SmolLM2: the Python client (sync and async,
JSON and real SSE) with every profile, ``/cot/edit`` and the memory routes, and
``safework chat`` in a pseudo-terminal (question, profile switch, ``/edit`` round trip)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import openai
import pexpect
import pytest

from safework.clients import AsyncSafeWork, ChatStream, SafeWork, SafeWorkCompletion

from .conftest import KEY, MODEL, OTHER_KEY, RemoteServer

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the atomic number of tungsten?"}]


def client(server: RemoteServer, key: str = KEY) -> SafeWork:
    return SafeWork(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=300)


def test_profiles_in_json_and_streams(server: RemoteServer) -> None:
    with client(server) as c:
        assert c.served_model() == MODEL
        aligned = c.chat.completions.create(
            messages=QUESTION, alignment=True, max_tokens=40, temperature=0.7, seed=1
        )
        assert isinstance(aligned, SafeWorkCompletion)
        assert aligned.safework is not None
        steps = aligned.safework.steps
        assert steps
        # kept steps carry their scores, steering and refusals their rejected candidates';
        # which of them this question gets depends on the value models this machine trained
        scored = [s.scores for s in steps if s.scores]
        scored += [r.scores for s in steps for r in s.rejected if r.scores]
        assert scored
        assert all(set(scores) == {"safety", "values"} for scores in scored)
        stream = c.chat.completions.create(
            messages=QUESTION, search={"backend": "builtin"}, stream=True, max_tokens=64
        )
        assert isinstance(stream, ChatStream)
        chunks = list(stream)
        assert len(chunks) > 3  # real SSE: many chunks, not one body
        info = stream.info
        assert info.search is not None
        assert info.search.queries
        assert info.sources
        assert info.confidence is not None
        assert 0.0 <= info.confidence <= 1.0
        assert stream.finish_reason in ("stop", "length")


def test_cot_edit_and_memory_for_one_tenant(server: RemoteServer) -> None:
    edited = "Tungsten has the symbol W. Its atomic number is 74."
    with client(server) as c, client(server, OTHER_KEY) as other:
        reply = c.cot_edit(QUESTION, edited, reasoning="W is 79.", answer="79", max_tokens=32)
        assert isinstance(reply, SafeWorkCompletion)
        assert reply.reasoning is not None
        assert reply.reasoning.startswith(edited)
        assert reply.memory_id is not None
        assert c.memory.retrieve(reply.memory_id).question == QUESTION[0]["content"]
        with pytest.raises(openai.NotFoundError):
            other.memory.retrieve(reply.memory_id)
        assert c.memory.delete(reply.memory_id).deleted
        assert reply.memory_id not in [r.id for r in c.memory.list(limit=100)]


async def test_async_client_streams(server: RemoteServer) -> None:
    async with AsyncSafeWork(base_url=server.url + "/v1", api_key=KEY, max_retries=0) as c:
        stream = await c.chat.completions.create(messages=QUESTION, stream=True, max_tokens=24)
        kinds = [kind async for kind, _ in stream.parts()]  # type: ignore[union-attr]
        assert "content" in kinds or "reasoning" in kinds
        with pytest.raises(openai.AuthenticationError):
            async with AsyncSafeWork(base_url=server.url + "/v1", api_key="sk-bad-key-0") as bad:
                await bad.models.list()


def test_terminal_chat_round_trip(server: RemoteServer, tmp_path: Path) -> None:
    screen = (tmp_path / "screen.txt").open("w")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "safework.cli", "chat", "--url", server.url, "--max-tokens", "48"],
        env={**os.environ, "SAFEWORK_API_KEY": KEY, "EDITOR": "sed -i '$ s/$/ The answer is 74./'"},
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=240,
    )
    child.logfile_read = screen
    try:
        child.expect_exact("plain, aligned, search")
        child.expect("you>")
        child.sendline("What is the atomic number of tungsten?")
        child.expect("you>")
        child.sendline("/aligned")
        child.expect_exact("profile: aligned")
        child.expect("you>")
        child.sendline("What is the atomic number of tungsten?")
        child.expect_exact("step 1")
        child.expect("you>")
        child.sendline("/edit")
        child.expect_exact("What was wrong? (optional)")  # the editor appended a correction
        child.sendline("")
        child.expect(r"correction stored as mem_[0-9a-f]+")
        child.expect("you>")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        screen.close()
    assert "Traceback" not in (tmp_path / "screen.txt").read_text()
