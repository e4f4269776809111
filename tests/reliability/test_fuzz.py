"""Schemathesis against the served OpenAPI schema: no input earns a 5xx or a traceback.

The server is the real app under uvicorn on the scripted engine with every profile, the
correction memory and two keys (``tests/web_server.py``). Schemathesis generates requests
for every operation the schema declares, both ones the schema allows (positive) and ones it
forbids (negative: wrong types, missing fields, out-of-range numbers), and each must come
back below 500 with no Python traceback in the body. ``make test`` runs a bounded number of
examples per operation (``SAFEWORK_FUZZ_EXAMPLES``, 25 by default); ``make soak`` runs more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from safework.server import ServerConfig, create_app

from ..web_server import KEY, LiveServer, WebEngine, fakes_installed, live_server, site_config

EXAMPLES = int(os.environ.get("SAFEWORK_FUZZ_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {KEY}"}
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    memory: Path = tmp_path_factory.mktemp("fuzz-memory")
    with fakes_installed(), live_server(WebEngine(step_delay=0.0), **site_config(memory)) as s:
        yield s


def _schema() -> OpenApiSchema:
    """The schema the site serves (``create_app`` builds it without starting anything)."""
    with fakes_installed():
        config = ServerConfig(**site_config(None))
    app = create_app(config, engine_factory=lambda _: WebEngine())
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,
        database="none",
    )
    return schema


schema = _schema()


@schema.parametrize()
def test_no_server_error_and_no_traceback(case: Case, fuzz_site: LiveServer) -> None:
    response = case.call(base_url=fuzz_site.url, headers=AUTH, timeout=30)
    status, body = response.status_code, response.text
    described = f"{case.method} {case.formatted_path} -> {status}: {body[:300]}"
    assert response.status_code < 500, described
    assert not any(m in response.text for m in TRACEBACK_MARKERS), described
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        assert "error" in response.json(), described
