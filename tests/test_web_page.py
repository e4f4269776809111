"""The web chat page in a real browser: headless Chromium (Playwright) against uvicorn.

One server per module runs every profile (plain, aligned, search) and the correction memory
on ``WebEngine`` (``tests/web_server.py``), with API keys; each test opens a fresh browser
context, so the page starts without a stored key. The connection-lost test starts its own
small server and shuts it down mid-stream.

Needs Debian's Chromium at ``/usr/bin/chromium`` (Playwright's own browser download is not
used); the module is skipped without it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .web_server import (
    CONTINUATION,
    CORRECTED_ANSWER,
    HANG,
    KEY,
    PLAIN_ANSWER,
    PLAIN_REASONING,
    LiveServer,
    WebEngine,
    live_server,
    skip_or_fail,
)

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    skip_or_fail("Debian's Chromium (/usr/bin/chromium) is not installed (`make browser`)")

QUESTION = "What is the atomic number of tungsten?"
CUT_OFF = "Connection lost — the answer may be incomplete"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (no stored key) that fails the test on a script error or a CSP violation."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and errors.append(m.text),
    )
    yield page
    context.close()
    assert errors == []


def by(page: Any, testid: str) -> Any:
    return page.get_by_test_id(testid)


def connect(page: Any, url: str, key: str = KEY) -> None:
    page.goto(url + "/")
    by(page, "key-input").fill(key)
    by(page, "key-submit").click()
    sync_api.expect(by(page, "chat")).to_be_visible()


def ask(page: Any, text: str, profile: str = "plain") -> Any:
    """Send ``text`` on ``profile``; the new assistant message."""
    by(page, f"profile-{profile}").check()
    by(page, "prompt").fill(text)
    by(page, "send").click()
    return by(page, "message-assistant").last


def finished(message: Any) -> Any:
    sync_api.expect(message).to_have_attribute("aria-busy", "false", timeout=15_000)
    return message


def test_the_page_asks_for_a_key_and_explains_a_refusal(page: Any, site: LiveServer) -> None:
    page.goto(site.url + "/")
    assert page.title() == "SafeWork chat"
    sync_api.expect(by(page, "key-form")).to_be_visible()
    sync_api.expect(by(page, "chat")).to_be_hidden()
    by(page, "key-input").fill("sk-wrong")
    by(page, "key-submit").click()
    sync_api.expect(by(page, "key-error")).to_contain_text("The server refused this API key")
    body = page.locator("body").inner_text()
    assert "Traceback" not in body
    assert '"error"' not in body
    sync_api.expect(by(page, "key-form")).to_be_visible()

    by(page, "key-input").fill(KEY)
    by(page, "key-submit").click()
    sync_api.expect(by(page, "chat")).to_be_visible()
    sync_api.expect(by(page, "model-name")).to_have_text("fake-model")
    for profile in ("plain", "aligned", "search"):
        sync_api.expect(by(page, f"profile-{profile}")).to_be_enabled()
    # The key lasts for the tab: a reload goes straight to the chat.
    page.reload()
    sync_api.expect(by(page, "chat")).to_be_visible()


def test_a_plain_answer_streams_with_openable_reasoning(page: Any, site: LiveServer) -> None:
    connect(page, site.url)
    message = ask(page, QUESTION)
    answer = message.get_by_test_id("answer")
    seen: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and message.get_attribute("aria-busy") != "false":
        text = answer.text_content() or ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.02)
    finished(message)
    sync_api.expect(answer).to_have_text(PLAIN_ANSWER)
    partial = [s for s in seen if s != PLAIN_ANSWER]
    assert len(partial) >= 2, seen
    assert all(PLAIN_ANSWER.startswith(s) for s in partial)

    reasoning = message.get_by_test_id("reasoning")
    text = message.get_by_test_id("reasoning-text")
    sync_api.expect(text).to_be_hidden()  # closed until asked for
    reasoning.locator("summary").click()
    sync_api.expect(text).to_be_visible()
    sync_api.expect(text).to_have_text(PLAIN_REASONING)


def test_aligned_steps_show_a_bar_per_value_model(page: Any, site: LiveServer) -> None:
    connect(page, site.url)
    message = finished(ask(page, "How do I stay safe?", "aligned"))
    sync_api.expect(message.get_by_test_id("answer")).to_have_text(
        "A rude but careful step.\nFinal answer: stay safe."
    )
    steps = message.get_by_test_id("step")
    sync_api.expect(steps).to_have_count(2)
    first = steps.first
    sync_api.expect(first.get_by_test_id("rejected")).to_have_text(
        "1 candidate rejected (by safety)"
    )
    for name, expected in (("safety", 0.9), ("values", 0.1)):
        row = first.locator(f'[data-model="{name}"]')
        sync_api.expect(row).to_contain_text(f"{expected:.2f}")
        track = row.locator(".bar").bounding_box()
        fill = row.get_by_test_id("score-bar").bounding_box()
        assert fill["width"] / track["width"] == pytest.approx(expected, abs=0.02)
    # No reasoning came with this answer: the editor offers to write one.
    sync_api.expect(message.get_by_test_id("edit-reasoning")).to_have_text("Add reasoning")


def test_search_shows_sources_as_links_and_the_confidence(page: Any, site: LiveServer) -> None:
    connect(page, site.url)
    message = finished(ask(page, QUESTION, "search"))
    sync_api.expect(message.get_by_test_id("answer")).to_have_text("74")
    sources = message.get_by_test_id("sources")
    sync_api.expect(sources.get_by_test_id("queries")).to_contain_text("tungsten atomic number")
    link = sources.get_by_role("link", name="tungsten")
    sync_api.expect(link).to_have_attribute("href", "https://docs.test/element:tungsten")
    sync_api.expect(link).to_have_attribute("target", "_blank")
    sync_api.expect(link).to_have_attribute("rel", "noopener noreferrer")
    sync_api.expect(sources.get_by_test_id("confidence")).to_have_text("Confidence: 70% (stated)")


def test_an_edited_reasoning_is_continued_and_stored(page: Any, site: LiveServer) -> None:
    connect(page, site.url)
    message = finished(ask(page, QUESTION))
    by(page, "edit-reasoning").click()
    editor = by(page, "edit-text")
    sync_api.expect(editor).to_have_value(PLAIN_REASONING)
    by(page, "edit-cancel").click()
    sync_api.expect(editor).to_have_count(0)

    by(page, "edit-reasoning").click()
    edited = "Tungsten is W; 79 is gold."
    by(page, "edit-text").fill(edited)
    by(page, "edit-feedback").fill("79 is gold")
    by(page, "edit-submit").click()
    finished(message)
    sync_api.expect(message.get_by_test_id("answer")).to_have_text(CORRECTED_ANSWER)
    sync_api.expect(message.get_by_test_id("reasoning-text")).to_have_text(edited + CONTINUATION)
    memory_id = message.get_by_test_id("memory-id").inner_text()
    assert memory_id.startswith("mem_")

    headers = {"Authorization": f"Bearer {KEY}"}
    records = httpx.get(site.url + "/v1/memory", headers=headers).json()["data"]
    stored = {r["id"]: r for r in records}[memory_id]
    assert stored["corrected_reasoning"].startswith(edited)
    assert stored["question"] == QUESTION
    assert stored["feedback"] == "79 is gold"

    # The same question again is guided by the correction.
    again = finished(ask(page, QUESTION))
    sync_api.expect(again.get_by_test_id("memory-hits")).to_contain_text(
        f"Guided by 1 past correction ({memory_id})"
    )

    # The corrections panel lists it and deletes it.
    by(page, "corrections-toggle").click()
    item = by(page, "correction").filter(has_text=memory_id)
    sync_api.expect(item).to_contain_text(QUESTION)
    item.get_by_role("button", name=f"Delete correction {memory_id}").click()
    sync_api.expect(by(page, "correction").filter(has_text=memory_id)).to_have_count(0)
    remaining = httpx.get(site.url + "/v1/memory", headers=headers).json()["data"]
    assert memory_id not in [r["id"] for r in remaining]


def test_preferences_are_stored_followed_and_deleted(page: Any, site: LiveServer) -> None:
    """The memory panel's form and the editor's box both store a standing preference."""
    headers = {"Authorization": f"Bearer {KEY}"}

    def preferences() -> dict[str, str]:
        url = site.url + "/v1/memory?kind=preference"
        return {r["id"]: r["text"] for r in httpx.get(url, headers=headers).json()["data"]}

    connect(page, site.url)
    by(page, "corrections-toggle").click()
    by(page, "prefer-submit").click()  # nothing written: said, nothing sent
    sync_api.expect(by(page, "prefer-error")).to_be_visible()
    assert preferences() == {}
    by(page, "prefer-text").fill("Answer in metric units.")
    by(page, "prefer-submit").click()
    item = by(page, "preference")
    sync_api.expect(item).to_contain_text("Answer in metric units.")
    sync_api.expect(by(page, "prefer-error")).to_be_hidden()
    sync_api.expect(by(page, "prefer-text")).to_have_value("")
    ((metric_id, text),) = preferences().items()
    assert text == "Answer in metric units."

    # Every answer follows it, whatever the question.
    message = finished(ask(page, "How do I stay safe?"))
    sync_api.expect(message.get_by_test_id("memory-preferences")).to_have_text(
        f"Following 1 standing preference ({metric_id})."
    )

    # The editor keeps its note for every answer when asked, and needs the note for that.
    message = finished(ask(page, QUESTION))
    by(page, "edit-reasoning").last.click()
    by(page, "edit-text").fill("Tungsten is W, number 74.")
    by(page, "edit-always").check()
    by(page, "edit-submit").click()
    sync_api.expect(by(page, "edit-error")).to_have_text(
        "Write the note to remember for every answer."
    )
    by(page, "edit-feedback").fill("Give the element's symbol too.")
    by(page, "edit-submit").click()
    finished(message)
    note = message.get_by_test_id("memory-note")
    sync_api.expect(note).to_contain_text("Preference stored as")
    stored = preferences()
    note_id = message.get_by_test_id("memory-id").inner_text()
    assert stored[note_id] == "Give the element's symbol too."

    sync_api.expect(by(page, "preference")).to_have_count(2)  # the open panel was refreshed
    for record_id in (metric_id, note_id):
        page.get_by_role("button", name=f"Delete preference {record_id}").click()
        sync_api.expect(by(page, "preference").filter(has_text=record_id)).to_have_count(0)
    assert preferences() == {}


def test_stop_and_a_server_gone_mid_stream(page: Any) -> None:
    """Stop aborts the request; a server that goes away leaves a usable page and a note."""
    with live_server(WebEngine(), api_keys={KEY: "alice"}, memory=None) as server:
        connect(page, server.url)
        # This server has no value models and no search backends.
        sync_api.expect(by(page, "profile-aligned")).to_be_disabled()
        sync_api.expect(by(page, "profile-search")).to_be_disabled()

        stopped = ask(page, HANG)
        sync_api.expect(stopped.get_by_test_id("answer")).to_contain_text("and on")
        by(page, "stop").click()
        sync_api.expect(stopped.get_by_test_id("stopped")).to_have_text("Stopped.")

        cut = ask(page, HANG)
        sync_api.expect(cut.get_by_test_id("answer")).to_contain_text("and on")
        server.stop()
        sync_api.expect(cut.get_by_test_id("error")).to_contain_text(CUT_OFF)
    prompt = by(page, "prompt")
    sync_api.expect(prompt).to_be_enabled()
    sync_api.expect(by(page, "send")).to_be_enabled()
    prompt.fill("Are you back?")
    sync_api.expect(prompt).to_have_value("Are you back?")


def test_the_page_fits_a_phone(browser: Any, site: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    try:
        connect(page, site.url)
        finished(ask(page, QUESTION, "search"))
        finished(ask(page, "How do I stay safe?", "aligned"))
        by(page, "corrections-toggle").click()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
    finally:
        context.close()


def test_the_keyboard_reaches_the_prompt_and_enter_sends(page: Any, site: LiveServer) -> None:
    page.goto(site.url + "/")
    page.keyboard.type(KEY)  # the key field has focus
    page.keyboard.press("Enter")
    sync_api.expect(by(page, "chat")).to_be_visible()
    page.locator("h1").click()  # Tab navigation starts from the top of the page
    order = []
    for _ in range(12):
        page.keyboard.press("Tab")
        testid = page.evaluate("document.activeElement.dataset.testid")
        order.append(testid)
        if testid == "prompt":
            break
    assert order == [
        "corrections-toggle",
        "change-key",
        "profile-plain",
        "max-tokens",
        "new-chat",
        "prompt",
    ]
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("<b>second</b> line")
    sync_api.expect(by(page, "message-user")).to_have_count(0)
    page.keyboard.press("Enter")
    user = by(page, "message-user")
    sync_api.expect(user).to_have_count(1)
    sync_api.expect(user.locator(".text")).to_have_text("first line\n<b>second</b> line")
    assert user.locator("b").count() == 0  # text, never markup
    finished(by(page, "message-assistant").last)
    sync_api.expect(by(page, "prompt")).to_have_value("")
