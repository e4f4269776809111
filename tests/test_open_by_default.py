"""Finding 6 of issue 17: a server without keys is not open to the world by default.

- a non-loopback bind address without API keys is refused unless ``--allow-unauthenticated``;
- without keys the correction memory (one tenant for every client) is off unless
  ``--shared-memory`` or ``--memory-dir`` asks for it;
- bound to loopback, ``safework serve`` answers only ``Host`` headers naming loopback (and
  ``--allowed-host`` names), so a page whose DNS rebinds to 127.0.0.1 gets an OpenAI 400.

Run: ``pytest tests/test_open_by_default.py``.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from safework.cli import build_parser
from safework.errors import ConfigError
from safework.server import ServerConfig, config
from safework.server.cli import config_from_args

from .conftest import serve

KEY = "sk-alice-0001"


@pytest.fixture(autouse=True)
def no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFEWORK_API_KEYS", raising=False)


def parse(*argv: str) -> ServerConfig:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com"])
def test_a_public_host_without_keys_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="without API keys"):
        ServerConfig(host=host)
    with pytest.raises(ConfigError, match="--allow-unauthenticated"):
        parse("--host", host)
    assert ServerConfig(host=host, api_keys={KEY: "alice"}).host == host
    assert KEY in parse("--host", host, "--api-key", KEY).api_keys
    assert parse("--host", host, "--allow-unauthenticated").allow_unauthenticated


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_without_keys_is_served(host: str) -> None:
    assert ServerConfig(host=host).api_keys == {}


def test_without_keys_the_shared_memory_is_off_unless_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse().memory is None
    assert parse("--host", "0.0.0.0", "--allow-unauthenticated").memory is None
    assert parse("--shared-memory").memory is not None
    assert parse("--memory-dir", "/tmp/sw-memory").memory is not None
    shared = parse("--api-key", KEY, "--memory-store", "postgresql://db.internal/safework")
    assert shared.memory is not None
    assert shared.memory.store == "postgresql://db.internal/safework"
    assert parse("--api-key", KEY).memory is not None
    monkeypatch.setenv("SAFEWORK_API_KEYS", f"{KEY}:alice")
    assert parse().memory is not None
    with pytest.raises(ConfigError, match="--no-memory and --shared-memory"):
        parse("--no-memory", "--shared-memory")


def test_the_allowed_hosts_of_safework_serve() -> None:
    assert doctest.testmod(config).failed == 0
    assert parse().allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    assert parse("--host", "::1").allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    assert "api.example.com" in parse("--allowed-host", "api.example.com").allowed_hosts
    assert parse("--allowed-host", "*").allowed_hosts == ("*",)
    assert parse("--host", "0.0.0.0", "--api-key", KEY).allowed_hosts == ("*",)
    for bad in ("a*b", "*example.com", ""):
        with pytest.raises(ConfigError, match="--allowed-host"):
            ServerConfig(allowed_hosts=(bad,))


@pytest.fixture
def loopback() -> Iterator[TestClient]:
    hosts = parse("--allowed-host", "*.example.org").allowed_hosts
    with serve(allowed_hosts=hosts) as client:
        yield client


@pytest.mark.parametrize(
    "host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "a.example.org"]
)
def test_loopback_names_are_answered(loopback: TestClient, host: str) -> None:
    assert loopback.get("/v1/models", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example:8000", "127.0.0.1.evil.example", "example.org", "localhost.evil", "["]
)
@pytest.mark.parametrize("path", ["/v1/models", "/health", "/"])
def test_other_hosts_are_an_openai_400(loopback: TestClient, host: str, path: str) -> None:
    r = loopback.get(path, headers={"host": host})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_host"
    assert error["type"] == "invalid_request_error"
    assert "--allowed-host" in error["message"]


def test_a_refused_chat_never_reaches_the_engine(loopback: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    r = loopback.post("/v1/chat/completions", json=body, headers={"host": "evil.example"})
    assert r.status_code == 400
    assert loopback.app.state.engine.requests == []  # type: ignore[attr-defined]
