"""Tests for ``safework-train eval``'s settings (``training/evaluate.EvalConfig``): bad values
are refused naming the key, defaults, and a cheap import.

Run: ``pytest tests/test_eval_config.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.training.config import config_help, load_config
from safework.training.evaluate import EvalConfig

# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["bogus=1"], "unknown config key 'bogus'"),
        (["safety_samples=0"], "safety_samples must be at least 1"),
        (["ifeval_samples=-2"], "ifeval_samples must be at least 1"),
        (["max_tokens=0"], "max_tokens"),
        (["model=/no/such/checkpoint"], "model: /no/such/checkpoint is not an HF model folder"),
        (["data=/no/such/data"], "data: /no/such/data holds no dev.jsonl"),
        (["judges=[nope:x]"], "judges: unknown value model spec"),
        (["jailbreak_templates=[dan]"], "jailbreak_templates: unknown"),
        (["judge_threshold=2"], "judge_threshold"),
        (["search_backend=gopher:x"], "search_backend:"),
        (["engine={tensor_parallel: 2}"], "engine: unknown vLLM options"),
        (["engine={seed: 3}"], "engine: set seed with the top-level seed key"),
        (["label= "], "label must not be empty"),
        (["group_max_tokens={essays: 512}"], "group_max_tokens: unknown group 'essays'"),
        (["group_max_tokens={ifeval: 0}"], r"group_max_tokens\.ifeval must be a whole number"),
    ],
)
def test_bad_config_names_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(EvalConfig, overrides=overrides)


def test_config_defaults_and_label(tmp_path: Path) -> None:
    (tmp_path / "ckpt-100").mkdir()
    (tmp_path / "ckpt-100" / "config.json").write_text("{}")
    cfg = load_config(EvalConfig, overrides=[f"model={tmp_path / 'ckpt-100'}/"])
    assert cfg.point_label == "ckpt-100"
    assert EvalConfig().point_label == "smollm2-135m-instruct"
    assert EvalConfig().judges == ["builtin:safety"]
    assert EvalConfig().search_backend is None
    keys = config_help(EvalConfig)
    for name in ("safety_samples", "judges", "search_backend", "label", "max_tokens", "seed"):
        assert f"  {name} (" in keys


def test_importing_the_module_stays_cheap() -> None:
    code = (
        "import sys, safework.training.evaluate, safework.training.plot;"
        "heavy = {'torch', 'vllm', 'matplotlib', 'reasoning_gym'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
