"""RL under the real ``deepspeed`` launcher: two CPU ranks (gloo), ZeRO-2 and ZeRO-3.

Each rank rolls out its half of every step's prompts with its own copy of the policy; the
update sums the trained-token count over ranks, and a rank with fewer micro-batches (its groups
had no reward variance) runs zero-weighted ones so both ranks join the same collectives. The
learnable reward is ``tests/rl_rewards.py``'s ``spaces`` on the wide-initialised tiny Llama of
``test_rl.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_rl import SPACES, _prompts
from tests.test_sft_deepspeed import ds_launch

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("stage", "method"), [(2, "full"), (3, "lora")])
def test_two_ranks_train_and_export(
    peaked_model: Path,
    tmp_path: Path,
    stage: int,
    method: str,
) -> None:
    data = _prompts(tmp_path / "prompts.jsonl", {"math": 8})
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(json.dumps({"rewards": {"math": {SPACES: 1.0}}}))
    out = tmp_path / f"z{stage}"
    head = ["rl", "--stage", "efficient", "--config", str(recipe)]
    ds_launch(tmp_path, stage, head, f"model={peaked_model}", f"data={data}",
            f"output={out}", f"method={method}", "max_steps=12", "prompts_per_step=4",
            "group_size=4", "max_new_tokens=8", "micro_batch_size=4", "lr=1e-2",
            "held_out=0", "save_every=6", "lora.r=4")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 12
    assert (out / "config.json").is_file()  # the servable folder, gathered on rank 0
    assert (out / "checkpoint-12").is_dir()
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    rewards = [r["reward/total"] for r in rows if "reward/total" in r]
    assert len(rewards) == 12  # rank 0 logs every step
