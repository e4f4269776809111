"""Run folders: the identity of a run, resumable checkpoints, and servable final models.

A run writes into one output folder::

    run.json                 the config that defines the run (what "the same run" means)
    log.jsonl                one JSON line per logged step / evaluation
    checkpoint-<step>/       resumable state: model (or LoRA adapter), optimizer, scheduler,
                             RNG states, step and epoch position (``trainer_state.json``)
    config.json, model.safetensors, tokenizer files, chat_template.jinja
                             the final model in HF format: ``safework serve --model OUTPUT``
    adapter/                 the LoRA adapter alone (LoRA runs), loadable with peft

``claim_output`` guards the folder: a folder that holds a different run, or files that are not
a run's, is refused unless ``overwrite`` is set (then it is emptied); the same run may continue
from its latest checkpoint. Checkpoints are written to a temporary name and renamed, so a killed
run never leaves a half-written checkpoint that resuming would trust.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safework.errors import ConfigError
from safework.files import write_json_atomic

__all__ = [
    "RUN_FILE",
    "STATE_FILE",
    "checkpoints",
    "claim_output",
    "latest_checkpoint",
    "prune_checkpoints",
    "read_state",
    "trim_log",
]

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
STATE_FILE = "trainer_state.json"
LOG_FILE = "log.jsonl"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output`` as ``(step, folder)``, oldest first."""
    found = []
    if output.is_dir():
        for child in output.iterdir():
            match = _CHECKPOINT_RE.match(child.name)
            if match and (child / STATE_FILE).is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint in ``output``, if any."""
    found = checkpoints(output)
    return found[-1][1] if found else None


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint folder."""
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise ConfigError(f"{checkpoint} is not a checkpoint (no {STATE_FILE}); set resume=PATH")
    return json.loads(path.read_text(encoding="utf-8"))


def trim_log(output: Path, step: int) -> None:
    """Drop the ``log.jsonl`` records of steps after ``step``: a run resumed from the checkpoint
    of ``step`` redoes them, and the log should tell one history (``step=-1``: all of them)."""
    path = output / LOG_FILE
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        tmp.replace(path)


def prune_checkpoints(output: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for _step, folder in checkpoints(output)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def claim_output(output: Path, identity: Mapping[str, Any], *, overwrite: bool) -> bool:
    """Make ``output`` this run's folder; True when it already holds this same run.

    ``identity`` is what defines the run (its config without resume/overwrite switches).
    """
    run_file = output / RUN_FILE
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output} is a file; set output=FOLDER")
    entries = [p for p in output.iterdir() if not p.name.startswith(".")] if output.is_dir() else []
    if entries:
        previous = None
        if run_file.is_file():
            try:
                previous = json.loads(run_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                previous = None
        same = previous == json.loads(json.dumps(dict(identity), sort_keys=True))
        if same and not overwrite:
            return True
        if not overwrite:
            what = "a different run" if previous is not None else "files that are not a run's"
            raise ConfigError(
                f"output {output} already holds {what}; choose another output=FOLDER or set "
                "overwrite=true to replace it"
            )
        logger.warning("overwrite=true: emptying %s", output)
        for entry in output.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, identity)
    return False
