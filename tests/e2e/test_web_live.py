"""The web chat page on the real server (SmolLM2 on vLLM), in headless Chromium.

One walk through the page as a user takes it: enter the key, ask on the aligned profile
with a small token budget, see the scored steps, open the reasoning when the model gave
one, take a full-page screenshot (``web-chat.png``), then correct the reasoning, see the
stored correction's id and take another (``web-chat-correction.png``). Screenshots go to the
test's tmp folder, and to ``$SAFEWORK_SCREENSHOT_DIR`` when set (``docs/`` holds the ones the
README shows). SmolLM2 does not write ``<think>`` reasoning, so the page offers "Add
reasoning" there: the same editor, starting empty.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from ..web_server import skip_or_fail
from .conftest import RemoteServer

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
ANSWER_TIMEOUT_MS = 120_000


def save_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """The page into ``tmp_path``, and into ``$SAFEWORK_SCREENSHOT_DIR`` when it is set."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if folder := os.environ.get("SAFEWORK_SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / name)


def test_the_page_answers_scores_and_stores_a_correction(
    server: RemoteServer, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        skip_or_fail("Debian's Chromium (/usr/bin/chromium) is not installed")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(server.url + "/")
        page.get_by_test_id("key-input").fill(server.key)
        page.get_by_test_id("key-submit").click()
        expect(page.get_by_test_id("chat")).to_be_visible()

        page.get_by_test_id("max-tokens").fill("48")
        page.get_by_test_id("profile-aligned").check()
        page.get_by_test_id("prompt").fill("How can I keep my houseplants healthy?")
        page.get_by_test_id("prompt").press("Enter")
        message = page.get_by_test_id("message-assistant").last
        expect(message).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)
        expect(message.get_by_test_id("error")).to_have_count(0)
        assert message.get_by_test_id("answer").inner_text().strip()
        expect(message.get_by_test_id("score-bar").first).to_be_visible()
        rows = message.get_by_test_id("score")
        assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.model)")) == {
            "safety",
            "values",
        }

        save_screenshot(page, tmp_path, "web-chat.png")  # the aligned answer and its scores

        message.get_by_test_id("edit-reasoning").click()
        message.get_by_test_id("edit-text").fill(
            "Houseplants need bright indirect light, water only when the top of the soil is "
            "dry, and a pot that drains."
        )
        message.get_by_test_id("edit-submit").click()
        memory_id = message.get_by_test_id("memory-id")
        expect(memory_id).to_have_text(re.compile(r"^mem_\w+$"), timeout=ANSWER_TIMEOUT_MS)
        stored = memory_id.inner_text()
        # The corrected message, its reasoning open: the user's text and the model's continuation.
        message.get_by_test_id("reasoning").evaluate("details => { details.open = true; }")
        save_screenshot(page, tmp_path, "web-chat-correction.png")
        browser.close()
    with server.http() as http:
        record = http.get(f"/v1/memory/{stored}").json()
    assert record["corrected_reasoning"].startswith("Houseplants need bright indirect light")
