"""``safework-train analyze mi`` (``training/analyze.py``) on tiny random Llamas: bad input is
refused before any compute, the outputs are written, and a planted signal (the reference's word
inside an answer of unrelated words) is where the MI peaks, and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safework.training.analyze import MIConfig, run_mi
from safework.training.cli import main
from safework.training.config import load_config

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer) -> Path:
    """The tiny random Llama at width 128: 128 coordinates per state to estimate from."""
    from .conftest import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("wide-llama"), smollm_tokenizer, 0.02, hidden=128)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["n=0"], "n must be at least 1"),
        (["estimator=knn"], "estimator 'knn'"),
        (["prompts=nowhere.jsonl"], "give 'cot-sft' or a .jsonl file"),
        (["z=0"], "z must be positive"),
        (["lexicon=/no/such/file"], "is not a file"),
    ],
)
def test_bad_settings_are_refused_before_any_compute(
    overrides: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "mi", *overrides]) == 1
    assert message in capsys.readouterr().err


def test_bad_layers_and_rows_are_named(tiny_model: Path, tmp_path: Path) -> None:
    from safework.errors import ConfigError

    out = tmp_path / "o"
    good = write(tmp_path / "p.jsonl", [{"prompt": "Hi", "reference": "Hello"}])
    values = {"model": str(tiny_model), "prompts": str(good), "layers": [5], "output": str(out)}
    with pytest.raises(ConfigError, match=r"layers: layer 5 is outside 0\.\.2"):
        run_mi(load_config(MIConfig, None, values))
    bad = write(tmp_path / "bad.jsonl", [{"prompt": "Hi"}])
    values = {"model": str(tiny_model), "prompts": str(bad), "output": str(out)}
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: 'reference' must be a non-empty"):
        run_mi(load_config(MIConfig, None, values))
    assert not out.exists()


def test_a_planted_word_is_where_the_mi_peaks(wide_model: Path, tmp_path: Path) -> None:
    filler = "the cat sat on a mat and then went home to eat some bread with old friends today"
    words = filler.split()
    rows = []
    for i, at in enumerate((3, 9, 14)):
        answer = " ".join([*words[:at], "zebra", *words[at:]])
        rows.append(
            {
                "id": f"p{i}",
                "kind": "planted",
                "prompt": f"Tell me something, number {i}.",
                "answer": answer,
                "reference": "zebra zebra zebra zebra",
            }
        )
    rows.append({"id": "g", "kind": "generated", "prompt": "Say hi.", "reference": "Hi."})
    out = tmp_path / "mi"
    values = {
        "model": str(wide_model),
        "prompts": str(write(tmp_path / "p.jsonl", rows)),
        "layers": [1],
        "max_tokens": 6,
        "output": str(out),
    }
    summary = run_mi(load_config(MIConfig, None, values))
    result = json.loads((out / "mi.json").read_text())
    assert (out / "mi_along.png").stat().st_size > 0
    assert (out / "peak_words.png").stat().st_size > 0
    for record in result["records"][:3]:
        layer = record["layers"]["1"]
        assert len(layer["mi"]) == len(record["words"])
        assert layer["peak_words"], record["answer"]
        assert set(layer["peak_words"]) == {"zebra"}, (layer["peak_words"], record["answer"])
    generated = result["records"][3]
    assert 0 < len(generated["words"]) <= 6  # answered by the model itself
    planted = summary["summary"]["1"]["planted"]
    assert planted["peak_rate"]["k"] == 3
    assert summary["seconds"]["total"] > 0


def test_an_evals_answers_are_analysed_without_generating(
    wide_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safework.training import analyze

    monkeypatch.setattr(analyze, "_generate", lambda *a: pytest.fail("nothing is generated"))
    data = tmp_path / "data"
    data.mkdir()
    rows, samples = [], []
    for i in range(3):
        for task, group, reply in (
            ("safety", "harmful", "<think>\nIt is harmful.\n</think>\n\nI can't help with that."),
            ("math", "math", "<think>\n2 + 2 = 4\n</think>\n\n4"),
        ):
            meta = {"dataset": "x", "answer": "4", "entry": {}} if task == "math" else {}
            rid = f"{task}-{i}"
            rows.append(
                {
                    "id": rid,
                    "task": task,
                    "source": "test",
                    "meta": meta,
                    "messages": [
                        {"role": "user", "content": f"Question {rid}?"},
                        {"role": "assistant", "content": reply},
                    ],
                }
            )
            if i < 2:  # the eval answered two of each
                samples.append({"id": rid, "group": group, "response": f"Answer to {rid}."})
    write(data / "dev.jsonl", rows)
    answers = write(tmp_path / "samples.jsonl", samples)
    values = {
        "model": str(wide_model),
        "data": str(data),
        "answers": str(answers),
        "n": 10,
        "layers": [1],
        "output": str(tmp_path / "mi"),
    }
    run_mi(load_config(MIConfig, None, values))
    result = json.loads((tmp_path / "mi" / "mi.json").read_text())
    got = {(r["kind"], r["id"]): r["answer"] for r in result["records"]}
    assert got == {
        ("harmful", "safety-0"): "Answer to safety-0.",
        ("harmful", "safety-1"): "Answer to safety-1.",
        ("capability", "math-0"): "Answer to math-0.",
        ("capability", "math-1"): "Answer to math-1.",
    }
