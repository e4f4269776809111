"""Tests for ``safework.engine.faithful``: the CPU dtype check against float32 transformers.

The CPU is faked through its ``/proc/cpuinfo`` text and the two expensive sides (transformers
and vLLM runs) through a scripted prober, so these run in milliseconds; the real check runs in
``make model`` and the live server's agreement is tested in ``tests/e2e/test_agreement.py``.

Run: ``pytest tests/test_faithful.py``.
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest

from safework.engine import faithful
from safework.engine.faithful import (
    MIN_AGREEMENT,
    TIE_NATS,
    ReferencePath,
    agreement,
    candidate_dtypes,
    choose_cpu_dtype,
    compare,
    cpu_features,
)
from safework.errors import EngineError

AMX = "model name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: fpu sse2 avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8\n"  # noqa: E501
AVX512_BF16 = "model name\t: AMD EPYC 9454\nflags\t\t: fpu sse2 avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16\n"  # noqa: E501
AVX2 = "model name\t: Intel(R) Core(TM) i7\nflags\t\t: fpu sse2 avx2 fma f16c\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd asimdhp bf16 i8mm sve\n"


def test_doctests() -> None:
    assert doctest.testmod(faithful).failed == 0


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "expected"),
    [
        (AMX, "x86_64", ("bfloat16", "float16", "float32")),
        # no half-precision arithmetic: float32 decodes faster than float16 (3.5x on an EPYC)
        (AVX512_BF16, "x86_64", ("bfloat16", "float32", "float16")),
        (AVX2, "x86_64", ("float32", "float16")),
        (ARM_BF16, "aarch64", ("bfloat16", "float16", "float32")),
        ("", "aarch64", ("float32", "float16")),
    ],
)
def test_candidates_follow_the_cpu(cpuinfo: str, machine: str, expected: tuple[str, ...]) -> None:
    assert candidate_dtypes(cpu_features(cpuinfo, machine)) == expected


def test_features_keep_only_kernel_relevant_flags() -> None:
    amx = cpu_features(AMX, "x86_64")
    assert "amx_bf16" in amx["flags"]
    assert "fpu" not in amx["flags"]
    assert amx["model_name"] == "Intel(R) Xeon(R) Platinum"
    assert cpu_features(AVX512_BF16, "x86_64")["flags"] != amx["flags"]


# --------------------------------------------------------------------------- comparing


def path(tokens: list[int], second: dict[int, float] | None = None) -> ReferencePath:
    """A reference whose token at each position has log p = -0.1; ``second`` adds rivals at
    every position."""
    return ReferencePath([1, 2], tokens, [{t: -0.1, **(second or {})} for t in tokens])


def test_compare_exact_near_tie_and_real_divergence() -> None:
    ref = path([5, 6, 7, 8], second={9: -0.1 - TIE_NATS / 2, 10: -2.0})
    assert compare(ref, [5, 6, 7, 8]).position is None
    tie = compare(ref, [5, 6, 9, 4])
    assert (tie.position, tie.agrees) == (2, True)
    real = compare(ref, [5, 10, 7, 8])
    assert (real.position, real.agrees) == (1, False)
    assert real.gap == pytest.approx(1.9)
    assert math.isinf(compare(ref, [5, 6, 7, 3]).gap)  # outside the reference's top-K
    # only the first n tokens count
    assert compare(ref, [5, 6, 10, 10], n=2).agrees


def test_compare_treats_an_early_end_as_a_divergence() -> None:
    ref = path([5, 6, 2])  # 2 = end of sequence
    assert not compare(ref, [5, 6, 2, 7, 7]).agrees  # the served one did not stop
    assert not compare(ref, [5]).agrees


def test_agreement_counts_prompts() -> None:
    refs = [path([5, 6]), path([7, 8]), path([9, 9])]
    rate, found = agreement(refs, [[5, 6], [7, 3], [9, 9]])
    assert rate == pytest.approx(2 / 3)
    assert [d.agrees for d in found] == [True, False, True]
    with pytest.raises(ValueError, match="one served"):
        agreement(refs, [[5, 6]])


# --------------------------------------------------------------------------- choosing


class ScriptedProber:
    """Serves the reference path itself, or a wrong first token in the dtypes told to differ,
    or fails to start in the dtypes told to fail."""

    def __init__(self, wrong: dict[str, int], broken: tuple[str, ...] = ()) -> None:
        self.refs = [path([5 + i, 6, 7]) for i in range(10)]
        self.wrong = wrong  # dtype -> how many of the 10 prompts it answers differently
        self.broken = broken
        self.calls: list[str] = []

    def reference(self, folder: Path) -> list[ReferencePath]:
        self.calls.append("reference")
        return self.refs

    def served(self, folder: Path, dtype: str, prompts: list[list[int]]) -> list[list[int]]:
        self.calls.append(dtype)
        if dtype in self.broken:
            raise EngineError(f"{dtype} is not supported here")
        wrong = self.wrong.get(dtype, 0)
        return [[99, 6, 7] if i < wrong else r.tokens for i, r in enumerate(self.refs)]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_amx_falls_back_from_bfloat16_to_float16(model: Path, tmp_path: Path) -> None:
    prober = ScriptedProber(wrong={"bfloat16": 4, "float16": 0})
    features = cpu_features(AMX, "x86_64")
    d = choose_cpu_dtype(model, features=features, prober=prober, cache=tmp_path)
    assert d.dtype == "float16"
    assert prober.calls == ["reference", "bfloat16", "float16"]
    assert [(r["dtype"], r["agreed"], r["total"]) for r in d.results] == [
        ("bfloat16", 6, 10),
        ("float16", 10, 10),
    ]
    assert d.results[0]["parted"][0] == {"prompt": 0, "position": 0, "gap": None}


def test_without_half_precision_arithmetic_float32_comes_before_float16(
    model: Path, tmp_path: Path
) -> None:
    # The EPYC case: bfloat16 parts from the reference, and float16 (emulated) is never started.
    prober = ScriptedProber(wrong={"bfloat16": 4})
    features = cpu_features(AVX512_BF16, "x86_64")
    d = choose_cpu_dtype(model, features=features, prober=prober, cache=tmp_path)
    assert d.dtype == "float32"
    assert prober.calls == ["reference", "bfloat16", "float32"]


def test_a_decision_made_in_another_order_is_not_reused(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = cpu_features(AVX512_BF16, "x86_64")
    older = ScriptedProber(wrong={"bfloat16": 4})
    monkeypatch.setattr(faithful, "candidate_dtypes", lambda f: ("bfloat16", "float16", "float32"))
    assert choose_cpu_dtype(model, features=features, prober=older, cache=tmp_path).dtype == (
        "float16"
    )
    monkeypatch.undo()
    now = ScriptedProber(wrong={"bfloat16": 4})
    d = choose_cpu_dtype(model, features=features, prober=now, cache=tmp_path)
    assert (d.dtype, d.cached) == ("float32", False)


def test_a_faithful_fastest_dtype_is_kept(model: Path, tmp_path: Path) -> None:
    prober = ScriptedProber(wrong={"bfloat16": 1})  # 9/10 meets the bar
    assert MIN_AGREEMENT <= 0.9
    features = cpu_features(AVX512_BF16, "x86_64")
    d = choose_cpu_dtype(model, features=features, prober=prober, cache=tmp_path)
    assert d.dtype == "bfloat16"
    assert prober.calls == ["reference", "bfloat16"]


def test_decision_is_cached_per_cpu(model: Path, tmp_path: Path) -> None:
    amx, avx = cpu_features(AMX, "x86_64"), cpu_features(AVX512_BF16, "x86_64")
    first = ScriptedProber(wrong={"bfloat16": 5})
    assert choose_cpu_dtype(model, features=amx, prober=first, cache=tmp_path).dtype == "float16"
    again = ScriptedProber(wrong={})
    d = choose_cpu_dtype(model, features=amx, prober=again, cache=tmp_path)
    assert (d.dtype, d.cached, again.calls) == ("float16", True, [])
    # the same home folder on another CPU measures anew
    other = ScriptedProber(wrong={})
    assert choose_cpu_dtype(model, features=avx, prober=other, cache=tmp_path).dtype == "bfloat16"
    assert other.calls == ["reference", "bfloat16"]
    # --force measures anew too
    forced = ScriptedProber(wrong={})
    d = choose_cpu_dtype(model, features=amx, prober=forced, cache=tmp_path, force=True)
    assert (d.dtype, d.cached) == ("bfloat16", False)


def test_new_weights_or_config_measure_anew(model: Path, tmp_path: Path) -> None:
    amx = cpu_features(AMX, "x86_64")
    choose_cpu_dtype(model, features=amx, prober=ScriptedProber(wrong={}), cache=tmp_path)
    (model / "model.safetensors").write_bytes(b"\0" * 128)
    prober = ScriptedProber(wrong={"bfloat16": 9})
    assert choose_cpu_dtype(model, features=amx, prober=prober, cache=tmp_path).dtype == "float16"
    assert prober.calls[0] == "reference"


def test_a_dtype_that_fails_to_start_is_skipped(model: Path, tmp_path: Path) -> None:
    prober = ScriptedProber(wrong={}, broken=("bfloat16",))
    features = cpu_features(AMX, "x86_64")
    d = choose_cpu_dtype(model, features=features, prober=prober, cache=tmp_path)
    assert d.dtype == "float16"
    assert "not supported" in d.results[0]["error"]


def test_no_faithful_dtype_serves_the_closest(model: Path, tmp_path: Path) -> None:
    prober = ScriptedProber(wrong={"bfloat16": 6, "float16": 3, "float32": 4})
    features = cpu_features(AMX, "x86_64")
    assert choose_cpu_dtype(model, features=features, prober=prober, cache=tmp_path).dtype == (
        "float16"
    )
    broken = ScriptedProber(wrong={}, broken=("float16", "float32"))
    with pytest.raises(EngineError, match="any of"):
        choose_cpu_dtype(
            model, features=cpu_features(AVX2, "x86_64"), prober=broken, cache=tmp_path / "b"
        )


def test_user_dtype_and_non_folders_skip_the_check(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safework.engine import vllm_engine

    def no_check(folder: Path) -> str:
        raise AssertionError("the check ran")

    monkeypatch.setattr(faithful, "choose_cpu_dtype", no_check)
    assert faithful.faithful_cpu_dtype("org/some-hub-model") == "auto"
    seen: list[str] = []
    monkeypatch.setattr(faithful, "faithful_cpu_dtype", lambda f: seen.append(str(f)) or "x")
    chosen = vllm_engine._serving_dtype(
        vllm_engine.EngineOptions(model=str(model), dtype="bfloat16"), str(model), on_cpu=True
    )
    assert (chosen, seen) == ("bfloat16", [])
    auto = vllm_engine.EngineOptions(model=str(model))
    assert vllm_engine._serving_dtype(auto, str(model), on_cpu=False) == "auto"
    assert vllm_engine._serving_dtype(auto, str(model), on_cpu=True) == "x"
    assert seen == [str(model)]


# --------------------------------------------------------------------------- the real reference


def test_reference_subprocess_matches_one_prompt_at_a_time(
    peaked_model: Path, tmp_path: Path
) -> None:
    """The reference side as the check runs it (a subprocess, one left-padded batch, JSON back)
    gives each prompt the greedy path and log-probabilities transformers gives it alone."""
    import torch
    from transformers import AutoModelForCausalLM

    refs = faithful.SubprocessProber(tmp_path).reference(peaked_model)
    assert len(refs) == len(faithful.PROBE_QUESTIONS)
    model = AutoModelForCausalLM.from_pretrained(peaked_model, dtype=torch.float32)
    for ref in refs[:3]:
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ref.prompt]), max_new_tokens=faithful.PROBE_TOKENS, do_sample=False,
                output_scores=True, return_dict_in_generate=True,
            )  # fmt: skip
        alone = out.sequences[0, len(ref.prompt) :].tolist()
        assert ref.tokens == alone[: len(ref.tokens)]
        assert len(ref.top) == len(ref.tokens)
        first = torch.log_softmax(out.scores[0][0], dim=-1)
        for token, logprob in ref.top[0].items():
            assert logprob == pytest.approx(first[token].item(), abs=1e-3)
        assert compare(ref, alone).position is None


def test_checkpoints_of_one_model_share_a_fingerprint(model: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    config = json.loads((model / "config.json").read_text())
    extra = {"_name_or_path": "runs/sft", "transformers_version": "9.9", "use_cache": False}
    (export / "config.json").write_text(json.dumps({**config, **extra}))
    (export / "model.safetensors").write_bytes(b"\1" * 64)  # same size, other weights
    assert faithful.model_fingerprint(export) == faithful.model_fingerprint(model)
    (export / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))
    assert faithful.model_fingerprint(export) != faithful.model_fingerprint(model)
