"""``safework chat`` driven in a pseudo-terminal (pexpect) against a real HTTP server on the
fake engine: a question, a profile switch, an ``/edit`` round trip through ``$EDITOR``, the
memory listing, and clear messages (no stack trace) for a wrong key or a server that is gone.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from safework.clients import SafeWork

from .web_server import (
    CORRECTED_ANSWER,
    HANG,
    KEY,
    PLAIN_ANSWER,
    LiveServer,
    WebEngine,
    fakes_installed,
    live_server,
    site_config,
)

QUESTION = "What is the atomic number of tungsten?"
PROMPT = r"you>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    memory = tmp_path_factory.mktemp("memory")
    with fakes_installed(), live_server(WebEngine(step_delay=0.01), **site_config(memory)) as live:
        yield live


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Callable[..., pexpect.spawn]]:
    """Start ``safework chat`` in a pty; what it draws is logged to ``screen.txt``."""
    screen = (tmp_path / "screen.txt").open("w")
    children: list[pexpect.spawn] = []

    def start(url: str, key: str = KEY, **env: str) -> pexpect.spawn:
        transcript = str(tmp_path / "t.jsonl")
        child = pexpect.spawn(
            sys.executable,
            ["-m", "safework.cli", "chat", "--url", url, "--transcript", transcript],
            env={**os.environ, "SAFEWORK_API_KEY": key, **env},
            dimensions=(40, 120),
            encoding="utf-8",
            timeout=30,
        )
        child.logfile_read = screen
        children.append(child)
        return child

    yield start
    for child in children:
        child.close(force=True)
    screen.close()


def ask(child: pexpect.spawn, line: str, *expected: str) -> None:
    child.sendline(line)
    for text in expected:
        child.expect_exact(text)
    child.expect(PROMPT)


def test_question_profile_switch_and_edit_round_trip(
    server: LiveServer, chat: Callable[..., pexpect.spawn], tmp_path: Path
) -> None:
    child = chat(server.url, EDITOR="sed -i s/79/74/")
    child.expect_exact("SafeWork chat")
    child.expect_exact("plain, aligned, search")
    child.expect(PROMPT)
    ask(child, QUESTION, "reasoning (8 words, /show to expand)", PLAIN_ANSWER)
    ask(child, "/show", "W is element number 79.")
    ask(child, "/aligned", "profile: aligned")
    ask(child, "Is it safe?", "step 1", "safety", "0.90", "(1 rejected)", "stay safe.")
    ask(child, "/plain", "profile: plain")
    ask(child, QUESTION, PLAIN_ANSWER)
    child.sendline("/edit")  # $EDITOR turns 79 into 74 in the reasoning
    child.expect_exact("What was wrong? (optional)")
    child.sendline("79 is gold")
    child.expect_exact(CORRECTED_ANSWER)
    child.expect(r"correction stored as (mem_[0-9a-f]+)")
    memory_id = child.match.group(1)
    child.expect(PROMPT)
    ask(child, "/memory", memory_id)
    child.sendline("/prefer Answer in metric units.")
    child.expect(r"preference stored as (mem_[0-9a-f]+)")
    preference_id = child.match.group(1)
    child.expect(PROMPT)
    ask(child, "/memory", "(every answer)", "Answer in metric units.")
    ask(child, f"/forget {preference_id}", f"deleted {preference_id}")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in (tmp_path / "screen.txt").read_text()
    with SafeWork(base_url=server.url + "/v1", api_key=KEY) as client:
        record = client.memory.retrieve(memory_id)
    assert record.corrected_reasoning.startswith("Tungsten is W. W is element number 74.")
    assert record.feedback == "79 is gold"
    turns = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [t["kind"] for t in turns] == ["answer", "answer", "answer", "correction"]
    assert [t["profile"] for t in turns[:2]] == ["plain", "aligned"]
    assert turns[-1]["memory_id"] == memory_id


def test_inline_edit_and_unknown_commands(
    server: LiveServer, chat: Callable[..., pexpect.spawn], tmp_path: Path
) -> None:
    child = chat(server.url, EDITOR="")
    child.expect(PROMPT)
    ask(child, "/edit", "Ask something first")
    ask(child, "/bogus", "Unknown command /bogus")
    ask(child, QUESTION, PLAIN_ANSWER)
    child.sendline("/edit inline")
    child.expect_exact("end with a line holding only '.'")
    child.sendline("Tungsten is W, number 74.")
    child.sendline(".")
    child.expect_exact("What was wrong? (optional)")
    child.sendline("")
    child.expect(r"correction stored as mem_[0-9a-f]+")
    child.expect(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)


def test_a_wrong_key_is_a_clear_message(
    server: LiveServer, chat: Callable[..., pexpect.spawn], tmp_path: Path
) -> None:
    child = chat(server.url, key="sk-not-a-real-key")
    child.expect_exact("The server refused the API key")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "Traceback" not in (tmp_path / "screen.txt").read_text()


def test_no_server_is_a_clear_message(chat: Callable[..., pexpect.spawn]) -> None:
    child = chat("http://127.0.0.1:9")
    child.expect_exact("Cannot reach a SafeWork server at http://127.0.0.1:9")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


def test_a_server_gone_mid_answer_leaves_the_chat_usable(
    chat: Callable[..., pexpect.spawn],
) -> None:
    with live_server(WebEngine(), api_keys={KEY: "alice"}, memory=None) as server:
        child = chat(server.url)
        child.expect(PROMPT)
        child.sendline(HANG)  # an answer that never ends
        child.expect_exact("and on")
        server.stop()
        child.expect_exact("Lost the connection")
        child.expect(PROMPT)
    child.sendline("/history")  # the session goes on
    child.expect(PROMPT)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
