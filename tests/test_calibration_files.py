"""Tests for ``safework.search.calibration``'s storage: ``Calibration`` files, where they live
(``calibration_path``, ``load_calibration``) and the reloading ``CalibrationFile``.

Files go to ``tmp_path``; the cache root is pointed there through ``SAFEWORK_CACHE``.

Run: ``pytest tests/test_calibration_files.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.search.calibration import (
    Calibration,
    CalibrationFile,
    CalibrationMap,
    calibration_path,
    load_calibration,
)

from .test_calibration import logistic_data

# ------------------------------------------------------------------ Calibration and files


def _calibration(model: str = "org/Model:v1") -> Calibration:
    conf, hit = logistic_data(0.5, -0.3, 300, seed=8)
    return Calibration(
        model,
        {
            "stated": CalibrationMap.fit(conf, hit, "platt"),
            "logprob": CalibrationMap.fit(conf, hit, "isotonic"),
        },
        {"dataset": "dev", "size": 300},
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    original = _calibration()
    path = original.save(tmp_path / "sub" / "cal.json")
    assert path == tmp_path / "sub" / "cal.json"
    assert sorted(path.parent.iterdir()) == [path]  # no temporary file left
    data = json.loads(path.read_text())
    assert data["model"] == "org/Model:v1"
    assert set(data["maps"]) == {"stated", "logprob"}
    assert data["maps"]["stated"]["method"] == "platt"

    loaded = Calibration.load(path)
    assert loaded.model == original.model
    assert loaded.info["dataset"] == "dev"
    assert loaded.info["size"] == 300
    assert "saved_at" in loaded.info
    for source, fitted in original.maps.items():
        again = loaded.maps[source]
        assert again.method == fitted.method
        assert again.n == fitted.n
        assert again.ece_before == pytest.approx(fitted.ece_before)
        assert again.ece_after == pytest.approx(fitted.ece_after)
        for value in (0.0, 0.05, 0.3, 0.5, 0.71, 1.0):
            assert again.apply(value) == pytest.approx(fitted.apply(value))
        assert loaded.calibrate(source, 0.6) == original.calibrate(source, 0.6)


def test_save_keeps_an_existing_saved_at(tmp_path: Path) -> None:
    cal = Calibration("m", info={"saved_at": "then"})
    cal.save(tmp_path / "m.json")
    assert Calibration.load(tmp_path / "m.json").info["saved_at"] == "then"


def test_save_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    Calibration("m", info={"run": 1}).save(path)
    Calibration("m", info={"run": 2}).save(path)
    assert Calibration.load(path).info["run"] == 2


def test_save_defaults_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEWORK_CACHE", str(tmp_path))
    path = _calibration().save()
    assert path == tmp_path / "calibration" / "org_Model_v1.json"
    assert path.exists()
    loaded = load_calibration("org/Model:v1")
    assert loaded is not None
    assert set(loaded.maps) == {"stated", "logprob"}


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("org/Model:v1", "org_Model_v1.json"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen_Qwen2.5-0.5B-Instruct.json"),
        ("plain", "plain.json"),
        ("../../etc/passwd", "etc_passwd.json"),
        ("..", "model.json"),
        ("", "model.json"),
        ("a b\\c", "a_b_c.json"),
    ],
)
def test_calibration_path_sanitises_model_ids(tmp_path: Path, model: str, name: str) -> None:
    path = calibration_path(model, tmp_path)
    assert path == tmp_path / "calibration" / name
    assert path.resolve().parent == (tmp_path / "calibration").resolve()


def test_calibration_path_default_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEWORK_CACHE", str(tmp_path / "cache"))
    assert calibration_path("org/M") == tmp_path / "cache" / "calibration" / "org_M.json"


def test_load_calibration_missing_is_none(tmp_path: Path) -> None:
    assert load_calibration("never/fitted", cache=tmp_path) is None


def test_load_calibration_from_the_cache(tmp_path: Path) -> None:
    _calibration().save(calibration_path("org/Model:v1", tmp_path))
    loaded = load_calibration("org/Model:v1", cache=tmp_path)
    assert loaded is not None
    assert loaded.model == "org/Model:v1"


def test_load_calibration_explicit_path(tmp_path: Path) -> None:
    path = _calibration("other").save(tmp_path / "x.json")
    loaded = load_calibration("ignored", path=path)
    assert loaded is not None
    assert loaded.model == "other"


def test_load_calibration_explicit_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the calibration file"):
        load_calibration("m", path=tmp_path / "absent.json")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        '{"maps": {}}',
        '{"model": "m", "maps": {"stated": {"method": "platt"}}}',
        '{"model": "m", "maps": {"stated": {"method": "platt", "params": {}, "bogus": 1}}}',
        '{"model": "m", "maps": []}',
        # a preferred source must have a map
        '{"model": "m", "maps": {}, "preferred": "logprob"}',
    ],
)
def test_load_calibration_corrupt_file_raises(tmp_path: Path, content: str) -> None:
    path = calibration_path("m", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError, match="cannot read the calibration file"):
        load_calibration("m", cache=tmp_path)


def test_calibrate() -> None:
    cal = Calibration("m", {"stated": CalibrationMap("platt", {"a": 1.0, "b": 0.0})})
    assert cal.calibrate("stated", 0.3) == pytest.approx(0.3)
    assert cal.calibrate("logprob", 0.3) is None
    assert cal.calibrate("agreement", 0.9) is None


def test_calibrate_rounds_to_four_places() -> None:
    cal = Calibration("m", {"stated": CalibrationMap("platt", {"a": 0.5, "b": 0.1})})
    value = cal.calibrate("stated", 0.7)
    assert value is not None
    assert value == round(value, 4)


def test_the_preferred_source_is_saved_and_loaded(tmp_path: Path) -> None:
    maps = {
        "stated": CalibrationMap("platt", {"a": 1.0, "b": 0.0}),
        "logprob": CalibrationMap("platt", {"a": 2.0, "b": -1.0}),
    }
    Calibration("m", maps, preferred="logprob").save(calibration_path("m", tmp_path))
    loaded = load_calibration("m", cache=tmp_path)
    assert loaded is not None
    assert loaded.preferred == "logprob"
    # a file written before the field existed has no preference
    path = calibration_path("old", tmp_path)
    path.write_text('{"model": "old", "maps": {}}')
    old = load_calibration("old", cache=tmp_path)
    assert old is not None
    assert old.preferred is None


def test_unfitted_calibration_returns_none() -> None:
    assert Calibration("m").calibrate("stated", 0.5) is None


# ------------------------------------------------------------------ CalibrationFile


def test_calibration_file_missing_is_none(tmp_path: Path) -> None:
    assert CalibrationFile(tmp_path / "absent.json").current() is None


def test_calibration_file_loads_and_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    watched = CalibrationFile(path)
    Calibration("m", info={"run": 1}).save(path)
    first = watched.current()
    assert first is not None
    assert first.info["run"] == 1
    assert watched.current() is first  # unchanged file: not read again
    Calibration("m", info={"run": 22}).save(path)  # a different size, so a new stamp
    second = watched.current()
    assert second is not None
    assert second.info["run"] == 22


def test_calibration_file_keeps_the_previous_on_a_corrupt_rewrite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.json"
    watched = CalibrationFile(path)
    Calibration("m", info={"run": 1}).save(path)
    first = watched.current()
    path.write_text("{half a fi")
    assert watched.current() is first
    assert "keeping the previous calibration" in caplog.text


@pytest.mark.parametrize("content", ["[]", '{"model": "m", "maps": []}'])
def test_calibration_file_wrong_shape_is_not_fatal(tmp_path: Path, content: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    assert CalibrationFile(path).current() is None


def test_calibration_file_deleted_is_none(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    watched = CalibrationFile(path)
    Calibration("m").save(path)
    assert watched.current() is not None
    path.unlink()
    assert watched.current() is None
