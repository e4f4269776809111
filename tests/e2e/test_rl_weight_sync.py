"""Colocated vLLM rollouts follow the trainer: after ``sync_weights`` the running vLLM serves
exactly what a fresh vLLM started on the trainer's new weights serves, and its first greedy
token is the trainer's own (transformers) one. Later tokens are not compared with transformers:
on the perturbed random model the two implementations' float rounding picks different tokens
even before any sync."""

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
    assert result["saved_equal"]  # the synced file holds the trainer's weights
    assert before["vllm"][0] == before["hf"][0]
    assert after["hf"][0] != before["hf"][0]  # the perturbation changed the policy ...
    assert after["vllm"][0] == after["hf"][0]  # ... and vLLM follows it
    assert after["vllm"] == after["fresh_vllm"]  # exactly: nothing stale (weights, KV cache)
    assert after["vllm"] != before["vllm"]
