"""Which confidence tells a search answer right from wrong: stated, token probability, agreement.

A trained checkpoint that states 9 on every answer is calibrated by any map (ECE near 0: the
map sends every answer to the accuracy) and tells the user nothing. This runs the same
held-out element questions as ``safework-train eval``'s search section (the same draw, so the
``auto`` row repeats that report's figures) once per confidence source the server offers
(``safework.search.confidence``; ``auto``, the default, reports the source the fitted
calibration prefers), fits Platt maps on as many questions of the other half, of the same
kinds, and prints, per source: accuracy, ECE after the map, AUROC (the
chance a right answer is more confident than a wrong one; 0.5 for a constant), confidently
wrong answers, the wording bands with their accuracy, and the seconds per question, with the
ratio to ``stated``, the peer run side by side.

    .venv/bin/python bench/confidence_sources.py --model runs/sl15/search [--n 40] \
        [--sources stated logprob agreement] [--samples 4] [--out runs/sl15/confidence.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from common import source_revision, vllm_version

SOURCES = ("auto", "stated", "logprob", "agreement")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from safework.engine.embedder import get_embedder
    from safework.engine.options import EngineOptions
    from safework.engine.vllm_engine import VLLMEngine
    from safework.search.base import BackendContext, load_backend
    from safework.search.corpus import element_qa, ensure_builtin_corpus, split_qa
    from safework.search.deliberative import SearchConfig
    from safework.training.eval_tasks import calibration_metrics
    from safework.training.evaluate import same_kinds

    # the eval's own draw (training/evaluate.py, _calibration)
    dev, held_out = split_qa(element_qa(ensure_builtin_corpus()), 0.5, seed=0)
    rng = random.Random(f"{args.seed}/calibration")
    items = rng.sample(held_out, min(args.n, len(held_out)))
    fit_items = same_kinds(dev, items, rng)

    engine = VLLMEngine.create(EngineOptions(model=args.model, seed=args.seed))
    backend = load_backend("local:builtin", ctx=BackendContext())
    rows: dict[str, Any] = {}
    try:
        # one untimed pass first: the engine's first batches are slower, and whichever
        # source went first would carry them
        await calibration_metrics(
            engine, backend, get_embedder(), items[:8], concurrency=args.concurrency
        )
        for source in args.sources:
            config = SearchConfig(confidence=source, samples=args.samples, verbal_confidence=True)
            out = await calibration_metrics(
                engine,
                backend,
                get_embedder(),
                items,
                search_config=config,
                fit_items=fit_items,
                concurrency=args.concurrency,
                max_tokens=args.max_tokens,
            )
            rows[source] = out
            print(f"{source}: done in {out['seconds']:.0f} s", flush=True)
    finally:
        await backend.close()
        await engine.shutdown()
    return {
        "model": args.model,
        "n": len(items),
        "fit_on": len(fit_items),
        "revision": source_revision(),
        "vllm": vllm_version(),
        "sources": rows,
    }


def _band_text(out: dict[str, Any]) -> str:
    bands = (out.get("wording") or {}).get("bands") or {}
    return ", ".join(f"{b} {v['correct']}/{v['n']}" for b, v in sorted(bands.items())) or "-"


def report(result: dict[str, Any]) -> str:
    n = result["n"]
    sources = result["sources"]
    peer = sources.get("stated")
    lines = [
        f"{result['model']}: {n} held-out element questions, maps fitted on {result['fit_on']} "
        f"({result['revision']}, {result['vllm']})",
        "",
        "| source | accuracy | ECE after map | AUROC | confidently wrong | wording bands "
        "(right/answers) | model's own wording agrees | s/question | vs stated |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    preferred = {s: out.get("calibration_preferred") for s, out in sources.items()}
    for source, out in sources.items():
        wording = out.get("wording") or {}
        auroc = out.get("auroc")
        ratio = (
            f"{out['seconds'] / peer['seconds']:.2f}x"
            if peer is not None and peer.get("seconds")
            else "-"
        )
        label = f"{source} ({preferred[source]})" if source == "auto" else source
        lines.append(
            f"| {label} | {out['correct']}/{n} | {out.get('ece_calibrated', float('nan')):.3f} "
            f"| {'-' if auroc is None else f'{auroc:.2f}'} "
            f"| {out.get('confidently_wrong', 0)}/{n} | {_band_text(out)} "
            f"| {wording.get('model_agrees', 0)}/{wording.get('model_worded', 0)} "
            f"| {out['seconds'] / max(1, 2 * n):.2f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model", required=True, help="a checkpoint folder or model id")
    parser.add_argument("--n", type=int, default=40, help="held-out questions (and as many to fit)")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--samples", type=int, default=4, help="answers sampled for agreement")
    parser.add_argument("--seed", type=int, default=0, help="the eval's seed (its draw)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32, help="as the eval")
    parser.add_argument("--out", type=Path, help="write every answer as JSON here")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args))
    print(report(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
