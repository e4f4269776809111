"""Tests for ``safework.engine.debian``: pinned files out of a .deb, verified and cached.

Only the network is faked: a small real .deb (ar archive with a ``data.tar.xz``) is written in
the test and served through ``httpx.MockTransport``; ar parsing, tar extraction, hashing,
provenance, locking and renames run for real.

Run: ``pytest tests/test_debian_fetch.py``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from safework.engine.debian import DebAsset, fetch_deb_files, http_download, read_ar_members
from safework.errors import FetchError

POOL_PATH = "pool/main/d/demo/demo_1.0-1_all.deb"
FILES = {
    "usr/share/dictd/demo.index": b"alpha\tA\tB\n",
    "usr/share/dictd/demo.dict.dz": bytes(range(256)) * 8,
    "usr/share/doc/demo/copyright": b"public domain\n",
}
MEMBERS = ("usr/share/dictd/demo.index", "usr/share/dictd/demo.dict.dz")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mtime = len(data), 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ar_bytes(members: dict[str, bytes]) -> bytes:
    """An ``ar`` archive, as ``dpkg-deb`` writes it (odd-sized members padded with a newline)."""
    out = [b"!<arch>\n"]
    for name, data in members.items():
        header = f"{name:<16}{1600000000:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += [header.encode("ascii"), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def make_deb(files: dict[str, bytes] = FILES, compression: str = "xz") -> bytes:
    return ar_bytes(
        {
            "debian-binary": b"2.0\n",
            "control.tar.xz": tar_bytes({"control": b"Package: demo\n"}, "w:xz"),
            f"data.tar.{compression}": tar_bytes(files, f"w:{compression}"),
        }
    )


def make_asset(deb: bytes, **member_overrides: str) -> DebAsset:
    members = {name: sha256(FILES[name]) for name in MEMBERS}
    members.update(member_overrides)
    return DebAsset("demo", "1.0-1", POOL_PATH, sha256(deb), members, license="public domain")


class Mirror:
    """A Debian mirror on ``httpx.MockTransport`` serving one .deb; counts the requests."""

    def __init__(self, deb: bytes, status: int = 200) -> None:
        self.deb, self.status, self.urls = deb, status, []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return httpx.Response(self.status, content=self.deb if self.status == 200 else b"")

    @property
    def download(self) -> functools.partial[None]:
        return functools.partial(http_download, transport=httpx.MockTransport(self.handler))


@pytest.fixture(autouse=True)
def mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEWORK_DEBIAN_MIRROR", "http://mirror.test/debian/")


@pytest.mark.parametrize("compression", ["xz", "gz"])
def test_extracts_verifies_and_records_provenance(tmp_path: Path, compression: str) -> None:
    deb = make_deb(compression=compression)
    mirror = Mirror(deb)
    dest = tmp_path / "demo"
    assert fetch_deb_files(make_asset(deb), dest, download=mirror.download) == dest
    assert mirror.urls == [f"http://mirror.test/debian/{POOL_PATH}"]
    for name in MEMBERS:
        assert (dest / name).read_bytes() == FILES[name]
    assert not (dest / "usr/share/doc/demo/copyright").exists()  # not pinned, not extracted
    provenance = json.loads((dest / "PROVENANCE.json").read_text())
    assert provenance["deb_sha256"] == sha256(deb)
    assert provenance["url"] == mirror.urls[0]
    assert set(provenance["members"]) == set(MEMBERS)
    # A second call finds the verified cache and does not download.
    fetch_deb_files(make_asset(deb), dest, download=mirror.download)
    assert len(mirror.urls) == 1


def test_tampered_cache_is_fetched_again(tmp_path: Path) -> None:
    deb = make_deb()
    mirror = Mirror(deb)
    dest = fetch_deb_files(make_asset(deb), tmp_path / "demo", download=mirror.download)
    (dest / MEMBERS[0]).write_bytes(b"changed")
    fetch_deb_files(make_asset(deb), dest, download=mirror.download)
    assert len(mirror.urls) == 2
    assert (dest / MEMBERS[0]).read_bytes() == FILES[MEMBERS[0]]


def test_wrong_deb_checksum_raises_and_leaves_nothing(tmp_path: Path) -> None:
    deb = make_deb()
    asset = make_asset(deb)
    served = Mirror(deb[:-1] + bytes([deb[-1] ^ 1]))  # one bit flipped in transit
    with pytest.raises(FetchError, match=r"sha256 mismatch for demo_1\.0-1_all\.deb"):
        fetch_deb_files(asset, tmp_path / "demo", download=served.download)
    assert not (tmp_path / "demo").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".demo.lock"]  # no staging leftovers


def test_corrupted_member_raises(tmp_path: Path) -> None:
    deb = make_deb({**FILES, MEMBERS[1]: b"corrupted" * 10})
    asset = make_asset(deb)  # pins the good member hashes, the .deb hash of the bad .deb
    with pytest.raises(FetchError, match=r"sha256 mismatch for 'usr/share/dictd/demo\.dict\.dz'"):
        fetch_deb_files(asset, tmp_path / "demo", download=Mirror(deb).download)
    assert not (tmp_path / "demo").exists()


def test_truncated_data_archive_raises(tmp_path: Path) -> None:
    files = {**FILES, MEMBERS[1]: bytes(range(256)) * 400}  # big enough to span xz blocks
    data = tar_bytes(files, "w:xz")
    deb = ar_bytes({"debian-binary": b"2.0\n", "data.tar.xz": data[: len(data) // 2]})
    with pytest.raises(FetchError, match=r"cannot (read|extract)"):
        fetch_deb_files(make_asset(deb), tmp_path / "demo", download=Mirror(deb).download)
    assert not (tmp_path / "demo").exists()


def test_missing_member_names_what_is_there(tmp_path: Path) -> None:
    deb = make_deb()
    asset = make_asset(deb, **{"usr/share/dictd/other.index": "0" * 64})
    with pytest.raises(FetchError, match=r"no member\(s\) \['usr/share/dictd/other\.index'\]"):
        fetch_deb_files(asset, tmp_path / "demo", download=Mirror(deb).download)


def test_http_404_names_the_mirror_setting(tmp_path: Path) -> None:
    deb = make_deb()
    with pytest.raises(FetchError, match="SAFEWORK_DEBIAN_MIRROR"):
        fetch_deb_files(make_asset(deb), tmp_path / "d", download=Mirror(deb, status=404).download)


def test_network_down_is_a_fetch_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    download = functools.partial(http_download, transport=httpx.MockTransport(refuse))
    with pytest.raises(FetchError, match=r"could not download .*ConnectError"):
        fetch_deb_files(make_asset(make_deb()), tmp_path / "d", download=download)


def test_ar_members_and_padding() -> None:
    data = ar_bytes({"odd": b"abc", "even": b"abcd", "last": b"z"})
    members = read_ar_members(io.BytesIO(data))
    assert list(members) == ["odd", "even", "last"]
    for name, expected in [("odd", b"abc"), ("even", b"abcd"), ("last", b"z")]:
        offset, size = members[name]
        assert data[offset : offset + size] == expected
    with pytest.raises(FetchError, match="not a Debian package"):
        read_ar_members(io.BytesIO(b"PK\x03\x04 a zip"))


def test_not_a_deb_raises(tmp_path: Path) -> None:
    junk = b"<html>mirror error page</html>"
    asset = DebAsset("demo", "1.0-1", POOL_PATH, sha256(junk), {MEMBERS[0]: "0" * 64}, "x")
    with pytest.raises(FetchError, match="not a Debian package"):
        fetch_deb_files(asset, tmp_path / "d", download=Mirror(junk).download)


def test_asset_rejects_unsafe_members_and_bad_pins() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        DebAsset("demo", "1", POOL_PATH, "0" * 64, {"../etc/passwd": "0" * 64}, "x")
    with pytest.raises(ValueError, match="sha256"):
        DebAsset("demo", "1", POOL_PATH, "abc", {"a": "0" * 64}, "x")
