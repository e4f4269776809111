"""Colocated vLLM rollouts follow the trainer: after ``sync_weights`` vLLM's greedy output is the
trainer's own (transformers) greedy output for the changed weights, not the old one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def test_synced_vllm_generates_like_the_updated_policy(tmp_path: Path, tiny_model: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "rl_sync_check.py"), str(tiny_model), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE.parent.parent,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines, done.stdout[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    before, after = result["before"], result["after"]
    assert before["vllm"] == before["hf"]  # same weights, same greedy tokens
    assert after["hf"] != before["hf"]  # the perturbation changed the policy
    assert after["vllm"] == after["hf"]  # and vLLM now serves the changed policy
