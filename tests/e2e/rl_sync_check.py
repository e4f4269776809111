"""Run by ``test_rl_weight_sync.py`` in its own process (vLLM spawns workers, and an engine
inside pytest leaks its ZeMQ context into the unraisable-exception check).

Starts colocated vLLM on a model folder exactly as ``safework-train rl rollout_engine=vllm``
does, and prints JSON: greedy continuations from vLLM and from the trainer's transformers
model, before and after the trainer's weights are perturbed and synced.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace


def main(model_dir: Path, output: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safework.engine.base import SamplingConfig
    from safework.training.distributed import dist_info
    from safework.training.rl import RLConfig
    from safework.training.weights import colocated_vllm, sync_weights

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rl = RLConfig(model=str(model_dir), output=output, method="full", resume="never")
    rl.max_prompt_tokens, rl.max_new_tokens = 64, 16
    loop = asyncio.new_event_loop()
    run = SimpleNamespace(rl=rl, model_dir=model_dir, loop=loop, dist=dist_info())
    engine = colocated_vllm(run, model)
    prompt = tok("The weather today is", add_special_tokens=False)["input_ids"]

    def vllm_greedy() -> list[int]:
        async def go() -> list[int]:
            out: list[int] = []
            async for step in engine.generate(
                prompt, SamplingConfig(max_tokens=8, temperature=0.0), "p"
            ):
                out += list(step.choices[0].token_ids)
            return out

        return loop.run_until_complete(go())

    def hf_greedy() -> list[int]:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None
            )
        return out[0, len(prompt) :].tolist()

    before = {"vllm": vllm_greedy(), "hf": hf_greedy()}
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    sync_weights(run, engine, model)
    after = {"vllm": vllm_greedy(), "hf": hf_greedy()}
    loop.run_until_complete(engine.shutdown())
    print("RESULT " + json.dumps({"before": before, "after": after}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
