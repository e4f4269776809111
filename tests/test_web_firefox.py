"""The web chat page in Firefox: Debian's Firefox ESR driven over WebDriver BiDi.

Playwright (``test_web_page.py``, Chromium) drives only its own patched Firefox, which cannot
be downloaded here, so ``tests/firefox/walk.mjs`` (puppeteer-core, installed by ``make
browser`` into ``tests/firefox/node_modules``) walks the page in the stock browser and
reports what it saw; this test serves the fake site and checks the report: a refused key,
profiles, a streamed answer with openable reasoning, value-score bars, sources and
confidence, an edited reasoning stored as a correction, and phone width.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from .web_server import (
    CORRECTED_ANSWER,
    KEY,
    PLAIN_ANSWER,
    PLAIN_REASONING,
    LiveServer,
    skip_or_fail,
)

FIREFOX = Path("/usr/bin/firefox-esr")
WALK = Path(__file__).parent / "firefox" / "walk.mjs"
if not FIREFOX.exists() or not shutil.which("node"):
    skip_or_fail("Debian's firefox-esr and node are needed (`make browser`)")
if not (WALK.parent / "node_modules" / "puppeteer-core").exists():
    skip_or_fail("puppeteer-core is not installed in tests/firefox (`make browser`)")


@pytest.fixture(scope="module")
def seen(site: LiveServer) -> dict[str, Any]:
    """What the walk through the page saw."""
    done = subprocess.run(
        ["node", str(WALK), site.url, KEY, str(FIREFOX)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_firefox_runs_the_page_without_errors(seen: dict[str, Any]) -> None:
    assert seen["version"].startswith("firefox/")
    assert seen["errors"] == []
    assert seen["refusal"].startswith("The server refused this API key")
    assert [(p["value"], p["disabled"]) for p in seen["profiles"]] == [
        ("plain", False),
        ("aligned", False),
        ("search", False),
    ]


def test_firefox_streams_and_opens_the_reasoning(seen: dict[str, Any]) -> None:
    partial = [t for t in seen["partials"] if t != PLAIN_ANSWER]
    assert len(partial) >= 2, seen["partials"]  # the answer grew while it streamed
    assert all(PLAIN_ANSWER.startswith(t) for t in partial)
    assert seen["answer"] == PLAIN_ANSWER
    assert seen["reasoningOpen"] is True
    assert seen["reasoning"] == PLAIN_REASONING


def test_firefox_shows_scores_sources_and_confidence(seen: dict[str, Any]) -> None:
    first = {row["model"]: row["share"] for row in seen["scores"][:2]}
    assert first == {"safety": pytest.approx(0.9, abs=0.02), "values": pytest.approx(0.1, abs=0.02)}
    link = next(s for s in seen["sources"] if s["text"] == "tungsten")
    assert link["href"] == "https://docs.test/element:tungsten"
    assert (link["target"], link["rel"]) == ("_blank", "noopener noreferrer")
    assert seen["confidence"] == "Confidence: 70% (stated)"


def test_firefox_edits_the_reasoning_and_the_correction_is_stored(
    seen: dict[str, Any], site: LiveServer
) -> None:
    assert seen["corrected"] == CORRECTED_ANSWER
    assert seen["memoryId"].startswith("mem_")
    headers = {"Authorization": f"Bearer {KEY}"}
    record = httpx.get(f"{site.url}/v1/memory/{seen['memoryId']}", headers=headers).json()
    assert record["corrected_reasoning"].startswith("Tungsten is W; 79 is gold.")


def test_firefox_fits_a_phone(seen: dict[str, Any]) -> None:
    assert seen["phoneWidth"] <= 375
