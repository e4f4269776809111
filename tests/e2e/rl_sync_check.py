"""Run by ``test_rl_weight_sync.py`` in its own process (vLLM spawns workers, and an engine
inside pytest leaks its ZeMQ context into the unraisable-exception check).

Builds a small random Llama (with the tokenizer of the folder given), starts colocated vLLM on
it exactly as ``safework-train rl rollout_engine=vllm``
does, and prints JSON: greedy continuations from vLLM and from the trainer's transformers
model, before and after the trainer's weights are perturbed and synced.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace


def _vllm_sized_llama(tokenizer_dir: Path, folder: Path) -> Path:
    """A random 2-layer Llama vLLM's CPU attention accepts (head_dim 64), fp32, peaked."""
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.conftest import tiny_llama

    return tiny_llama(folder, AutoTokenizer.from_pretrained(tokenizer_dir), 0.5, hidden=128)


def main(tokenizer_dir: Path, output: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safework.engine.base import SamplingConfig
    from safework.training.distributed import dist_info
    from safework.training.rl import RLConfig
    from safework.training.weights import colocated_vllm, sync_weights

    model_dir = _vllm_sized_llama(tokenizer_dir, output.parent / "policy")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # float32: this checks weight sync, not the CPU dtype choice (tests/test_faithful.py)
    rl = RLConfig(
        model=str(model_dir), output=output, method="full", resume="never", rollout_dtype="float32"
    )
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
    # a fresh engine on the synced files must serve exactly what the synced engine served
    from safework.engine.options import EngineOptions
    from safework.engine.vllm_engine import VLLMEngine

    folder = output / ".rollout-weights"
    tok.save_pretrained(folder)
    engine = VLLMEngine.create(EngineOptions(model=str(folder), max_model_len=128, dtype="float32"))
    after["fresh_vllm"] = vllm_greedy()
    loop.run_until_complete(engine.shutdown())
    from safetensors.torch import load_file

    saved = load_file(folder / "model.safetensors")
    state = model.state_dict()
    same = all(torch.equal(saved[k], state[k].to(saved[k].dtype)) for k in state)
    print(
        "RESULT " + json.dumps({"before": before, "after": after, "saved_equal": same}), flush=True
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
