"""Tests for the safety-capability trajectory: the PNG (``training/plot.py``) and the trajectory
file that ``safework-train eval`` appends to (``training/eval_report.py``).

Run: ``pytest tests/test_trajectory_plot.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.training import plot
from safework.training.eval_report import load_trajectory, update_trajectory
from safework.training.plot import plot_trajectory

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every matplotlib figure saved during the test, in order (still written to disk)."""
    from matplotlib.figure import Figure

    figures: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args, **kw) -> None:
        figures.append(self)
        original(self, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def point(label: str, capability: float | None, safety: float | None) -> dict:
    return {"label": label, "capability": capability, "safety": safety}


def test_plot_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    points = [point("base", 0.1, 0.3), point("sft", 0.2, 0.6), point("rl", 0.4, 0.8)]
    out = plot_trajectory(points, tmp_path / "deep" / "t.png")
    assert out == tmp_path / "deep" / "t.png"
    width, height = png_size(out)  # 9.6 x 6.6 inches at 150 dpi, trimmed to what is drawn
    assert 1200 < width <= 1500
    assert 850 < height <= 1050


def test_plot_draws_points_labels_arrows_and_the_diagonal(tmp_path: Path, saved: list) -> None:
    points = [point("base", 0.1, 0.3), point("no-number", None, 0.5), point("sft", 0.2, 0.6)]
    plot_trajectory(points, tmp_path / "t.png")
    ax, key, closeup = saved[0].axes
    assert ax.get_xlim() == (0.0, 1.0)
    assert ax.get_ylim() == (0.0, 1.0)
    assert "capability" in ax.get_xlabel()
    assert "safety" in ax.get_ylabel()
    diagonal = [line for line in ax.lines if list(line.get_xdata()) == [0, 1]]
    assert diagonal
    assert list(diagonal[0].get_ydata()) == [0, 1]
    numbers = [t.get_text() for t in ax.texts if t.get_text().isdigit()]
    assert numbers == ["1", "2"]  # a point without both numbers is left out
    arrows = [t for t in ax.texts if t.get_text() == "" and t.arrow_patch is not None]
    assert len(arrows) == 1  # base -> sft
    scatter = ax.collections[-1]
    assert scatter.get_offsets().tolist() == [[0.1, 0.3], [0.2, 0.6]]
    (table,) = key.texts
    rows = table.get_text().splitlines()
    assert rows[1].split() == ["1", "base", "0.10", "0.30"]
    assert rows[2].split() == ["2", "sft", "0.20", "0.60"]
    assert "no-number" not in table.get_text()
    assert "search" not in table.get_text()  # no point measured search
    # the close-up fits the points: 0.1..0.2 wide and 0.3..0.6 tall, with a margin
    x0, x1 = closeup.get_xlim()
    y0, y1 = closeup.get_ylim()
    assert 0.05 < x0 < 0.1 < 0.2 < x1 < 0.25
    assert 0.2 < y0 < 0.3 < 0.6 < y1 < 0.7
    assert [t.get_text() for t in closeup.texts if t.get_text().isdigit()] == ["1", "2"]


def test_the_key_lists_search_metrics_of_the_points_that_measured_them(
    tmp_path: Path, saved: list
) -> None:
    searched = {"search_protocol": 0.5, "search_accuracy": 0.375, "confidently_wrong": 0.0}
    points = [point("base", 0.1, 0.3), {**point("sft", 0.2, 0.6), **searched}]
    plot_trajectory(points, tmp_path / "t.png")
    rows = saved[0].axes[1].texts[0].get_text().splitlines()
    at = rows.index("search, held-out questions")
    assert rows[at + 1].split() == ["#", "protocol", "accuracy", "ECE", "cal.", "conf.wrong"]
    assert rows[at + 2].split() == ["2", "0.50", "0.38", "-", "0.00"]  # base measured none
    assert len(rows) == at + 3


def test_the_key_lists_mi_peaks_at_the_deepest_layer(tmp_path: Path, saved: list) -> None:

    def peaks(k: int, n: int, share: int) -> dict:
        part = {"peak_rate": {"k": k, "n": n}, "safety_share": {"k": share, "n": k}}
        return {"all": part}

    analysed = {"mi_peaks": {"layers": {"9": peaks(9, 900, 0), "30": peaks(12, 1000, 3)}}}
    points = [point("base", 0.1, 0.3), {**point("sft", 0.2, 0.6), **analysed}]
    plot_trajectory(points, tmp_path / "t.png")
    rows = saved[0].axes[1].texts[0].get_text().splitlines()
    at = rows.index("MI peaks (analyze mi)")
    assert rows[at + 1].split() == ["#", "layer", "peaks/tokens", "safety"]
    assert rows[at + 2].split() == ["2", "30", "12/1000", "3/12"]  # 30 > 9 as numbers
    assert len(rows) == at + 3


def test_one_point_has_no_closeup(tmp_path: Path, saved: list) -> None:
    plot_trajectory([point("base", 0.1, 0.3)], tmp_path / "t.png")
    assert len(saved[0].axes) == 2


def test_the_key_shortens_long_labels_and_lists_the_latest(tmp_path: Path, saved: list) -> None:
    points = [point(f"checkpoint-with-a-very-long-name-{i}", 0.01 * i, 0.02 * i) for i in range(30)]
    plot_trajectory(points, tmp_path / "t.png")
    rows = saved[0].axes[1].texts[0].get_text().splitlines()
    assert rows[1] == "    (6 earlier not listed)"
    assert rows[2].split()[:2] == ["7", "checkpoint-with-a-ver…"]
    assert len(rows) == 2 + 24


def test_plot_with_no_points_still_draws(tmp_path: Path) -> None:
    assert png_size(plot_trajectory([], tmp_path / "empty.png"))[0] > 0


def test_trajectory_accumulates_and_replaces_a_label_in_place(tmp_path: Path) -> None:
    update_trajectory(tmp_path, point("step-0", 0.1, 0.2))
    update_trajectory(tmp_path, point("step-1", 0.2, 0.4))
    path, png = update_trajectory(tmp_path, point("step-0", 0.15, 0.25))
    assert [p["label"] for p in load_trajectory(path)] == ["step-0", "step-1"]
    assert load_trajectory(path)[0]["capability"] == 0.15
    assert json.loads(path.read_text())["version"] == 1
    assert png == tmp_path / "trajectory.png"
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_a_broken_trajectory_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "trajectory.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a trajectory file"):
        update_trajectory(tmp_path, point("x", 0.1, 0.1))
    assert load_trajectory(tmp_path / "missing.json") == []


def test_redraw_from_the_command_line(tmp_path: Path, capsys) -> None:
    path, _ = update_trajectory(tmp_path, point("a", 0.3, 0.3))
    (tmp_path / "trajectory.png").unlink()
    assert plot.main([str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "trajectory.png")
    assert (tmp_path / "trajectory.png").is_file()
