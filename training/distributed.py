"""Where the trainer runs: one process, or one rank of a ``deepspeed`` launch.

``safework-train sft`` is a single-process trainer until it is started by the ``deepspeed``
launcher (which sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``) with ``deepspeed=FILE.json``; then
the model, optimizer and scheduler are wrapped by ``deepspeed.initialize`` (ZeRO-2 or ZeRO-3 as
the JSON says) and each rank trains on its share of every epoch's batches::

    deepspeed --num_gpus 8 -m safework.training.cli sft deepspeed=configs/zero3.json ...

Fields of the DeepSpeed JSON that the trainer already knows (micro-batch size, accumulation,
clipping, bf16) may be left out or set to ``"auto"``; they are filled from the SFT config, and a
conflicting explicit value is an error, so the two never disagree silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

__all__ = ["DistInfo", "barrier", "deepspeed_config", "dist_info"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """Started by a distributed launcher (env vars present)."""
        return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def dist_info() -> DistInfo:
    env = os.environ
    return DistInfo(
        rank=int(env.get("RANK", "0")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
    )


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


def _fill(config: dict[str, Any], key: str, value: Any, where: str) -> None:
    current = config.get(key, "auto")
    if current == "auto":
        config[key] = value
    elif current != value:
        raise ConfigError(
            f"deepspeed config {where}: {key}={current!r} disagrees with the SFT config "
            f'({value!r}); set it to "auto" or remove it'
        )


def deepspeed_config(
    path: Path,
    *,
    micro_batch_size: int,
    grad_accum: int,
    world_size: int,
    max_grad_norm: float,
    bf16: bool,
) -> dict[str, Any]:
    """The DeepSpeed JSON at ``path`` with the trainer's own settings filled in."""
    if not path.is_file():
        raise ConfigError(f"deepspeed config {path} does not exist; set deepspeed=FILE.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"deepspeed config {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"deepspeed config {path} must be a JSON object")
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"deepspeed config {path}: zero_optimization.stage must be 0-3")
    _fill(config, "train_micro_batch_size_per_gpu", micro_batch_size, str(path))
    _fill(config, "gradient_accumulation_steps", grad_accum, str(path))
    _fill(config, "train_batch_size", micro_batch_size * grad_accum * world_size, str(path))
    _fill(config, "gradient_clipping", max_grad_norm, str(path))
    section = config.setdefault("bf16", {})
    if section.get("enabled", "auto") == "auto":
        section["enabled"] = bf16
    if stage == 3:
        config["zero_optimization"].setdefault("stage3_gather_16bit_weights_on_model_save", True)
    return config
