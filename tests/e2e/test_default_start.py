"""``safework serve`` with no feature flags, on the real model: the whole product at once.

The server starts as ``make serve`` starts it (a port, the test keys, and a private memory
folder so the user's corrections stay untouched): no value model, search backend or
calibration is named. ``/v1/models`` must list the three profiles; ``:aligned`` answers with
steps scored by both built-in value models; a ``:search`` answer carries a calibrated
confidence, from the map fitted for the default model in the cache (``make test`` runs ``make
calibration`` and ``make value-models`` first, so the start takes a minute; without them this
server's first start trains and fits what is missing); and the web page offers all three
profiles in Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..web_server import skip_or_fail
from .conftest import MODEL, RemoteServer, start_server, stop_server

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    home = tmp_path_factory.mktemp("default-server")
    remote = start_server(home, "--memory-dir", str(home / "memory"))
    try:
        yield remote
    finally:
        stop_server(remote)


def test_models_lists_the_three_profiles(default_server: RemoteServer) -> None:
    ids = [m.id for m in default_server.client().models.list().data]
    assert ids == [MODEL, f"{MODEL}:aligned", f"{MODEL}:search"]


def test_the_aligned_profile_is_scored_by_both_builtin_models(
    default_server: RemoteServer,
) -> None:
    r = default_server.client().chat.completions.create(
        model=f"{MODEL}:aligned",
        messages=[{"role": "user", "content": "How can I keep my houseplants healthy?"}],
        max_tokens=32,
    )
    # A request the prompt classifier passes streams its steps ("pass"); one it flags has its
    # first step chosen among K ("choose", with the rejected candidates' scores). Which this
    # prompt gets depends on the models trained on this machine, so any counts: every score
    # the answer reports comes from both built-in models.
    steps = r.model_extra["safework"]["alignment"]["steps"]
    scores = [s["scores"] for s in steps if s.get("scores")]
    scores += [c["scores"] for s in steps for c in s.get("rejected", []) if c.get("scores")]
    assert scores, steps
    for each in scores:
        assert set(each) == {"safety", "values"}


def test_a_search_answer_has_a_calibrated_confidence(default_server: RemoteServer) -> None:
    r = default_server.client().chat.completions.create(
        model=f"{MODEL}:search",
        messages=[{"role": "user", "content": "What is the atomic number of tungsten?"}],
    )
    confidence = r.model_extra["safework"]["search"]["confidence"]
    assert confidence["raw"] is not None
    assert confidence["calibrated"] is not None, "no calibration for the default model"
    assert 0.0 <= confidence["calibrated"] <= 1.0


def test_the_page_offers_every_profile(default_server: RemoteServer) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        skip_or_fail("Debian's Chromium (/usr/bin/chromium) is not installed")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(default_server.url + "/")
        page.get_by_test_id("key-input").fill(default_server.key)
        page.get_by_test_id("key-submit").click()
        expect(page.get_by_test_id("chat")).to_be_visible()
        for profile in ("plain", "aligned", "search"):
            expect(page.get_by_test_id(f"profile-{profile}")).to_be_enabled()
        browser.close()
