"""Where a small model's capability can move: reasoning-gym tasks and difficulty levels
side by side, each one's accuracy with a 95% interval, on one model.

A capability axis is only useful if the model can move along it: a task it always fails or
always solves shows no stage's effect. This script asks the same questions of every
candidate level (generated with seeds the training data never uses, so the rows are new to
every checkpoint), greedy, through the vLLM engine, and prints for each level the accuracy,
how many answers were cut off inside ``<think>`` and the mean completion length. The levels
in ``training/capability.py`` (``CAPABILITY_LEVELS``) were picked with it: the base model
between roughly 15% and 50%.

    .venv/bin/python bench/capability_levels.py                       # the embedded model
    .venv/bin/python bench/capability_levels.py --model runs/sft/final --per-level 60
    .venv/bin/python bench/capability_levels.py --levels candidates   # the wider sweep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

from common import source_revision, vllm_version

from safework.engine.base import SamplingConfig
from safework.training.capability import CANDIDATE_LEVELS, CAPABILITY_LEVELS, capability_samples
from safework.training.eval_tasks import generate, score_math


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from safework.engine.options import EngineOptions
    from safework.engine.vllm_engine import VLLMEngine

    levels = CAPABILITY_LEVELS if args.levels == "chosen" else CANDIDATE_LEVELS
    samples = capability_samples(levels, args.per_level, seed=args.seed)
    engine = VLLMEngine.create(EngineOptions(model=args.model, seed=args.seed))
    try:
        clock = time.perf_counter()
        sampling = SamplingConfig(max_tokens=args.max_tokens, temperature=0.0)
        await generate(engine, samples, sampling, args.concurrency)
        seconds = time.perf_counter() - clock
    finally:
        await engine.shutdown()
    score_math(samples)
    rows = []
    for level in levels:
        mine = [s for s in samples if s.meta["level"] == level.name]
        k = sum(bool(s.verdict["correct"]) for s in mine)
        low, high = wilson(k, len(mine))
        rows.append(
            {
                "level": level.name,
                "k": k,
                "n": len(mine),
                "accuracy": k / len(mine),
                "ci95": [round(low, 3), round(high, 3)],
                "cut_off": sum(s.unclosed_think or s.finish_reason == "length" for s in mine),
                "mean_tokens": sum(s.completion_tokens for s in mine) / len(mine),
            }
        )
    print(f"\nmodel: {args.model or 'embedded default'}  greedy  max_tokens={args.max_tokens}")
    print(f"{len(samples)} questions in {seconds:.0f} s on {platform.processor() or 'this CPU'}")
    print(f"safework revision: {source_revision()}, vllm {vllm_version()}")
    print(
        f"{'level':32} {'correct':>9} {'accuracy':>9} {'95% CI':>14} {'cut off':>8} {'tokens':>7}"
    )
    for r in rows:
        ci = f"{r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}"
        print(
            f"{r['level']:32} {r['k']:>4}/{r['n']:<4} {r['accuracy']:>9.2f} {ci:>14} "
            f"{r['cut_off']:>8} {r['mean_tokens']:>7.0f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="an HF folder (default: embedded model)")
    parser.add_argument("--levels", choices=("chosen", "candidates"), default="chosen")
    parser.add_argument("--per-level", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    if args.json_out is not None:
        args.json_out.write_text(
            json.dumps({"args": vars(args) | {"json_out": None}, "rows": rows})
        )


if __name__ == "__main__":
    main()
