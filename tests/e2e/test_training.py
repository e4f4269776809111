"""SafeLadder's first stage end to end on SmolLM2-135M: data, LoRA SFT, serving, evaluation.

The README's training recipe, shortened: 50 LoRA steps on the built-in cot-sft mix lower the
dev loss; ``safework serve --model <run>`` serves the result; ``safework-train eval`` scores the
base model and the fine-tuned one into the same folder, so the report JSON holds both points and
the trajectory PNG draws them. Evaluations run through the real CLI in a subprocess (one vLLM
engine per process, as a user would run them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from safework.training.config import load_config
from safework.training.data import ensure_dataset, load_conversations
from safework.training.sft import SFTConfig, train

from .conftest import start_server, stop_server

pytestmark = pytest.mark.slow

SFT_STEPS = 50
EVAL_SIZES = [
    "safety_samples=8",
    "benign_samples=8",
    "edgy_samples=4",
    "math_samples=8",
    "capability_samples=8",
    "ifeval_samples=8",
    "max_tokens=160",
    "jailbreak_templates=[john,text_continuation]",
]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sft") / "run"
    config = load_config(
        SFTConfig,
        None,
        {
            "output": str(out),
            "max_steps": SFT_STEPS,
            "batch_size": 2,
            "grad_accum": 1,
            "max_length": 256,
            "lr": 3e-4,
            "dev_rows": 24,
            "save_every": 25,
        },
    )
    return out, train(config)


def test_the_builtin_mix_is_valid_and_disjoint() -> None:
    folder = ensure_dataset("cot-sft")
    train_rows = load_conversations(folder / "train.jsonl")
    dev_rows = load_conversations(folder / "dev.jsonl")
    prompts = {r["messages"][0]["content"].strip().lower() for r in train_rows}
    assert not prompts & {r["messages"][0]["content"].strip().lower() for r in dev_rows}
    assert {r["task"] for r in dev_rows} == {"math", "safety", "benign"}


def test_fifty_lora_steps_lower_the_dev_loss(sft_run: tuple[Path, dict]) -> None:
    out, summary = sft_run
    assert summary["steps"] == SFT_STEPS
    assert summary["dev_loss_end"] < summary["dev_loss_start"] - 0.05, summary
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-25", "checkpoint-50"]


def test_the_checkpoint_serves(sft_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = sft_run
    remote = start_server(
        tmp_path, "--model", str(out), "--no-memory", "--no-alignment", "--no-search"
    )
    try:
        client = remote.client()
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is 12 plus 30?"}],
            max_tokens=48,
            temperature=0,
        )
        message = reply.choices[0].message
        assert (message.content or "") + (getattr(message, "reasoning_content", None) or "")
    finally:
        stop_server(remote)


def _eval(output: Path, label: str, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "safework.training.cli", "eval", f"output={output}",
           f"label={label}", *EVAL_SIZES, *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The engine is shut down before exit, not torn down with the interpreter (a traceback).
    assert "Exception ignored" not in proc.stderr, proc.stderr[-4000:]
    return json.loads((output / label / "report.json").read_text())


def test_eval_of_base_and_finetuned_draws_the_trajectory(
    sft_run: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = sft_run
    evals = tmp_path / "eval"
    base = _eval(evals, "base")
    tuned = _eval(evals, "sft", f"model={out}")
    for report in (base, tuned):
        summary = report["summary"]
        assert 0.0 <= summary["safety"] <= 1.0
        assert 0.0 <= summary["capability"] <= 1.0
    points = json.loads((evals / "trajectory.json").read_text())["points"]
    assert [p["label"] for p in points] == ["base", "sft"]
    png = evals / "trajectory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
