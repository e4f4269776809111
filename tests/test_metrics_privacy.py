"""Finding 7 of issue 17: ``/metrics`` names no tenant to an ordinary key.

Tenant names (and the ``key-<hash>`` names of unnamed keys) used to be the ``tenant`` label of
``safework_memory_records``, shown to every key. Now an ordinary key reads one total; the
per-tenant series is exported only to the keys of ``--metrics-admin`` tenants, and naming an
admin tenant that no key has is a configuration error.

Run: ``pytest tests/test_metrics_privacy.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from safework.errors import ConfigError
from safework.server import ServerConfig
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings

from .conftest import serve
from .fakes import BagOfWordsEncoder

ALICE_KEY, BOB_KEY, OPS_KEY, ANON_KEY = (
    "sk-alice-0001",
    "sk-bob-000002",
    "sk-ops-00003",
    "sk-0000004",
)
KEYS = {ALICE_KEY: "alice", BOB_KEY: "bob", OPS_KEY: "ops", ANON_KEY: "key-0a1b2c3d4e5f"}
EDIT = {
    "messages": [{"role": "user", "content": "What is 2 + 2?"}],
    "reasoning": "2 + 2 is 5.",
    "edited_reasoning": "2 + 2 is 4.",
    "answer": "5",
    "remember": True,
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)
    memory = MemorySettings(folder=tmp_path)
    with serve(api_keys=KEYS, memory=memory, metrics_admin_tenants={"ops"}) as c:
        for key in (ALICE_KEY, ANON_KEY, ANON_KEY):
            assert c.post("/cot/edit", json=EDIT, headers=auth(key)).status_code == 200
        yield c


@pytest.mark.parametrize("key", [ALICE_KEY, BOB_KEY, ANON_KEY])
def test_ordinary_keys_see_totals_and_no_tenant_names(client: TestClient, key: str) -> None:
    text = client.get("/metrics", headers=auth(key)).text
    assert "safework_memory_records 3.0" in text
    for name in ("alice", "bob", "ops", "key-0a1b2c3d4e5f", "tenant="):
        assert name not in text
    assert "safework_memory_records_by_tenant" not in text


def test_an_admin_key_sees_each_tenant(client: TestClient) -> None:
    text = client.get("/metrics", headers=auth(OPS_KEY)).text
    assert "safework_memory_records 3.0" in text
    assert 'safework_memory_records_by_tenant{tenant="alice"} 1.0' in text
    assert 'safework_memory_records_by_tenant{tenant="key-0a1b2c3d4e5f"} 2.0' in text
    deleted = client.get("/v1/memory", headers=auth(ALICE_KEY)).json()["data"][0]["id"]
    assert client.delete(f"/v1/memory/{deleted}", headers=auth(ALICE_KEY)).status_code == 200
    text = client.get("/metrics", headers=auth(OPS_KEY)).text
    assert "safework_memory_records 2.0" in text
    assert 'safework_memory_records_by_tenant{tenant="alice"} 0.0' in text


def test_an_admin_tenant_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="no API key has this tenant"):
        ServerConfig(api_keys=KEYS, metrics_admin_tenants=frozenset({"root"}))
    with pytest.raises(ConfigError, match="--metrics-admin default"):
        ServerConfig(metrics_admin_tenants=frozenset({"default"}))


def test_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from safework.cli import build_parser
    from safework.server.cli import config_from_args

    monkeypatch.delenv("SAFEWORK_API_KEYS", raising=False)
    argv = ["serve", "--api-key", f"{OPS_KEY}:ops", "--metrics-admin", "ops", "--no-memory"]
    config = config_from_args(build_parser().parse_args(argv))
    assert config.metrics_admin_tenants == {"ops"}
    assert config_from_args(build_parser().parse_args(argv[:3])).metrics_admin_tenants == set()
