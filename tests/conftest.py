"""Shared fixtures: an app on the fake engine, driven in-process by Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.server import ServerConfig, create_app

from .fakes import FakeEngine

ClientFactory = Callable[..., Any]


@contextmanager
def serve(engine: FakeEngine | None = None, **config: Any) -> Iterator[TestClient]:
    """A running app (lifespan included) on ``engine`` with ``ServerConfig(**config)``.

    The correction memory is off unless ``memory=MemorySettings(folder=tmp_path)`` is given
    (tests never write to the user's cache)."""
    engine = engine or FakeEngine()
    config.setdefault("memory", None)
    app = create_app(ServerConfig(**config), engine_factory=lambda _: engine)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(engine: FakeEngine) -> Iterator[TestClient]:
    with serve(engine) as c:
        yield c
