"""Write a trained policy as a servable HF folder.

``safework serve --model FOLDER`` (vLLM) needs plain weights, so LoRA adapters are merged into
the base weights here; the adapter alone is also kept under ``adapter/`` for peft users. Under
DeepSpeed ZeRO-3 the parameters are sharded across ranks: every rank joins the gather, rank 0
rebuilds the model on the CPU from the base folder, loads the gathered weights and writes it.
The tokenizer goes beside the weights with its chat template, so the served model talks in the
format it was trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["export_final", "save_dtype"]

logger = logging.getLogger(__name__)


def save_dtype(choice: str, model_dir: Path) -> Any:
    """The torch dtype to save in: the base model's unless ``choice`` says otherwise."""
    import torch

    if choice == "bf16":
        return torch.bfloat16
    if choice == "fp32":
        return torch.float32
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return torch.float32
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)


def _gathered_state(engine: Any) -> dict[str, Any]:
    """A CPU copy of the full state dict of a DeepSpeed engine's module (all ranks call)."""
    import contextlib

    import deepspeed

    module = engine.module
    gather: Any = contextlib.nullcontext()
    if engine.zero_optimization_stage() == 3:  # parameters are sharded: gather them first
        gather = deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)
    with gather:
        return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}


def _rebuild(run: Any, state: dict[str, Any]) -> Any:
    """The trained model rebuilt on the CPU from the base folder plus ``state``."""
    import torch

    from .vision import load_causal_model

    model = load_causal_model(run.model_dir, dtype=torch.float32)
    if run.config.method == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, run.config.lora.peft_config(model))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if "lm_head" in k or "embed_tokens" in k}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"weights do not fit the model: {missing[:3]} {unexpected[:3]}")
    return model


def export_final(run: Any, model: Any, engine: Any) -> None:
    """Write ``run.config.output`` as a servable folder (rank 0 writes; all ranks gather)."""
    from .distributed import barrier

    config = run.config
    if engine is not None:
        state = _gathered_state(engine)
        if run.dist.is_main:
            model = _rebuild(run, state)
    if run.dist.is_main:
        model = model.to("cpu")
        if config.method == "lora":
            model.save_pretrained(config.output / "adapter")
            model = model.merge_and_unload()
        model = model.to(save_dtype(config.save_dtype, run.model_dir))
        model.config.use_cache = True
        model.save_pretrained(config.output)
        vision = getattr(run, "vision", None)
        if vision is not None:  # the image processor's settings, for vLLM and transformers
            vision.processor.save_pretrained(config.output)
        run.tokenizer.save_pretrained(config.output)
        logger.info("servable model written to %s", config.output)
    barrier()
