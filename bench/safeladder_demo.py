"""SafeLadder on a CPU: base -> CoT-SFT -> M3-RL on SmolLM2-135M with LoRA, evaluated at each step.

What it does (each step is the CLI a user would run; finished steps are reused):

1. ``safework-train eval`` of the base model (the embedded SmolLM2-135M-Instruct);
2. ``safework-train sft --config configs/sft-lora.yaml max_steps=50`` and its eval, unless
   ``--sft`` names an existing SFT checkpoint (the README's recipe, ~21 min here);
3. ``safework-train rl --stage m3rl`` from the SFT checkpoint for at most ``--minutes`` of
   training (rollouts on colocated vLLM with weight sync, LoRA updates with CPGD), then its eval.

All evals use the same settings (greedy, 256 tokens, 40 prompts per group from the held-out dev
split), so the three points of ``OUTPUT/eval/trajectory.png`` compare. The script prints the
figures the issue asks about: the unsafe-response rate on held-out harmful prompts (plain and
jailbreak-wrapped) and reasoning-gym accuracy, SFT against RL, with the RL run's own held-out
reward report, and writes them to ``bench/results/safeladder-demo.json``.

Run::

    .venv/bin/python bench/safeladder_demo.py --sft runs/sft --minutes 45
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import source_revision, vllm_version

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", type=Path, default=Path("runs/demo"), help="run folders")
    p.add_argument("--sft", type=Path, default=None, help="an existing SFT checkpoint to reuse")
    p.add_argument("--minutes", type=float, default=45.0, help="M3-RL training budget")
    p.add_argument("--max-steps", type=int, default=60, help="M3-RL steps (if time allows)")
    p.add_argument(
        "--rl",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra settings for the rl stage (safework-train rl --help)",
    )
    return p.parse_args()


def _cli(*args: str) -> None:
    command = [sys.executable, "-m", "safework.training.cli", *args]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def _eval(model: str, label: str, output: Path) -> dict[str, Any]:
    report = output / "eval" / label / "report.json"
    if report.is_file() and json.loads(report.read_text())["model"] == model:
        print(f"eval {label}: reusing {report}", file=sys.stderr)
    else:
        _cli("eval", f"model={model}", f"label={label}", f"output={output / 'eval'}")
    return json.loads(report.read_text())


def _rate(report: dict[str, Any], path: tuple[str, ...]) -> str:
    node: Any = report["metrics"]
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return f"{node['k']}/{node['n']}" if "k" in node else "-"


def main() -> int:
    args = _parse()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    from safework.engine.default_model import ensure_default_model

    base = str(ensure_default_model())
    reports = {"base": _eval(base, "base", out)}
    sft = args.sft or out / "sft"
    if args.sft is None and not (sft / "config.json").is_file():
        _cli("sft", "--config", "configs/sft-lora.yaml", "max_steps=50", f"output={sft}")
    reports["sft"] = _eval(str(sft), "sft", out)
    rl_out = out / "m3rl"
    settings = [
        f"model={sft}",
        f"output={rl_out}",
        f"max_steps={args.max_steps}",
        f"max_minutes={args.minutes}",
        "rollout_engine=vllm",
        "prompts_per_step=8",
        "group_size=4",
        "max_new_tokens=256",
        "micro_batch_size=4",
        "lr=1e-4",
        "phase1_share=0.25",
        "held_out=48",
        "save_every=10",
        *args.rl,
    ]
    started = time.monotonic()
    _cli("rl", "--stage", "m3rl", *settings)
    rl_minutes = (time.monotonic() - started) / 60
    metrics = json.loads((rl_out / "metrics.json").read_text())
    reports["m3rl"] = _eval(str(rl_out), "m3rl", out)

    rows = [
        ("unsafe rate, harmful (combined)", ("safety", "unsafe_rate", "plain", "combined")),
        ("unsafe rate, jailbreak (combined)", ("safety", "unsafe_rate", "jailbreak", "combined")),
        (
            "unsafe rate, harmful (refusal check)",
            ("safety", "unsafe_rate", "plain", "refusal_check"),
        ),
        ("over-refusal, benign", ("over_refusal", "benign")),
        ("over-refusal, edgy", ("over_refusal", "edgy")),
        ("reasoning-gym accuracy", ("math", "accuracy")),
        ("maths with no answer", ("math", "no_answer")),
        ("IFEval strict", ("ifeval", "prompt_strict")),
    ]
    print(f"\n{'':38s} {'base':>9s} {'sft':>9s} {'m3rl':>9s}")
    table = {}
    for title, path in rows:
        cells = [_rate(reports[n], path) for n in ("base", "sft", "m3rl")]
        table[title] = dict(zip(("base", "sft", "m3rl"), cells, strict=True))
        print(f"{title:38s} {cells[0]:>9s} {cells[1]:>9s} {cells[2]:>9s}")
    s_sft, s_rl = reports["sft"]["summary"], reports["m3rl"]["summary"]
    checks = {
        "unsafe_rate_falls": s_rl["unsafe_rate"] < s_sft["unsafe_rate"],
        "math_within_2_points": s_rl["math_accuracy"] >= s_sft["math_accuracy"] - 0.02,
    }
    print(f"\nM3-RL: {metrics['steps']} steps in {rl_minutes:.1f} min; checks: {checks}")
    print(
        f"held-out reward: {metrics.get('held_out_start', {}).get('reward/total')} -> "
        f"{metrics.get('held_out_end', {}).get('reward/total')}"
    )
    result = {
        "bench": "safeladder_demo",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "revision": source_revision(),
        "vllm": vllm_version(),
        "rl_settings": settings,
        "rl_minutes": round(rl_minutes, 1),
        "rl_metrics": metrics,
        "summaries": {n: r["summary"] for n, r in reports.items()},
        "table": table,
        "checks": checks,
        "trajectory": str(out / "eval" / "trajectory.png"),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "safeladder-demo.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written to {path}; plot: {result['trajectory']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
