"""General file helpers: the cache root, JSON read and atomic write, locks, folder swaps.

Why here: every layer keeps files in SafeWork's cache (models, datasets, indexes, calibration,
run folders), so these helpers belong to none of them; ``engine/fetch.py`` builds its fetches
on them. Folders are replaced by renames (``make_staging_dir`` -> fill -> ``replace_dir``) under
a ``file_lock``, so a crash never leaves a half-written folder where a finished one belongs
(``clean_leftovers`` removes what a crash left beside it).

Nothing to run; ``tests/test_fetch.py`` covers them with the fetches.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "cache_dir",
    "clean_leftovers",
    "file_lock",
    "lock_path_for",
    "make_staging_dir",
    "read_json",
    "remove_path",
    "replace_dir",
    "sha256_file",
    "weights_digest",
    "write_json_atomic",
]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """SafeWork's cache root: ``$SAFEWORK_CACHE`` if set, else ``~/.cache/safework``."""
    env = os.environ.get("SAFEWORK_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "safework"


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of the file at ``path``."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def weights_digest(folder: Path) -> str | None:
    """The sha256 of a model folder's weight files (names and contents, in name order);
    ``None`` when the folder holds none. What is fitted to one checkpoint's outputs (its
    confidence calibration) is stored under this, so a retrained checkpoint served under the
    same name, or another run's folder of the same name, never picks it up. Reads every
    weight byte: 0.27 s for the 135M default model here, seconds for a 7B one."""
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0".encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if needed) for the ``with`` block.

    The lock file is left in place afterwards: deleting it would let two processes lock two
    different files of the same name.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process holding %s", lock_path)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_path_for(dest: Path) -> Path:
    """The lock file guarding ``dest``: a hidden file beside it."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.lock")


def make_staging_dir(dest: Path) -> Path:
    """A new hidden folder next to ``dest`` to build its replacement in."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))


def replace_dir(staging: Path, dest: Path) -> None:
    """Move the finished folder ``staging`` to ``dest``, replacing whatever is there.

    Both must be on the same file system (make ``staging`` next to ``dest``). Each step is a
    rename, so a crash leaves either the old folder, the new one, or none at ``dest`` (plus a
    hidden leftover that ``clean_leftovers`` removes), never a half-written one.
    """
    staging, dest = Path(staging), Path(dest)
    if dest.exists() or dest.is_symlink():
        trash = dest.with_name(f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(dest, trash)
        os.replace(staging, dest)
        remove_path(trash)
    else:
        os.replace(staging, dest)


def remove_path(path: Path) -> None:
    """Delete ``path``, a folder (recursively) or a file or link, if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(dest: Path) -> None:
    """Remove staging and trash folders a crashed run left next to ``dest``.

    Call only while holding ``dest``'s lock, so no live process is still using them.
    """
    dest = Path(dest)
    if not dest.parent.is_dir():
        return
    for pattern in (f".{dest.name}.partial-*", f".{dest.name}.old-*"):
        for leftover in dest.parent.glob(pattern):
            log.info("removing leftover %s", leftover)
            remove_path(leftover)
