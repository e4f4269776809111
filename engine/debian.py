"""Fetch pinned files out of a Debian package (.deb) into SafeWork's local cache.

The Debian twin of ``fetch.py``: some data we need (the dictd databases of chemical elements and
computing terms behind the built-in search corpus) is packaged for Debian, not PyPI. This module
downloads one pinned ``.deb`` from a Debian mirror with httpx, checks its sha256, reads the ``ar``
archive and its ``data.tar.*`` in Python (no ``dpkg`` needed), extracts only the named members,
checks each against a pinned sha256, writes the same ``PROVENANCE.json`` as the wheel fetcher and
moves the folder into place atomically under a file lock. Nothing is installed.

The mirror is ``http://deb.debian.org/debian`` unless ``SAFEWORK_DEBIAN_MIRROR`` names another
(a local mirror, or ``https://snapshot.debian.org/archive/debian/<timestamp>`` for a version
the pool no longer carries).

Layout: ``cache_dir()/"packages"/"debian-{package}-{version}"/<member path inside data.tar>``.

Use::

    asset = DebAsset("dict-elements", "20001107-a-9.1",
                     "pool/main/d/dict-elements/dict-elements_20001107-a-9.1_all.deb",
                     "<sha256 of the .deb>", {"usr/share/dictd/elements.index": "<sha256>"},
                     license="public domain")
    folder = fetch_deb_files(asset)  # folder / "usr/share/dictd/elements.index" is verified

Run the tests with ``pytest tests/test_debian_fetch.py``.
"""

from __future__ import annotations

import io
import logging
import lzma
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from safework.errors import FetchError
from safework.files import cache_dir, make_staging_dir, remove_path, sha256_file

from .fetch import (
    CHUNK,
    SHA256_RE,
    check_pins,
    commit_staged,
    copy_hashed,
    fetch_once,
    member_target,
)

__all__ = [
    "DEFAULT_MIRROR",
    "DebAsset",
    "Downloader",
    "deb_asset_dir",
    "debian_mirror",
    "fetch_deb_files",
    "http_download",
    "read_ar_members",
]

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
_TIMEOUT_S = 60.0
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError, zlib.error)

Downloader = Callable[[str, Path], None]
"""``(url, file to write) -> None``; raises FetchError. Tests inject one that serves bytes."""


@dataclass(frozen=True)
class DebAsset:
    """Files to take out of one pinned Debian package.

    ``filename`` is the package's path on a mirror, as in Debian's ``Packages`` index
    (``pool/main/d/dict-elements/dict-elements_..._all.deb``). ``members`` maps a path inside
    ``data.tar.*`` (without the leading ``./``) to the sha256 hex digest the file must have.
    """

    package: str
    version: str
    filename: str
    sha256: str
    members: dict[str, str]
    license: str
    source_note: str = ""

    def __post_init__(self) -> None:
        if not self.package or not self.version or not self.filename.endswith(".deb"):
            raise ValueError("DebAsset needs a package, an exact version and a pool path to a .deb")
        if not SHA256_RE.fullmatch(self.sha256):
            raise ValueError(f"{self.package}: the .deb's sha256 must be 64 lowercase hex digits")
        if not self.members:
            raise ValueError(f"DebAsset {self.package} {self.version} names no members")
        check_pins(self.members, f"{self.package} {self.version}")

    @property
    def label(self) -> str:
        """``package_version`` as Debian names it, for messages."""
        return f"{self.package}_{self.version}"


def debian_mirror() -> str:
    """The mirror to download from: ``$SAFEWORK_DEBIAN_MIRROR`` or deb.debian.org."""
    return (os.environ.get("SAFEWORK_DEBIAN_MIRROR") or DEFAULT_MIRROR).rstrip("/")


def deb_asset_dir(asset: DebAsset, cache: Path | None = None) -> Path:
    """The default folder for ``asset``: ``<cache>/packages/debian-<package>-<version>``."""
    root = cache if cache is not None else cache_dir()
    return Path(root) / "packages" / f"debian-{asset.package}-{asset.version}"


# --------------------------------------------------------------------------- downloading


def http_download(url: str, into: Path, *, transport: httpx.BaseTransport | None = None) -> None:
    """GET ``url`` into the file ``into``, streaming. The only function that touches the network."""
    log.info("downloading %s", url)
    try:
        with (
            httpx.Client(transport=transport, timeout=_TIMEOUT_S, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code == 404:
                raise FetchError(
                    f"{url} does not exist (HTTP 404). Debian drops old versions from its pool; "
                    f"set SAFEWORK_DEBIAN_MIRROR to a mirror that keeps it, e.g. "
                    f"https://snapshot.debian.org/archive/debian/20240101T000000Z"
                )
            if response.status_code != 200:
                raise FetchError(f"{url} answered HTTP {response.status_code}; retry later")
            with into.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise FetchError(
            f"could not download {url}: {type(exc).__name__}: {exc}. Check the network, or set "
            f"SAFEWORK_DEBIAN_MIRROR to a reachable Debian mirror"
        ) from exc


# --------------------------------------------------------------------------- ar and tar


def read_ar_members(fh: BinaryIO) -> dict[str, tuple[int, int]]:
    """The members of an ``ar`` archive (a .deb): ``{name: (offset of data, size)}``.

    Format: the magic ``!<arch>\\n``, then per member a 60-byte header (name 16, mtime 12,
    uid 6, gid 6, mode 8, size 10, then the two bytes ``\\x60\\n``) and the data, padded to an
    even length.
    """
    if fh.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise FetchError("not a Debian package: the file does not start with an ar header")
    members: dict[str, tuple[int, int]] = {}
    while header := fh.read(_AR_HEADER):
        if len(header) != _AR_HEADER or header[58:60] != b"`\n":
            raise FetchError("corrupt .deb: truncated or malformed ar member header")
        name = header[:16].decode("ascii", "replace").rstrip(" ").rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise FetchError(f"corrupt .deb: bad size in the header of {name!r}") from exc
        offset = fh.tell()
        members[name] = (offset, size)
        fh.seek(offset + size + (size % 2))
    return members


class _Slice(io.RawIOBase):
    """A read-only window ``[offset, offset + size)`` of a file, for tarfile's stream mode."""

    def __init__(self, fh: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._fh, self._left = fh, size
        fh.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _data_member(members: Mapping[str, tuple[int, int]], label: str) -> tuple[str, int, int]:
    for name in ("data.tar.xz", "data.tar.gz", "data.tar.bz2", "data.tar"):
        if name in members:
            return (name, *members[name])
    if "data.tar.zst" in members:
        raise FetchError(
            f"{label}: data.tar.zst is zstd-compressed, which Python's tarfile cannot read here; "
            f"pin a version of the package compressed with xz or gzip"
        )
    raise FetchError(f"{label}: no data.tar.* member in the .deb (found {sorted(members)})")


def _tar_entries(deb: Path, label: str) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Stream the entries of the .deb's ``data.tar.*`` (compression detected by tarfile)."""
    with deb.open("rb") as fh:
        name, offset, size = _data_member(read_ar_members(fh), label)
        stream = io.BufferedReader(_Slice(fh, offset, size), CHUNK)
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for info in tar:
                    yield tar, info
        except _ARCHIVE_ERRORS as exc:
            raise FetchError(f"{label}: cannot read {name}: {exc}") from exc


def _extract_members(deb: Path, asset: DebAsset, into: Path) -> None:
    """Extract and verify each named member of the .deb's data archive under ``into``."""
    wanted = dict(asset.members)
    seen: list[str] = []
    for tar, info in _tar_entries(deb, asset.label):
        name = info.name.removeprefix("./")
        if info.isfile():
            seen.append(name)
        if name not in wanted:
            continue
        if not info.isfile():
            raise FetchError(f"member {name!r} of {asset.label} is not a regular file")
        target = member_target(into, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(info)
        if src is None:
            raise FetchError(f"cannot read member {name!r} of {asset.label}")
        try:
            with src:
                actual = copy_hashed(src, target)
        except _ARCHIVE_ERRORS as exc:
            raise FetchError(f"{asset.label}: cannot extract {name!r}: {exc}") from exc
        expected = wanted.pop(name)
        if actual != expected:
            target.unlink(missing_ok=True)
            raise FetchError(
                f"sha256 mismatch for {name!r} in {asset.label}: expected {expected}, got "
                f"{actual}. Update the pin only after checking the new file."
            )
        os.utime(target, (info.mtime, info.mtime))
    if wanted:
        raise FetchError(
            f"{asset.label} has no member(s) {sorted(wanted)} in its data archive; the pin in the "
            f"DebAsset is wrong. Files: {seen[:50]}"
        )


# --------------------------------------------------------------------------- the fetch


def _fetch_into(asset: DebAsset, dest: Path, download: Downloader) -> None:
    """Download, check, extract, write provenance, move into ``dest``. Caller holds the lock."""
    url = f"{debian_mirror()}/{asset.filename.lstrip('/')}"
    staging = make_staging_dir(dest)
    try:
        with tempfile.TemporaryDirectory(prefix="safework-deb-") as tmp:
            deb = Path(tmp) / Path(asset.filename).name
            download(url, deb)
            actual = sha256_file(deb)
            if actual != asset.sha256:
                raise FetchError(
                    f"sha256 mismatch for {deb.name} from {url}: expected {asset.sha256}, got "
                    f"{actual}. The mirror serves a different file; do not use it."
                )
            _extract_members(deb, asset, staging)
    except BaseException:
        remove_path(staging)
        raise
    provenance = {
        "package": asset.package,
        "version": asset.version,
        "deb": Path(asset.filename).name,
        "deb_sha256": asset.sha256,
        "url": url,
        "members": dict(asset.members),
        "license": asset.license,
        "source_note": asset.source_note,
        "fetched_with": "httpx GET of the .deb; ar and data.tar read in Python",
    }
    commit_staged(staging, dest, provenance, asset.members)


def fetch_deb_files(
    asset: DebAsset, dest: Path | None = None, *, download: Downloader = http_download
) -> Path:
    """Make sure ``asset``'s members sit verified under ``dest``, fetching them if needed.

    ``dest`` defaults to ``deb_asset_dir(asset)``. Returns ``dest``. Raises FetchError when the
    download fails, the .deb or a member does not match its pin, or a member is missing; ``dest``
    is then left as it was. ``download`` fetches a URL into a file (tests pass a fake).
    """
    dest = Path(dest) if dest is not None else deb_asset_dir(asset)
    identity = {"package": asset.package, "deb_sha256": asset.sha256}
    return fetch_once(
        dest, asset.members, identity, asset.label, lambda: _fetch_into(asset, dest, download)
    )
