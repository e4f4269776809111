"""SFT throughput: ``safework-train sft`` against TRL's ``SFTTrainer``, same process, alternating.

Both train the same model (default: the embedded SmolLM2-135M-Instruct) on the same
conversations (the built-in cot-sft mix), with the same method (LoRA r=16 on every projection,
or full), micro-batch, gradient accumulation, maximum length, precision and optimizer (AdamW,
constant learning rate), with the loss on the assistant's tokens only (TRL: a prompt-completion
dataset with ``completion_only_loss``). Runs alternate (A B C, then B C A, ...) so drift in
the shared machine's speed hits all of them alike.

Peers:
  ``trl``          SFTTrainer with its default sampler (random order)
  ``trl-grouped``  SFTTrainer with ``train_sampling_strategy="group_by_length"`` (the same idea
                   as SafeWork's length-grouped batches: less padding)

Measured per run: non-padding tokens per second over the optimizer steps after the first (the
first pays one-time costs), from SafeWork's ``log.jsonl`` and from a TRL callback reading
``num_input_tokens_seen``; the table gives the median over rounds and SafeWork's ratio to each
peer.

Run::

    .venv/bin/python bench/train.py                       # LoRA, 10 steps, 2 rounds (~6 min)
    .venv/bin/python bench/train.py --method full --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import source_revision

RESULTS = Path(__file__).resolve().parent / "results"


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="HF folder (default: embedded SmolLM2)")
    p.add_argument("--method", choices=("lora", "full"), default="lora")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                   help="default: bf16 where the CPU supports it")  # fmt: skip
    p.add_argument("--rows", type=int, default=400, help="training conversations used")
    p.add_argument("--peers", default="trl,trl-grouped")
    return p.parse_args()


def _steady_rate(points: list[tuple[float, int]]) -> float:
    """Tokens/s between the end of the first step and the end of the last."""
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0)


def run_safework(args: argparse.Namespace, data: Path, work: Path, bf16: bool) -> float:
    from safework.training.config import load_config
    from safework.training.sft import SFTConfig, train

    out = work / "safework"
    shutil.rmtree(out, ignore_errors=True)
    config = load_config(
        SFTConfig,
        None,
        {
            "model": args.model,
            "data": str(data),
            "output": str(out),
            "method": args.method,
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "grad_accum": args.grad_accum,
            "max_length": args.max_length,
            "lr": 1e-4,
            "scheduler": "constant",
            "warmup_ratio": 0.0,
            "precision": "bf16" if bf16 else "fp32",
            "save_every": 0,
            "dev_rows": 0,
        },
    )
    train(config)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    points = [(r["elapsed_s"], r["tokens"]) for r in log if "loss" in r]
    return _steady_rate(points)


def run_trl(
    args: argparse.Namespace, rows: list[dict], work: Path, bf16: bool, grouped: bool
) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    from safework.training.sft import resolve_model
    from safework.training.sft_config import LLAMA_LINEAR

    model_dir = resolve_model(args.model)
    points: list[tuple[float, int]] = []

    class Timer(TrainerCallback):
        def on_step_end(self, _args: Any, state: Any, _control: Any, **_: Any) -> None:
            points.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    dataset = Dataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    )
    out = work / "trl"
    shutil.rmtree(out, ignore_errors=True)
    config = TRLConfig(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        bf16=bf16,
        use_cpu=True,
        completion_only_loss=True,
        packing=False,
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="group_by_length" if grouped else "random",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    peft_config = None
    if args.method == "lora":
        peft_config = LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            target_modules=LLAMA_LINEAR,
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=peft_config,
        callbacks=[Timer()],
    )
    trainer.train()
    return _steady_rate(points)


def main() -> int:
    args = _parse()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from safework.training.data import ensure_dataset, load_conversations
    from safework.training.trainer import bf16_supported

    bf16 = bf16_supported() if args.precision is None else args.precision == "bf16"
    rows = load_conversations(ensure_dataset("cot-sft") / "train.jsonl")[: args.rows]
    peers = [p for p in args.peers.split(",") if p]
    names = ["safework", *peers]
    rates: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                started = time.perf_counter()
                if name == "safework":
                    rate = run_safework(args, data, work, bf16)
                else:
                    rate = run_trl(args, rows, work, bf16, grouped=name == "trl-grouped")
                rates[name].append(rate)
                print(
                    f"round {rnd + 1} {name:12s} {rate:8.1f} tokens/s "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
    median = {n: statistics.median(v) for n, v in rates.items()}
    result = {
        "bench": "train",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "revision": source_revision(),
        "cpu_threads": __import__("torch").get_num_threads(),
        "settings": {
            "model": args.model,
            "method": args.method,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "grad_accum": args.grad_accum,
            "max_length": args.max_length,
            "precision": "bf16" if bf16 else "fp32",
            "rows": len(rows),
            "rounds": args.rounds,
        },
        "tokens_per_s": rates,
        "median_tokens_per_s": median,
        "ratio": {f"safework/{p}": median["safework"] / median[p] for p in peers},
    }
    print(f"\n{'run':14s} {'median tokens/s':>16s}  runs")
    for name in names:
        print(f"{name:14s} {median[name]:16.1f}  {', '.join(f'{r:.0f}' for r in rates[name])}")
    for key, ratio in result["ratio"].items():
        print(f"{key}: {ratio:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"train-{args.method}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
