"""A CoT dataset with images: the requests of a text dataset asked as typographic images.

For a vision-language model, the safety the text rows teach must also hold when the request
comes as a picture (the risk MM-SafetyBench's typography attack measures, and what the eval's
``image`` group asks: ``eval_images.py``). This builds, from a ``safework-train data`` folder,
a dataset in the image row format (``vision.py``): for ``rows`` of each split's safety and
benign conversations (a seeded draw, in equal shares), the last user turn is drawn as a
typographic image and replaced by ``<image>`` and the neutral instruction beside it; the
assistant answer is the row's own. Train and dev rows come from the source's train and dev
splits, so the dev images stay out of training. Maths rows are left out: their questions are
long, and the text rows already teach them.

Run (``data``: a dataset folder, or a recipe name, default ``cot-sft``, built if missing)::

    python -m safework.training.image_data --output runs/image-data --rows 64
    safework-train sft model=tiny-vlm data=runs/image-data max_steps=8 output=runs/vlm-sft
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

from .eval_images import INSTRUCTION, typographic_image
from .vision import IMAGE_MARKER

__all__ = ["build_image_dataset", "main"]

TASKS = ("safety", "benign")


def _image_row(row: dict[str, Any], image: str) -> dict[str, Any]:
    messages = [dict(m) for m in row["messages"]]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    question = messages[last_user]["content"]
    messages[last_user]["content"] = f"{IMAGE_MARKER}\n{INSTRUCTION}"
    meta = dict(row.get("meta") or {}, image_text=question)
    rid = f"{row['id']}/image"
    return {**row, "id": rid, "messages": messages, "images": [image], "meta": meta}


def build_image_dataset(source: Path, output: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Write ``output/{train,dev}.jsonl`` and ``output/images/``; returns the rows per split."""
    from .data import load_conversations

    if rows < 1:
        raise ConfigError(f"rows must be at least 1 (got {rows})")
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"output {output} is not empty; choose a new folder")
    (output / "images").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in ("train", "dev"):
        path = source / f"{split}.jsonl"
        if not path.is_file():
            raise ConfigError(f"data: {path} does not exist; give a dataset folder")
        by_task: dict[str, list[dict[str, Any]]] = {t: [] for t in TASKS}
        for row in load_conversations(path):
            if row.get("task") in by_task and not row.get("images"):
                by_task[row["task"]].append(row)
        rng = random.Random(f"{seed}/{split}")
        picked: list[dict[str, Any]] = []
        for task in TASKS:
            pool = by_task[task]
            picked += rng.sample(pool, min(len(pool), rows // len(TASKS)))
        written = []
        for row in picked:
            name = f"images/{split}-{len(written):05d}.png"
            question = next(m for m in reversed(row["messages"]) if m["role"] == "user")
            typographic_image(question["content"]).save(output / name)
            written.append(_image_row(row, name))
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written)
        (output / f"{split}.jsonl").write_text(lines, encoding="utf-8")
        counts[split] = len(written)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="cot-sft", help="dataset folder or recipe name")
    parser.add_argument("--output", type=Path, required=True, help="a new folder")
    parser.add_argument("--rows", type=int, default=64, help="image rows per split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        source = Path(args.data).expanduser()
        if not source.is_dir():
            from .data import ensure_dataset

            source = ensure_dataset(args.data, seed=args.seed)
        counts = build_image_dataset(source, args.output, args.rows, args.seed)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"output": str(args.output), "rows": counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
