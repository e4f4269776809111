"""``safework serve`` with no flags serves the whole product; each off flag takes a part away.

Flags -> ``ServerConfig`` (value models, search backends, calibration mode), then the app on
a scripted engine: the three profiles in ``/v1/models``, the calibration fitted once at the
first start of the default model, and ``calibrated: null`` (with a log line naming the fix)
when the served model is not the default one. The built-in value models and the built-in
corpus are replaced by fakes at the registries (their loaders are tested elsewhere); the
calibration's generated questions by a scripted list.

Run: ``pytest tests/test_serve_defaults.py``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.errors import ConfigError
from safework.search import base as search_base
from safework.search import fit_calibration
from safework.search.calibration import Calibration, CalibrationMap, calibration_path
from safework.server import ServerConfig, create_app
from safework.server import search as server_search
from safework.server.cli import add_parser, config_from_args
from safework.value_models import registry

from .fakes import BagOfWordsEncoder, ScriptEngine
from .test_fit_calibration import OVERCONFIDENT, QUESTIONS

QUESTION = "What is the atomic number of tungsten?"


def parse(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return config_from_args(parser.parse_args(["serve", *argv]))


# --------------------------------------------------------------------------- flags -> config


def test_no_flags_turn_every_feature_on() -> None:
    config = parse()
    models = config.value_models.models
    assert {n: (e.spec, e.weight) for n, e in models.items()} == {
        "safety": ("builtin:safety", 0.6),
        "values": ("builtin:values", 0.4),
    }
    assert config.search.backends == {"builtin": "local:builtin"}
    assert config.search.calibration is None
    assert config.search.calibration_mode == "fit"  # the default model: fitted if missing


def test_the_default_thresholds_are_left_to_the_models() -> None:
    """No threshold is configured for the defaults: the entry keeps the registry's default,
    the same as ``--value-model NAME=SPEC`` gets."""
    named = parse("--value-model", "safety=builtin:safety").value_models.models["safety"]
    default = parse().value_models.models["safety"]
    assert default.threshold == named.threshold


def test_off_flags_take_each_feature_away() -> None:
    config = parse("--no-alignment", "--no-search", "--no-calibration")
    assert config.value_models.models == {}
    assert config.search.backends == {}
    assert config.search.calibration_mode == "off"
    assert parse("--no-alignment").search.backends == {"builtin": "local:builtin"}
    assert parse("--no-search").value_models.models.keys() == {"safety", "values"}
    assert parse("--no-calibration").search.backends == {"builtin": "local:builtin"}


def test_named_value_models_and_backends_replace_the_defaults() -> None:
    config = parse("--value-model", "rules:refusal", "--search-backend", "web=duckduckgo")
    assert list(config.value_models.models) == ["refusal"]
    assert config.search.backends == {"web": "duckduckgo"}


def test_a_yaml_replaces_the_default_models_or_keeps_them(tmp_path: Path) -> None:
    with_models = tmp_path / "models.yaml"
    with_models.write_text("value_models:\n  refusal: {spec: 'rules:refusal', weight: 1}\n")
    assert list(parse("--value-models-config", str(with_models)).value_models.models) == ["refusal"]
    settings_only = tmp_path / "settings.yaml"
    settings_only.write_text("alignment: {candidates: 2}\n")
    config = parse("--value-models-config", str(settings_only)).value_models
    assert config.models.keys() == {"safety", "values"}
    assert config.alignment == {"candidates": 2}


def test_calibration_is_fitted_only_for_the_default_model(tmp_path: Path) -> None:
    assert parse("--model", "/models/other").search.calibration_mode == "read"
    explicit = parse("--calibration", str(tmp_path / "c.json")).search
    assert (explicit.calibration_mode, explicit.calibration) == ("read", tmp_path / "c.json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-alignment", "--value-model", "rules:refusal"], "--no-alignment"),
        (["--no-alignment", "--value-models-config", "x.yaml"], "--no-alignment"),
        (["--no-search", "--search-backend", "duckduckgo"], "--no-search"),
        (["--no-calibration", "--calibration", "c.json"], "--no-calibration"),
    ],
)
def test_an_off_flag_with_its_feature_named_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(*argv)


# --------------------------------------------------------------------------- the app


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fake built-in value models, corpus backend, encoder and questions; the cache in
    ``tmp_path`` (returned)."""
    monkeypatch.setitem(registry.LOADERS, "builtin", "tests.fakes:load_fake_value_model")
    monkeypatch.setitem(search_base.LOADERS, "local", "tests.fakes:load_fake_search")
    monkeypatch.setattr(server_search, "default_encoder", lambda cache: BagOfWordsEncoder())
    monkeypatch.setattr(
        fit_calibration, "calibration_questions", lambda n, seed=0: (QUESTIONS[:12], QUESTIONS[12:])
    )
    monkeypatch.setenv("SAFEWORK_CACHE", str(tmp_path))
    return tmp_path


def start(engine: ScriptEngine, *argv: str) -> TestClient:
    config = parse("--no-memory", *argv)
    app = create_app(config, engine_factory=lambda _: engine)
    return TestClient(app, base_url="http://localhost")  # a loopback server answers loopback names


def ask(client: TestClient, model: str) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_default_start_lists_and_answers_all_three_profiles(fakes: Path) -> None:
    with start(ScriptEngine(OVERCONFIDENT)) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert ids == ["fake-model", "fake-model:aligned", "fake-model:search"]
        aligned = ask(client, "fake-model:aligned")["safework"]
        assert aligned["strategy"] == "aligned"
        assert aligned["alignment"]["steps"]
        search = ask(client, "fake-model:search")["safework"]["search"]
        assert search["confidence"]["raw"] == 0.9
        # fitted at start on the dev half, where 74 was right half the time
        assert search["confidence"]["calibrated"] == pytest.approx(0.5, abs=0.05)


def test_the_first_start_fits_the_calibration_once(fakes: Path) -> None:
    path = calibration_path("fake-model", fakes)
    engine = ScriptEngine(OVERCONFIDENT)
    with start(engine):
        pass
    fitted = Calibration.load(path)
    assert sorted(fitted.maps) == ["logprob", "stated"]  # every raw confidence is fitted
    assert fitted.preferred == "stated"  # the fake's token probability is one constant too
    assert (fitted.info["dev_n"], fitted.info["test_n"]) == (12, 12)
    assert fitted.info["test_ece_calibrated"] < fitted.info["test_ece_raw"]
    calls, stamp = engine.calls, path.stat().st_mtime_ns
    with start(engine):  # the second start reads it: nothing is generated at start
        pass
    assert engine.calls == calls
    assert path.stat().st_mtime_ns == stamp


def test_another_model_is_not_fitted_and_the_log_says_how(
    fakes: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = ScriptEngine(OVERCONFIDENT)
    with caplog.at_level(logging.INFO), start(engine, "--model", str(fakes / "other")) as client:
        assert engine.calls == 0
        search = ask(client, "fake-model:search")["safework"]["search"]
    assert search["confidence"]["calibrated"] is None
    assert not calibration_path("fake-model", fakes).exists()
    assert "no confidence calibration for fake-model" in caplog.text
    assert "safework-train calibrate --model" in caplog.text


def test_no_calibration_neither_fits_nor_reads(fakes: Path) -> None:
    path = calibration_path("fake-model", fakes)
    shift = CalibrationMap("platt", {"a": 1.0, "b": -3.0})  # sigmoid(logit(0.9) - 3) = 0.309
    Calibration("fake-model", {"stated": shift}).save(path)
    with start(ScriptEngine(OVERCONFIDENT), "--no-calibration") as client:
        search = ask(client, "fake-model:search")["safework"]["search"]
    assert search["confidence"]["calibrated"] is None
    with start(ScriptEngine(OVERCONFIDENT)) as client:  # the same file, read by default
        search = ask(client, "fake-model:search")["safework"]["search"]
    assert search["confidence"]["calibrated"] == pytest.approx(
        0.3, abs=0.01
    )  # sigmoid(logit(.9)-3)


def test_off_flags_remove_the_profiles(fakes: Path) -> None:
    with start(ScriptEngine(OVERCONFIDENT), "--no-alignment", "--no-search") as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["fake-model"]
        body = {"model": "fake-model:search", "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 404
    assert not any(fakes.rglob("*.json"))  # nothing fitted without search


def test_a_failed_fit_is_logged_and_the_server_serves_raw_confidences(
    fakes: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(n: int, seed: int = 0) -> Any:
        raise OSError("the corpus is unreadable")

    monkeypatch.setattr(fit_calibration, "calibration_questions", broken)
    with caplog.at_level(logging.INFO), start(ScriptEngine(OVERCONFIDENT)) as client:
        search = ask(client, "fake-model:search")["safework"]["search"]
    assert search["confidence"] == {"raw": 0.9, "source": "stated", "calibrated": None}
    assert "fitting the confidence calibration failed" in caplog.text
    assert not any(fakes.rglob("*.json"))


def test_request_chat_templates_are_refused_unless_the_operator_trusts_them() -> None:
    assert not parse().trust_request_chat_template
    assert parse("--trust-request-chat-template").trust_request_chat_template
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "chat_template": "{{ messages[0].content }}",
        "max_tokens": 2,
    }
    for trusted in (False, True):
        config = ServerConfig(memory=None, trust_request_chat_template=trusted)
        app = create_app(config, engine_factory=lambda _: ScriptEngine(["ok"]))
        with TestClient(app) as client:
            status = client.post("/v1/chat/completions", json=body).status_code
        assert status == (200 if trusted else 400)
