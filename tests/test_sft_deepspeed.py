"""SFT under the real ``deepspeed`` launcher: two CPU ranks, ZeRO-2 and ZeRO-3.

DeepSpeed picks its CPU accelerator here (gloo between ranks), so these runs exercise the same
code paths as a multi-GPU launch: sharded optimizer state (ZeRO-2), sharded parameters gathered
for the final save (ZeRO-3, LoRA merged on rank 0), and resuming from a DeepSpeed checkpoint to
exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_sft import _rows

torch = pytest.importorskip("torch")
pytest.importorskip("deepspeed")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ds-data")
    for name, n, seed in (("train.jsonl", 64, 0), ("dev.jsonl", 16, 1)):
        lines = [json.dumps(r) for r in _rows(n, seed)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def ds_launch(tmp_path: Path, stage: int, head: list[str], *overrides: str) -> None:
    """``deepspeed --num_gpus 2 --module safework.training.cli HEAD deepspeed=zeroN.json ...``
    on CPU ranks; fails the test with the output when the launch fails."""
    ds_config = tmp_path / f"zero{stage}.json"
    ds_config.write_text(json.dumps({"zero_optimization": {"stage": stage}}))
    launcher = Path(sys.executable).with_name("deepspeed")
    port = _free_port()
    cmd = [
        str(launcher),
        "--num_gpus",
        "2",
        "--master_port",
        str(port),
        "--module",
        "safework.training.cli",
        *head,
        f"deepspeed={ds_config}",
        "precision=fp32",
        *overrides,
    ]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
        )
    finally:
        # DeepSpeed's CPU all-reduce leaves one 66 MiB buffer per rank in /dev/shm, named by
        # the port, even after a clean exit: without this each run kept ~130 MiB of RAM.
        for buffer in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"):
            buffer.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _launch(tmp_path: Path, stage: int, *overrides: str) -> None:
    ds_launch(tmp_path, stage, ["sft"], "lr=1e-2", *overrides)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_zero2_full_finetune_two_ranks(tiny_model: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "z2"
    _launch(tmp_path, 2, f"model={tiny_model}", f"data={data}", f"output={out}", "method=full",
            "lr=3e-3", "max_steps=8", "batch_size=4", "grad_accum=2")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 8
    assert metrics["dev_loss_end"] < metrics["dev_loss_start"]
    before, after = _weights(tiny_model), _weights(out)
    assert [k for k in before if torch.equal(before[k].float(), after[k].float())] == []


def test_zero3_lora_resume_matches_uninterrupted(
    tiny_model: Path, data: Path, tmp_path: Path
) -> None:
    common = [f"model={tiny_model}", f"data={data}", "method=lora", "max_steps=6", "save_every=3"]
    full = tmp_path / "full"
    _launch(tmp_path, 3, *common, f"output={full}")
    assert (full / "adapter" / "adapter_model.safetensors").is_file()
    assert {p.name for p in full.glob("checkpoint-*")} == {"checkpoint-3", "checkpoint-6"}

    # the same run, stopped after its step-3 checkpoint
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoint-6")
    (resumed / "model.safetensors").unlink()
    _launch(tmp_path, 3, *common, f"output={resumed}")
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3
    ref, got = _weights(full), _weights(resumed)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key])
