"""Shared fixtures: an app on the fake engine, driven in-process by Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.server import ServerConfig, create_app

from .dataset_sources import Built, Env, build_dataset, patch_sources
from .fakes import FakeEngine
from .postgres import REQUIRED, NotInstalledError, PostgresServer
from .web_server import LiveServer, WebEngine, fakes_installed, live_server, site_config

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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real HTTP server (uvicorn in a thread) on the scripted ``WebEngine`` with every
    profile and the memory, behind ``web_server.KEY``: for browsers, the client and the
    terminal chat."""
    memory = tmp_path_factory.mktemp("memory")
    with fakes_installed(), live_server(WebEngine(step_delay=0.05), **site_config(memory)) as s:
        yield s


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (``tests/postgres.py``); tests take a fresh
    database of it with ``postgres.new_database()``."""
    try:
        server = PostgresServer()
    except NotInstalledError as e:
        if REQUIRED:
            pytest.fail(str(e))
        pytest.skip(str(e))
    yield server
    server.close()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(engine: FakeEngine) -> Iterator[TestClient]:
    with serve(engine) as c:
        yield c


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="session")
def smollm_tokenizer() -> Any:
    """SmolLM2's tokenizer (and chat template), from the embedded default model."""
    from transformers import AutoTokenizer

    from safework.engine.default_model import ensure_default_model

    return AutoTokenizer.from_pretrained(ensure_default_model())


def tiny_llama(folder: Path, tok: Any, init: float, hidden: int = 32) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer, two heads of ``hidden // 2`` (vLLM's
    CPU attention needs 64: ``hidden=128``), weights drawn with std ``init``, saved to
    ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=init,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer: Any) -> Path:
    """A randomly initialised 2-layer Llama saved with SmolLM2's tokenizer: trains in seconds."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm_tokenizer, 0.02)


@pytest.fixture(scope="session")
def peaked_model(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer: Any) -> Path:
    """The tiny Llama with weights drawn wide (std 1.0): unlike a near-uniform policy over 49k
    tokens it has preferences that a few dozen RL steps can move."""
    return tiny_llama(tmp_path_factory.mktemp("peaked-llama"), smollm_tokenizer, 1.0)


@pytest.fixture(scope="session")
def tiny_vlm_model(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer: Any) -> Path:
    """The tiny VLM recipe (``engine/tiny_vlm.py``: Idefics3, 16 tokens per 128-pixel image)
    on the 2-layer random Llama instead of SmolLM2: a vision-language model that trains in
    seconds."""
    from safework.engine.tiny_vlm import build_tiny_vlm

    text = tiny_llama(tmp_path_factory.mktemp("vlm-text"), smollm_tokenizer, 0.02, hidden=64)
    folder = tmp_path_factory.mktemp("tiny-vlm")
    build_tiny_vlm(folder, text)
    return folder


@pytest.fixture(scope="session")
def ifeval_library() -> Path:
    """The real IFEval package folder (fetched into the cache once), or skip."""
    from safework.engine.fetch import FetchError
    from safework.training.sources import ifeval_dir

    try:
        return ifeval_dir()
    except FetchError as e:
        pytest.skip(f"the IFEval library is not cached and cannot be fetched: {e}")


@pytest.fixture(scope="module")
def policy(tiny_model: Path) -> Any:
    """A ``PolicyEngine`` (the RL rollouts' engine) over the tiny Llama."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safework.training.rollout import PolicyEngine

    tok = AutoTokenizer.from_pretrained(tiny_model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    return PolicyEngine(model, tok, max_model_len=256)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """``safework-train data``'s sources faked (``dataset_sources.py``), the cache in tmp."""
    return patch_sources(monkeypatch, tmp_path / "cache")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One dataset built from those sources, shared by a module's read-only tests."""
    yield from build_dataset(tmp_path_factory)
