"""Answers an eval has generated so far, kept on disk so an interrupted eval resumes.

Generating is most of an eval's time (about ten minutes for 415 prompts of a 135M model on two
cores), and a pipeline on a shared machine gets stopped. ``AnswerLog`` appends each answer to
``<output>/<label>/answers.partial.jsonl`` as it arrives; a rerun of the same eval (same model
files, sampling and prompts) fills those samples from the file and generates only the rest. The
file starts with a fingerprint line; any difference starts it over. It is removed once the
report is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .eval_tasks import Sample

logger = logging.getLogger(__name__)

PARTIAL_FILE = "answers.partial.jsonl"
_FIELDS = (
    "response",
    "reasoning",
    "answer",
    "unclosed_think",
    "finish_reason",
    "completion_tokens",
)


def model_stamp(model: str) -> dict[str, Any]:
    """The model folder's files by name, with size and modification time (a stage run again
    rewrites them)."""
    folder = Path(model)
    if not folder.is_dir():
        return {"model": model}
    files = sorted(f for f in folder.iterdir() if f.is_file())
    return {
        "model": model,
        "files": {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files},
    }


def _key(sample: Sample) -> str:
    body = json.dumps([sample.id, sample.group, sample.messages], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class AnswerLog:
    """The partial answers of one eval: ``restore`` what a previous run kept, ``add`` each new
    answer, ``finish`` when the report is written."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]) -> None:
        self.path = folder / PARTIAL_FILE
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self._file: Any = None

    def _kept(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        kept: dict[str, dict[str, Any]] = {}
        with self.path.open(encoding="utf-8") as f:
            try:
                header = json.loads(f.readline() or "null")
            except json.JSONDecodeError:
                return {}
            if not isinstance(header, dict) or header.get("fingerprint") != self.fingerprint:
                return {}
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # the last line of a run stopped mid-write
                kept[row["key"]] = row
        return kept

    def restore(self, samples: Sequence[Sample]) -> list[Sample]:
        """Fill the samples answered before; return those still to generate. Opens the file
        for appending (rewritten with only the kept answers)."""
        kept = self._kept()
        todo: list[Sample] = []
        rows: list[dict[str, Any]] = []
        for sample in samples:
            row = kept.get(_key(sample))
            if row is None:
                todo.append(sample)
                continue
            for name in _FIELDS:
                setattr(sample, name, row[name])
            rows.append(row)
        if rows:
            logger.info(
                "resuming: %d of %d answers kept from %s", len(rows), len(samples), self.path
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"fingerprint": self.fingerprint}) + "\n")
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(self.path)
        self._file = self.path.open("a", encoding="utf-8")
        return todo

    def add(self, sample: Sample) -> None:
        row = {"key": _key(sample), **{name: getattr(sample, name) for name in _FIELDS}}
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self) -> None:
        """The report is written: the partial answers are no longer needed."""
        self.close()
        self.path.unlink(missing_ok=True)
