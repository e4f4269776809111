"""A recipe's ``rl_data`` section: the CoT RL stages' own dataset, the ``data`` section with its
keys over it, built into OUTPUT/rl-data and chained like the other."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from safework.training import pipeline
from safework.training.pipeline import load_pipeline, run_pipeline

from .test_pipeline import _children, _eval_recorder, _recipe, _train_recorder


def test_an_rl_data_section_gives_the_cot_rl_stages_their_own_dataset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    recipe = _recipe(
        tmp_path,
        {
            "output": str(out),
            "stages": ["sft", "m3rl", "efficient", "search"],
            "data": {"search_train": 20, "math_train": 100, "seed": 3},
            "rl_data": {"jailbreak_fraction": 0.5},
            "efficient": {"data": "cot-sft"},  # a section's own choice still wins
        },
    )
    p = load_pipeline(recipe, {"rl_data.search_train": 0})
    assert p.data is not None
    assert p.rl_data is not None
    assert (p.data.jailbreak_fraction, p.rl_data.jailbreak_fraction) == (0.0, 0.5)
    # the data section's keys, with rl_data's over them
    assert (p.rl_data.math_train, p.rl_data.seed, p.rl_data.search_train) == (100, 3, 0)
    assert p.rl_data.folder() == out / "rl-data"
    assert Path(p.configs["sft"].data) == out / "data"
    assert Path(p.configs["m3rl"].data) == out / "rl-data"
    assert p.configs["efficient"].data == "cot-sft"
    assert p.configs["search"].data == "auto"
    assert Path(p.eval_section["data"]) == out / "data"  # evaluation asks the plain dev rows


def test_a_rebuilt_rl_dataset_trains_the_rl_stages_again_but_not_sft(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[str] = []
    evaluated: list[str] = []
    import safework.training.data as data_mod

    out = tmp_path / "out"
    past = time.time() - 600
    for name in ("data", "rl-data"):
        (out / name).mkdir(parents=True)
        (out / name / "manifest.json").write_text("{}")
        os.utime(out / name / "manifest.json", (past, past))
    built: list[Path] = []

    def ensure_built(config: Any) -> Path:
        built.append(config.folder())
        return config.folder()

    monkeypatch.setattr(data_mod, "ensure_built", ensure_built)
    monkeypatch.setattr(
        pipeline, "_run", _children(_train_recorder(trained), _eval_recorder(evaluated))
    )
    recipe = _recipe(
        tmp_path,
        {
            "output": str(out),
            "model": str(tmp_path),
            "stages": ["sft", "m3rl"],
            "data": {},
            "rl_data": {"jailbreak_fraction": 0.5},
        },
    )
    run_pipeline(recipe)
    assert built == [out / "data", out / "rl-data"]
    assert (trained, evaluated) == (["sft", "m3rl"], ["base", "sft", "m3rl"])
    later = time.time() + 60
    os.utime(out / "rl-data" / "manifest.json", (later, later))  # only the RL prompts rebuilt
    run_pipeline(recipe)
    assert (trained, evaluated) == (["sft", "m3rl", "m3rl"], ["base", "sft", "m3rl", "m3rl"])
