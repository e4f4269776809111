"""API keys: every route but /health needs one; wrong or missing keys get an OpenAI 401."""

from __future__ import annotations

import pytest

from safework.errors import ConfigError
from safework.server.config import parse_api_keys

from .conftest import serve

KEYS = {"sk-alice-000001": "alice", "sk-bob-00000002": "bob"}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/models"),
        ("post", "/v1/chat/completions"),
        ("post", "/v1/completions"),
        ("get", "/metrics"),
        ("get", "/docs"),
        ("get", "/openapi.json"),
        ("get", "/v1/unknown"),
    ],
)
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-key-123", "sk-alice-000001", "Basic sk-alice-000001"]
)
def test_routes_need_a_valid_key(method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with serve(api_keys=KEYS) as client:
        r = client.request(method, path, headers=headers, json={"messages": MESSAGES})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    err = r.json()["error"]
    assert err["code"] == "invalid_api_key"
    assert err["type"] == "invalid_request_error"


def test_valid_keys_work_and_health_is_open() -> None:
    with serve(api_keys=KEYS) as client:
        assert client.get("/health").status_code == 200
        for key in KEYS:
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get("/v1/models", headers=headers).status_code == 200
            r = client.post("/v1/chat/completions", headers=headers, json={"messages": MESSAGES})
            assert r.status_code == 200
            assert client.get("/metrics", headers=headers).status_code == 200


def test_no_keys_means_open_server() -> None:
    with serve() as client:
        assert client.get("/v1/models").status_code == 200


def test_parse_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = parse_api_keys(["sk-aaaaaaaa:alice", " sk-bbbbbbbb ", ""])
    assert keys["sk-aaaaaaaa"] == "alice"
    assert keys["sk-bbbbbbbb"].startswith("key-")
    assert "sk-bbbbbbbb" not in keys["sk-bbbbbbbb"]
    with pytest.raises(ConfigError, match="at least 8"):
        parse_api_keys(["short"])
    with pytest.raises(ConfigError, match="two tenants"):
        parse_api_keys(["sk-aaaaaaaa:x", "sk-aaaaaaaa:y"])


def test_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from safework.cli import build_parser
    from safework.server.cli import config_from_args

    monkeypatch.setenv("SAFEWORK_API_KEYS", "sk-env-key-1:carol,sk-env-key-2")
    args = build_parser().parse_args(["serve", "--api-key", "sk-cli-key-1:dave"])
    config = config_from_args(args)
    assert config.api_keys["sk-env-key-1"] == "carol"
    assert config.api_keys["sk-cli-key-1"] == "dave"
    assert len(config.api_keys) == 3
