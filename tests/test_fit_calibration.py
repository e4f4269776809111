"""Fitting a calibration once into the cache (``search/fit_calibration.py``) and
``safework-train calibrate --if-missing`` (``make calibration``), on a scripted engine.

Run: ``pytest tests/test_fit_calibration.py``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.files import weights_digest
from safework.search import fit_calibration
from safework.search.calibration import Calibration, calibration_id, calibration_path
from safework.search.fit_calibration import FitRecipe, ensure_calibration, fit_and_save
from safework.training import cli as train_cli

from .fakes import SEARCH_DOCS, BagOfWordsEncoder, FakeSearchBackend, ScriptEngine

OVERCONFIDENT = ["<answer>74</answer><confidence>9</confidence>"]


@dataclass(frozen=True)
class Q:
    question: str
    answer: str

    def is_correct(self, prediction: str) -> bool:
        return prediction.strip() == self.answer


QUESTIONS = [Q(f"question {i} about tungsten", "74" if i % 2 else "2") for i in range(24)]
"""The scripted engine answers 74 to all: right on half, so a confidence of 0.9 is too high."""


@pytest.fixture(autouse=True)
def questions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        fit_calibration, "calibration_questions", lambda n, seed=0: (QUESTIONS[:12], QUESTIONS[12:])
    )


def parts() -> tuple[ScriptEngine, FakeSearchBackend, BagOfWordsEncoder]:
    return ScriptEngine(OVERCONFIDENT), FakeSearchBackend(SEARCH_DOCS), BagOfWordsEncoder()


async def test_fit_and_save_records_the_recipe_and_the_held_out_error(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    recipe = FitRecipe(questions=24, settings={"prior_check": False})
    report = await fit_and_save(*parts(), path, recipe)
    assert report["saved"] == str(path)
    assert report["test"]["ece_raw"] == pytest.approx(0.4)  # 0.9 said, 0.5 right
    assert report["test"]["ece_calibrated"] < 0.05
    info = Calibration.load(path).info
    assert (info["questions"], info["dev_n"], info["test_n"]) == (24, 12, 12)
    assert info["settings"] == {"prior_check": False}
    assert info["seconds"] >= 0


async def test_ensure_fits_into_the_cache_then_keeps_the_file(tmp_path: Path) -> None:
    engine, backend, encoder = parts()
    report = await ensure_calibration(engine, backend, encoder, cache=tmp_path)
    assert report is not None
    path = calibration_path("fake-model", tmp_path)
    saved = Calibration.load(path)
    # the fake states 9 on every answer and writes every token at one probability: both
    # sources are fitted, neither separates better, and the stated one is preferred
    assert saved.maps.keys() == {"stated", "logprob"}
    assert saved.preferred == "stated"
    assert report["preferred"] == "stated"
    calls = engine.calls
    assert await ensure_calibration(engine, backend, encoder, cache=tmp_path) is None
    assert engine.calls == calls


def checkpoint(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


async def test_a_map_belongs_to_its_weights_not_to_the_served_name(tmp_path: Path) -> None:
    """Two runs' ``search`` checkpoints are both served as "search": the second is fitted
    anew, never served with the first one's map."""
    first, _, _ = parts()
    first.model_id, first.model_path = "search", str(checkpoint(tmp_path / "run1/search", b"a"))
    backend, encoder = FakeSearchBackend(SEARCH_DOCS), BagOfWordsEncoder()
    assert await ensure_calibration(first, backend, encoder, cache=tmp_path) is not None
    second, _, _ = parts()
    second.model_id, second.model_path = "search", str(checkpoint(tmp_path / "run2/search", b"b"))
    assert await ensure_calibration(second, backend, encoder, cache=tmp_path) is not None
    files = sorted(p.name for p in (tmp_path / "calibration").glob("*.json"))
    assert files == sorted(
        f"{calibration_id('search', e.model_path)}.json" for e in (first, second)
    )
    assert len(set(files)) == 2
    assert all(f.startswith("search-") for f in files)
    # the same weights again (a restart, a copy elsewhere): the map is found
    again, _, _ = parts()
    again.model_id, again.model_path = "search", str(checkpoint(tmp_path / "copy/search", b"b"))
    assert await ensure_calibration(again, backend, encoder, cache=tmp_path) is None


def test_the_weights_digest_follows_the_weights(tmp_path: Path) -> None:
    one = checkpoint(tmp_path / "one", b"weights")
    two = checkpoint(tmp_path / "two", b"weights")
    (two / "config.json").write_text('{"note": "not a weight file"}')
    assert weights_digest(one) == weights_digest(two)
    (two / "model.safetensors").write_bytes(b"weightz")
    assert weights_digest(one) != weights_digest(two)
    (two / "model.safetensors").rename(two / "model-00001.safetensors")
    (two / "model-00001.safetensors").write_bytes(b"weights")
    assert weights_digest(one) != weights_digest(two)  # file names count too
    assert weights_digest(tmp_path / "one" / "none") is None
    assert calibration_id("org/m", "org/m") == "org/m"  # a name, not a folder: the name


async def test_two_concurrent_ensures_fit_once(tmp_path: Path) -> None:
    """The second waits on the file lock (in a thread), then finds the file."""
    engine, backend, encoder = parts()
    path = tmp_path / "cal.json"
    reports = await asyncio.gather(
        ensure_calibration(engine, backend, encoder, path),
        ensure_calibration(engine, backend, encoder, path),
    )
    assert sum(r is not None for r in reports) == 1
    alone, _, _ = parts()
    await fit_and_save(alone, backend, encoder, tmp_path / "alone.json")
    assert engine.calls == alone.calls  # one fit's worth of generation


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"questions": 3}, "at least 4"), ({"concurrency": 0}, "concurrency")],
)
def test_bad_recipes_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FitRecipe(**kw)


def test_bad_settings_are_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="bad calibration search setting"):
        FitRecipe(settings={"turns": 3}).search_config()


def test_if_missing_keeps_a_fitted_file_without_starting_vllm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from safework.engine import embedder, vllm_engine
    from safework.search import base

    def no_engine(options: object) -> None:
        raise AssertionError("vLLM was started")

    monkeypatch.setattr(vllm_engine.VLLMEngine, "create", no_engine)
    monkeypatch.setattr(base, "load_backend", lambda *a, **kw: FakeSearchBackend(SEARCH_DOCS))
    monkeypatch.setattr(embedder, "get_embedder", lambda cache=None: BagOfWordsEncoder())
    default = checkpoint(tmp_path / "default-model", b"smollm2")
    monkeypatch.setattr(vllm_engine, "ensure_default_model", lambda: default)
    path = calibration_path(calibration_id("smollm2-135m-instruct", default), tmp_path)
    Calibration("smollm2-135m-instruct", info={"test_n": 80, "test_ece_raw": 0.2}).save(path)
    assert train_cli.main(["calibrate", "--if-missing", "--cache", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kept"] == str(path)
    assert (out["test_n"], out["test_ece_raw"]) == (80, 0.2)
    # --model names the file as serve names the model: none for my-ckpt yet, so vLLM starts
    argv = ["calibrate", "--if-missing", "--cache", str(tmp_path), "--model", "x/my-ckpt"]
    with pytest.raises(AssertionError, match="vLLM was started"):
        train_cli.main(argv)
