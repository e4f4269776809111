"""Tests for ``safework memory export|import|stats`` (``safework.memory.cli``), run through the
top-level ``safework`` parser. The MiniLM embedder the import would load is replaced by the
tests' ``HashEncoder`` (a fake at the edge).

Run: ``pytest tests/test_memory_cli.py``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from safework.cli import main
from safework.memory import MemoryStore
from safework.memory import cli as memory_cli

from .test_memory_store import HashEncoder, add


@pytest.fixture(autouse=True)
def fake_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_cli, "LazyEmbedder", HashEncoder)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    with MemoryStore(folder, HashEncoder(), hnsw_threshold=3, background=False) as s:
        for i in range(4):
            add(s, "acme", f"acme question q{i}")
        add(s, "globex", "globex question")
    return folder


def test_export_to_file_and_stdout(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.jsonl"
    assert main(["memory", "export", "--memory-dir", str(source), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tenant"] for r in rows] == ["acme"] * 4 + ["globex"]
    assert all(r["embedding_model"] == "hashed-bag-of-words" for r in rows)
    assert "exported 5 records" in capsys.readouterr().err
    assert main(["memory", "export", "--memory-dir", str(source), "--tenant", "globex"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["question"] for line in printed] == ["globex question"]


def test_import_round_trip_and_tenant_override(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "all.jsonl"
    main(["memory", "export", "--memory-dir", str(source), "-o", str(dump)])
    target = tmp_path / "target"
    assert main(["memory", "import", str(dump), "--memory-dir", str(target)]) == 0
    assert "imported 5 records" in capsys.readouterr().out
    main(["memory", "import", str(dump), "--memory-dir", str(target)])
    assert "imported 0 records" in capsys.readouterr().out  # already there
    main(["memory", "import", str(dump), "--memory-dir", str(target), "--tenant", "initech"])
    assert "(5 -> 10 records)" in capsys.readouterr().out
    with MemoryStore(source, HashEncoder()) as s:
        original = list(s.export())
    with MemoryStore(target, HashEncoder(), hnsw_threshold=3) as t:
        assert t.counts() == {"acme": 4, "globex": 1, "initech": 5}
        for row in original:
            record = t.get(row["tenant"], row["id"])
            assert record is not None
            assert record.to_json() == {k: row[k] for k in record.to_json()}
        assert t.search("initech", "acme question q2", k=1)[0].record.question == (
            "acme question q2"
        )


def test_import_from_stdin_and_bad_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = '{"question": "q", "corrected_reasoning": "c", "tenant": "acme"}\n\nnot json\n'
    monkeypatch.setattr("sys.stdin", io.StringIO(rows))
    with pytest.raises(SystemExit, match="stdin line 3 is not JSON"):
        main(["memory", "import", "-", "--memory-dir", str(tmp_path)])
    monkeypatch.setattr("sys.stdin", io.StringIO(rows.split("\n")[0]))
    assert main(["memory", "import", "-", "--memory-dir", str(tmp_path)]) == 0
    assert "imported 1 records" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO('{"question": "q", "tenant": "t"}'))
    with pytest.raises(SystemExit, match="row 1: corrected_reasoning"):
        main(["memory", "import", "-", "--memory-dir", str(tmp_path)])


def test_stats_table_and_json(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "stats", "--memory-dir", str(source)]) == 0
    table = capsys.readouterr().out
    assert "acme" in table
    assert "hnsw" in table
    assert "2 tenants, 5 records" in table
    assert main(["memory", "stats", "--memory-dir", str(source), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["tenants"]
    assert report["acme"]["records"] == 4
    assert report["acme"]["index"]["kind"] == "hnsw"
    assert report["globex"]["index"] == {
        "kind": "flat",
        "vectors": 1,
        "tombstones": 0,
        "state": "saved",
    }


def test_missing_store_is_an_error(tmp_path: Path) -> None:
    for command in ("stats", "export"):
        with pytest.raises(SystemExit, match="no memory store"):
            main(["memory", command, "--memory-dir", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()


def test_tenants_move_between_sqlite_and_postgresql(
    source: Path, tmp_path: Path, postgres: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.new_database()
    dump, back = tmp_path / "from-sqlite.jsonl", tmp_path / "from-postgresql.jsonl"
    main(["memory", "export", "--memory-dir", str(source), "-o", str(dump)])
    assert main(["memory", "import", str(dump), "--memory-store", url]) == 0
    assert "imported 5 records" in capsys.readouterr().out
    assert main(["memory", "stats", "--memory-store", url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {t: v["records"] for t, v in stats["tenants"].items()} == {"acme": 4, "globex": 1}
    assert stats["store"] == url  # no password in it to hide
    assert main(["memory", "export", "--memory-store", url, "-o", str(back)]) == 0
    assert dump.read_text() == back.read_text()  # the same rows, vectors included
    with MemoryStore(tmp_path / "replica", HashEncoder(), database=url) as replica:
        assert replica.search("acme", "acme question q2", k=1)[0].record.question.endswith("q2")
