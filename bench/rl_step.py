"""One RL step: ``safework-train rl`` against TRL's ``GRPOTrainer``, same process, alternating.

Both train the same model (default: the embedded SmolLM2-135M-Instruct, fp32 on the CPU) with
LoRA r=16, alpha=32, dropout 0.05 on every Llama projection, on the same maths prompts (the
first ``--pool`` prompts labelled ``math`` of the cot-sft train split), in the same order (TRL
gets SafeWork's own per-step draw, with ``shuffle_dataset=False``), with the same reward
(``0.2 * format + 0.8 * reasoning_gym``: SafeWork's route ``math``; TRL calls the very same
SafeWork reward functions through thin wrappers with ``reward_weights=[0.2, 0.8]``), the same
``prompts_per_step`` P, group size G, ``max_new_tokens``, sampling (temperature 1, top-p 1, no
top-k), learning rate (1e-5, constant, AdamW, gradient clipping at 1) and one optimizer step per
RL step over all P*G completions in one micro-batch. Neither side has a reference model
(SafeWork ``cpgd.kl_coef=0``, TRL ``beta=0``) or an old-policy pass (one update per rollout),
and both generate with the trained model's own ``transformers`` ``generate`` (SafeWork
``rollout_engine=policy``, TRL ``use_vllm=False``). SafeWork normally drops groups whose rewards
are all equal before the update (TRL trains on them with zero advantage); to compare the same
work that is off here unless ``--drop-uniform-groups`` is given.

Measured per RL step, split into:

- ``rollout``: generating the P*G completions (SafeWork's ``rollout_s``; TRL's ``_generate``:
  tokenising, ``generate``, decoding);
- ``reward``: scoring them (SafeWork's ``reward_s``, which includes the group advantages; TRL's
  ``_calculate_rewards``);
- ``update``: the rest of the step (SafeWork's ``update_s``: batching, the policy forward and
  backward, the optimizer; TRL: the step's wall time between two ``on_step_end`` callbacks less
  the two phases above, so it also holds TRL's advantages, per-step logging and data loading).

The first step of every run pays one-time costs and is dropped; the table gives medians over the
remaining steps of all rounds. Runs alternate (SafeWork, TRL, then TRL, SafeWork, ...) so drift in
the shared machine's speed hits both alike. Sampled lengths differ between the two sides (random
sampling; EOS ends a completion early), so besides seconds per step the table gives generated
tokens per step, rollout throughput (generated tokens per second of rollout), rollout time per
decoding step (a batched ``generate`` runs until its longest row ends, so its cost follows the
longest completion more than the total) and update time per generated token. The speedup
column is TRL's time over SafeWork's (or SafeWork's throughput over TRL's): above 1 means
SafeWork is faster.

Run::

    .venv/bin/python bench/rl_step.py                       # P=4, G=4, 128 tokens, 3 steps x 2
    .venv/bin/python bench/rl_step.py --threads 1 --steps 3 --rounds 1 --max-new-tokens 96

On a machine another job keeps busy, give ``--threads`` fewer than the free cores (see its help).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common import source_revision

RESULTS = Path(__file__).resolve().parent / "results"
ROUTE = {"format": 0.2, "reasoning_gym": 0.8}
"""SafeWork's default route for ``math``, used by both sides."""
NAMES = ("safework", "trl")
PHASES = ("rollout_s", "reward_s", "update_s", "total_s")

Step = dict[str, float]
"""One measured RL step: ``PHASES`` in seconds and ``tokens`` generated."""


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="HF folder (default: embedded SmolLM2)")
    p.add_argument("--steps", type=int, default=3, help="RL steps per run (the first is dropped)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--prompts", type=int, default=4, help="P: prompts per step")
    p.add_argument("--group", type=int, default=4, help="G: completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--pool", type=int, default=64, help="maths prompts drawn from")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument(
        "--drop-uniform-groups",
        action="store_true",
        help="SafeWork's default: skip groups with equal rewards (less update work)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch/OpenMP threads (default: torch's). On a machine shared with another busy\n"
        "job use fewer threads than free cores: OpenMP collapses when oversubscribed\n"
        "(seen here: 2 threads on 2 busy cores ran generate ~30x slower than 1)",
    )
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be at least 2 (the first step of every run is dropped)")
    if args.group < 2 or args.prompts < 1 or args.rounds < 1:
        p.error("need --group >= 2, --prompts >= 1 and --rounds >= 1")
    return args


# --------------------------------------------------------------------------- prompts


def _prompts(args: argparse.Namespace) -> list[Any]:
    """The first ``--pool`` maths prompts of the cot-sft train split."""
    from safework.training.rl_data import load_rl_prompts

    train, _ = load_rl_prompts("cot-sft", seed=args.seed)
    pool = [p for p in train if p.label == "math"][: args.pool]
    if not pool:
        raise SystemExit("cot-sft has no maths prompts")
    return pool


def _write_prompts(pool: Sequence[Any], path: Path) -> None:
    """SafeWork's prompts file (no ``.dev.jsonl`` beside it: no held-out set)."""
    rows = [{"id": p.id, "label": p.label, "messages": p.messages, "meta": p.meta} for p in pool]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _safework_config(args: argparse.Namespace, data: Path, out: Path) -> Any:
    from safework.training.config import load_config
    from safework.training.rl import RLConfig

    per_step = args.prompts * args.group
    return load_config(
        RLConfig,
        None,
        {
            "stage": "m3rl",
            "model": args.model,
            "data": str(data),
            "output": str(out),
            "overwrite": True,
            "rewards": {"math": dict(ROUTE)},
            "phase1_labels": ["math"],
            "phase2_labels": ["math"],
            "method": "lora",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
            "max_steps": args.steps,
            "prompts_per_step": args.prompts,
            "group_size": args.group,
            "max_new_tokens": args.max_new_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "drop_uniform_groups": args.drop_uniform_groups,
            "ppo_epochs": 1,
            "mini_batches": 1,
            "micro_batch_size": per_step,
            "lr": args.lr,
            "scheduler": "constant",
            "warmup_ratio": 0.0,
            "max_grad_norm": 1.0,
            "precision": "fp32",
            "rollout_engine": "policy",
            "held_out": 0,
            "save_every": 0,
            "seed": args.seed,
        },
    )


def _step_order(args: argparse.Namespace, pool: Sequence[Any], data: Path) -> list[Any]:
    """The prompts SafeWork draws at steps 0 .. steps-1, in order (its own ``step_prompts``
    on a stand-in run), for TRL's unshuffled dataset."""
    from safework.training.rl_trainer import RLRun

    config = _safework_config(args, data, data.parent / "unused")
    stand_in = SimpleNamespace(
        rl=config, pools={"math": list(pool)}, dist=SimpleNamespace(rank=0, world_size=1)
    )
    return [p for step in range(args.steps) for p in RLRun.step_prompts(stand_in, step)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- SafeWork


def run_safework(args: argparse.Namespace, data: Path, out: Path) -> list[Step]:
    from safework.training.rl import train_rl
    from safework.training.rollout import PolicyEngine

    # the longest completion of every generate batch (one per step: no held-out set), which
    # the log does not give; recorded around the engine's batch, outside the timed code's work
    longest: list[int] = []
    run = PolicyEngine._run

    def recording_run(self: PolicyEngine, requests: Any) -> Any:
        results = run(self, requests)
        longest.append(max(len(c.token_ids) for choices in results for c in choices))
        return results

    PolicyEngine._run = recording_run  # type: ignore[method-assign]
    try:
        train_rl(_safework_config(args, data, out))
    finally:
        PolicyEngine._run = run  # type: ignore[method-assign]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    records = [r for r in log if "rollout_s" in r]
    per_step = args.prompts * args.group
    steps = []
    if len(longest) != len(records):
        raise RuntimeError(f"{len(longest)} generate batches for {len(records)} steps")
    for r, width in list(zip(records, longest, strict=True))[1:]:  # the first pays set-up costs
        step = {k: float(r[k]) for k in ("rollout_s", "reward_s", "update_s")}
        step["total_s"] = step["rollout_s"] + step["reward_s"] + step["update_s"]
        step["tokens"] = float(r["completion_tokens_mean"]) * per_step
        step["longest"] = float(width)
        steps.append(step)
    return steps


# --------------------------------------------------------------------------- TRL


def _text(item: Any) -> str:
    """A TRL prompt or completion as text: conversational ones are message lists."""
    if isinstance(item, list):
        return str(item[-1]["content"]) if item else ""
    return str(item)


def _trl_reward(name: str, eos_ids: set[int], opened: str) -> Callable[..., list[float | None]]:
    """SafeWork's reward ``name`` called the way SafeWork's trainer calls it.

    TRL passes ``prompts`` and ``completions`` (message lists for a conversational dataset),
    ``completion_ids`` and every dataset column as keyword lists; ``entry`` and ``answer`` are
    JSON text in the dataset (reasoning-gym entries differ in shape, which Arrow refuses). The
    finish reason ``format`` reads is recovered from the ids: an EOS last = ``stop``.
    """
    from safework.training.rewards import load_reward

    fn = load_reward(name)

    def reward(
        prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kw: Any
    ) -> list[float | None]:
        finish = ["stop" if ids and ids[-1] in eos_ids else "length" for ids in completion_ids]
        return fn(
            [_text(p) for p in prompts],
            [opened + _text(c) for c in completions],
            label=list(kw["label"]),
            finish_reason=finish,
            dataset=list(kw["dataset"]),
            answer=[json.loads(a) for a in kw["answer_json"]],
            entry=[json.loads(e) for e in kw["entry_json"]],
        )

    reward.__name__ = name
    return reward


def run_trl(args: argparse.Namespace, ordered: Sequence[Any], out: Path) -> list[Step]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        PrinterCallback,
        TrainerCallback,
    )
    from trl import GRPOConfig, GRPOTrainer

    from safework.engine.reasoning import starts_in_reasoning
    from safework.training.sft import resolve_model
    from safework.training.sft_config import LLAMA_LINEAR

    model_dir = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    probe = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    opened = "<think>\n" if starts_in_reasoning(probe) else ""
    eos = GenerationConfig.from_pretrained(model_dir).eos_token_id or tokenizer.eos_token_id
    eos_ids = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id}

    dataset = Dataset.from_list(
        [
            {
                "prompt": p.messages,
                "label": p.label,
                "dataset": p.meta.get("dataset"),
                "answer_json": json.dumps(p.meta.get("answer")),
                "entry_json": json.dumps(p.meta.get("entry")),
            }
            for p in ordered
        ]
    )
    config = GRPOConfig(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.group,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        reward_weights=list(ROUTE.values()),
        use_vllm=False,
        shuffle_dataset=False,
        remove_unused_columns=False,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=False,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        seed=args.seed,
    )
    peft_config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LLAMA_LINEAR, task_type="CAUSAL_LM"
    )
    steps: list[Step] = []
    current = {"rollout_s": 0.0, "reward_s": 0.0, "tokens": 0.0, "longest": 0.0}
    last_end = [time.perf_counter()]
    threads_seen: set[int] = set()

    class Timer(TrainerCallback):
        def on_step_end(self, _args: Any, _state: Any, _control: Any, **_: Any) -> None:
            now = time.perf_counter()
            total = now - last_end[0]
            last_end[0] = now
            update = total - current["rollout_s"] - current["reward_s"]
            steps.append({**current, "update_s": update, "total_s": total})
            threads_seen.add(torch.get_num_threads())
            current.update(rollout_s=0.0, reward_s=0.0, tokens=0.0, longest=0.0)

    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        reward_funcs=[_trl_reward(name, eos_ids, opened) for name in ROUTE],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[Timer()],
    )
    trainer.remove_callback(PrinterCallback)
    generate, rewards = trainer._generate, trainer._calculate_rewards

    def timed_generate(prompts: list[Any]) -> Any:
        started = time.perf_counter()
        result = generate(prompts)
        current["rollout_s"] += time.perf_counter() - started
        current["tokens"] += sum(len(ids) for ids in result[1])  # completion ids, EOS included
        current["longest"] = max(current["longest"], *(len(ids) for ids in result[1]))
        return result

    def timed_rewards(*a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        result = rewards(*a, **kw)
        current["reward_s"] += time.perf_counter() - started
        return result

    trainer._generate = timed_generate  # type: ignore[method-assign]
    trainer._calculate_rewards = timed_rewards  # type: ignore[method-assign]
    last_end[0] = time.perf_counter()
    trainer.train()
    if threads_seen != {torch.get_num_threads()}:
        print(f"warning: TRL ran with {sorted(threads_seen)} torch threads", file=sys.stderr)
    return steps[1:]  # the first step pays one-time costs


# --------------------------------------------------------------------------- report


def _summary(steps: Sequence[Step]) -> dict[str, float]:
    med = {k: statistics.median(s[k] for s in steps) for k in (*PHASES, "tokens", "longest")}
    med["rollout_tokens_per_s"] = statistics.median(s["tokens"] / s["rollout_s"] for s in steps)
    med["rollout_ms_per_decode_step"] = statistics.median(
        1000 * s["rollout_s"] / max(s["longest"], 1.0) for s in steps
    )
    med["update_ms_per_token"] = statistics.median(
        1000 * s["update_s"] / max(s["tokens"], 1.0) for s in steps
    )
    return med


def _speedups(sw: dict[str, float], trl: dict[str, float]) -> dict[str, float]:
    """TRL time / SafeWork time (throughput: SafeWork / TRL); > 1 = SafeWork faster."""
    times = (*PHASES, "rollout_ms_per_decode_step", "update_ms_per_token")
    out = {k: trl[k] / sw[k] for k in times if sw[k] > 0}
    if trl["rollout_tokens_per_s"] > 0:
        out["rollout_tokens_per_s"] = sw["rollout_tokens_per_s"] / trl["rollout_tokens_per_s"]
    return out


def _table(median: dict[str, dict[str, float]], speedup: dict[str, float]) -> str:
    rows = [
        ("rollout s/step", "rollout_s", "{:.2f}"),
        ("reward s/step", "reward_s", "{:.3f}"),
        ("update s/step", "update_s", "{:.2f}"),
        ("total s/step", "total_s", "{:.2f}"),
        ("generated tokens/step", "tokens", "{:.0f}"),
        ("longest completion", "longest", "{:.0f}"),
        ("rollout tokens/s", "rollout_tokens_per_s", "{:.1f}"),
        ("rollout ms/decode step", "rollout_ms_per_decode_step", "{:.0f}"),
        ("update ms/gen. token", "update_ms_per_token", "{:.1f}"),
    ]
    lines = [f"{'per RL step (median)':24s} {'safework':>10s} {'trl':>10s} {'speedup':>9s}"]
    for title, key, fmt in rows:
        ratio = f"{speedup[key]:.2f}x" if key in speedup else "-"
        lines.append(
            f"{title:24s} {fmt.format(median['safework'][key]):>10s} "
            f"{fmt.format(median['trl'][key]):>10s} {ratio:>9s}"
        )
    return "\n".join(lines)


def main() -> int:
    args = _parse()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch loads
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    threads = torch.get_num_threads()
    pool = _prompts(args)
    runs: dict[str, list[list[Step]]] = {n: [] for n in NAMES}
    with tempfile.TemporaryDirectory(prefix="bench-rl-step-") as tmp:
        work = Path(tmp)
        data = work / "prompts.jsonl"
        _write_prompts(pool, data)
        ordered = _step_order(args, pool, data)
        for rnd in range(args.rounds):
            order = NAMES[rnd % 2 :] + NAMES[: rnd % 2]
            for name in order:
                started = time.perf_counter()
                out = work / f"{name}-{rnd}"
                if name == "safework":
                    steps = run_safework(args, data, out)
                else:
                    steps = run_trl(args, ordered, out)
                runs[name].append(steps)
                if torch.get_num_threads() != threads:
                    print(f"warning: {name} changed torch threads to {torch.get_num_threads()}")
                    torch.set_num_threads(threads)
                total = statistics.median(s["total_s"] for s in steps)
                print(
                    f"round {rnd + 1} {name:9s} {total:7.2f} s/step, "
                    f"{statistics.median(s['tokens'] for s in steps):5.0f} tokens/step "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
    median = {n: _summary([s for run in runs[n] for s in run]) for n in NAMES}
    speedup = _speedups(median["safework"], median["trl"])
    result = {
        "bench": "rl_step",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "revision": source_revision(),
        "cpu_threads": threads,
        "settings": {
            "model": args.model,
            "method": "lora",
            "precision": "fp32",
            "steps": args.steps,
            "rounds": args.rounds,
            "prompts_per_step": args.prompts,
            "group_size": args.group,
            "max_new_tokens": args.max_new_tokens,
            "pool": len(pool),
            "lr": args.lr,
            "drop_uniform_groups": args.drop_uniform_groups,
            "rewards": {"math": ROUTE},
        },
        "steps": runs,
        "median": median,
        "speedup_trl_over_safework": speedup,
        "note": (
            "medians over every step but the first of each run; sampled lengths differ, so "
            "compare rollout_tokens_per_s, rollout_ms_per_decode_step and update_ms_per_token "
            "as well as seconds per step"
        ),
    }
    print()
    print(_table(median, speedup))
    print(
        "speedup = TRL time / SafeWork time (tokens/s: SafeWork / TRL); > 1 = SafeWork faster.\n"
        "Sampled lengths differ between the sides: rollout tokens/s, rollout ms per decoding "
        "step (per token of the longest completion) and update ms per generated token "
        "normalise for that."
    )
    print(json.dumps({k: result[k] for k in ("settings", "median", "speedup_trl_over_safework")}))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "rl_step.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
