"""The safety-capability trajectory plot (the "AI-45 degree" plot of the SafeWork-R1 report).

Each evaluated checkpoint is a point: x = capability, y = safety, both in [0, 1], as
``eval_report.summary`` defines them (the axis labels say how). Points are numbered and joined by
arrows in evaluation order, so the training trajectory reads from the first checkpoint to the
last (the latest is drawn darker); a key beside the plot lists each number's label and values,
so labels never sit on top of each other, and the search metrics of each checkpoint when its
evaluation measured them. Under the key a close-up draws the same path on axes fitted to the
points, where steps of a few hundredths (too small to see on the unit square) can be read. The
dashed line y = x is the 45-degree line along
which safety keeps pace with capability (above it safety leads, below it capability does).

Drawn with matplotlib's Agg backend (no display needed), into a PNG::

    plot_trajectory([{"label": "sft", "capability": 0.3, "safety": 0.6}, ...], "t.png")

or from a trajectory file: ``python -m safework.training.plot runs/eval/trajectory.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CAPABILITY_LABEL", "SAFETY_LABEL", "main", "plot_trajectory"]

CAPABILITY_LABEL = "capability = mean(reasoning-gym level accuracy, IFEval strict pass rate)"
SAFETY_LABEL = "safety = 1 − unsafe rate (harmful prompts, plain + jailbreak)"

_SAFE_SIDE = "#e8f4ea"  # y > x: safety ahead of capability
_RISK_SIDE = "#fbeaea"  # y < x: capability ahead of safety
_LINE = "#2f5d8a"
_EARLIER = "#8fb0d3"
_KEY_WIDTH = 22
"""Characters of a label shown in the key."""
_MAX_KEY_ROWS = 24
"""The key lists the latest checkpoints only beyond this many (the markers keep their numbers)."""


def _with_numbers(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The points that have both a capability and a safety number."""
    return [
        p
        for p in points
        if isinstance(p.get("capability"), int | float) and isinstance(p.get("safety"), int | float)
    ]


def _usable(points: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, float]]:
    """``(label, capability, safety)`` of the points that have both numbers."""
    return [
        (str(p.get("label", "")), float(p["capability"]), float(p["safety"]))
        for p in _with_numbers(points)
    ]


def _draw_regions(ax: Any) -> None:
    """The two half-planes, the 45-degree line and the axes."""
    ax.fill_between([0, 1], [0, 1], [1, 1], color=_SAFE_SIDE, zorder=0, linewidth=0)
    ax.fill_between([0, 1], [0, 0], [0, 1], color=_RISK_SIDE, zorder=0, linewidth=0)
    ax.plot([0, 1], [0, 1], "--", color="#777777", linewidth=1.2, zorder=1, label="y = x (45°)")
    ax.text(0.03, 0.97, "safety ahead", color="#3c7a4a", fontsize=9, va="top", zorder=1)
    ax.text(0.97, 0.03, "capability ahead", color="#a14a4a", fontsize=9, ha="right", zorder=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.grid(True, color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.07), fontsize=8.5, frameon=False)


def _draw_path(ax: Any, usable: list[tuple[str, float, float]]) -> None:
    """Arrows from each checkpoint to the next, then numbered markers (the latest darker)."""
    for (_, x0, y0), (_, x1, y1) in itertools.pairwise(usable):
        arrow = {"arrowstyle": "-|>", "color": _LINE, "lw": 1.5, "shrinkA": 8, "shrinkB": 8}
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=arrow, zorder=2)
    xs, ys = [u[1] for u in usable], [u[2] for u in usable]
    colors = [_EARLIER] * (len(usable) - 1) + [_LINE]
    ax.scatter(xs, ys, s=210, c=colors, edgecolors="white", linewidths=1.2, zorder=3)
    for number, (x, y) in enumerate(zip(xs, ys, strict=True), 1):
        ax.text(
            x,
            y,
            str(number),
            ha="center",
            va="center",
            color="white",
            fontsize=7.5,
            fontweight="bold",
            zorder=4,
        )


_SEARCH_COLUMNS = (
    ("search_protocol", "protocol"),
    ("search_accuracy", "accuracy"),
    ("ece_calibrated", "ECE cal."),
    ("confidently_wrong", "conf.wrong"),
)
"""Search metrics of a trajectory point (eval with a search backend) and their key headings."""


def _search_rows(points: Sequence[Mapping[str, Any]], numbers: list[int]) -> list[str]:
    """The key's search table: one row per numbered point that measured search."""
    rows = []
    for number, p in zip(numbers, points, strict=True):
        values = [p.get(k) for k, _ in _SEARCH_COLUMNS]
        if all(v is None for v in values):
            continue
        cells = "".join(
            f"{v:>11.2f}" if isinstance(v, int | float) else f"{'-':>11}" for v in values
        )
        rows.append(f"{number:>2}{cells}")
    if not rows:
        return []
    heads = "".join(f"{h:>11}" for _, h in _SEARCH_COLUMNS)
    return ["", "search, held-out questions", f" #{heads}", *rows]


def _mi_rows(points: Sequence[Mapping[str, Any]], numbers: list[int]) -> list[str]:
    """The key's MI-peak table (``analyze mi`` in a pipeline): per numbered point, at its
    deepest analysed layer, the peaks per answer token and the safety share of peaks, k/n."""
    rows = []
    for number, p in zip(numbers, points, strict=True):
        layers = (p.get("mi_peaks") or {}).get("layers") or {}
        if not layers:
            continue
        layer = max(layers, key=int)
        part = layers[layer].get("all", {})
        rate, share = part.get("peak_rate", {}), part.get("safety_share", {})
        peaks = f"{rate.get('k', '-')}/{rate.get('n', '-')}"
        safety = f"{share.get('k', '-')}/{share.get('n', '-')}"
        rows.append(f"{number:>2}{layer:>7}{peaks:>14}{safety:>11}")
    if not rows:
        return []
    return ["", "MI peaks (analyze mi)", f" #{'layer':>7}{'peaks/tokens':>14}{'safety':>11}", *rows]


def _draw_closeup(ax: Any, usable: list[tuple[str, float, float]]) -> None:
    """The path again on axes fitted to its points (at least 0.04 wide and tall)."""
    xs, ys = [u[1] for u in usable], [u[2] for u in usable]
    limits = []
    for values in (xs, ys):
        middle, span = (max(values) + min(values)) / 2, max(max(values) - min(values), 0.04)
        limits.append((middle - 0.65 * span, middle + 0.65 * span))
    (x0, x1), (y0, y1) = limits
    low, high = min(x0, y0), max(x1, y1)
    ax.plot([low, high], [low, high], "--", color="#777777", linewidth=1.0, zorder=1)
    _draw_path(ax, usable)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.grid(True, color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=7.5)
    ax.set_title("close-up (same axes, fitted to the points)", fontsize=8.5)


def _draw_key(
    ax: Any, usable: list[tuple[str, float, float]], points: Sequence[Mapping[str, Any]] = ()
) -> None:
    """The checkpoints by number, as a small table: label, capability, safety; then the
    search metrics and MI peaks of the points that have them (``points``: the usable points'
    records)."""
    ax.axis("off")
    if not usable:
        ax.text(0.0, 1.0, "no evaluated checkpoints yet", va="top", color="#777777", fontsize=9)
        return
    first = max(0, len(usable) - _MAX_KEY_ROWS)
    rows = [f" #  {'checkpoint':<{_KEY_WIDTH}}  capab.  safety"]
    if first:
        rows.append(f"    ({first} earlier not listed)")
    for number, (label, x, y) in enumerate(usable[first:], first + 1):
        rows.append(f"{number:>2}  {_short(label):<{_KEY_WIDTH}}  {x:6.2f}  {y:6.2f}")
    if points:
        numbers = list(range(first + 1, len(usable) + 1))
        rows += _search_rows(points[first:], numbers) + _mi_rows(points[first:], numbers)
    ax.text(0.0, 1.0, "\n".join(rows), va="top", fontsize=8, family="monospace", linespacing=1.6)


def _short(label: str) -> str:
    return label if len(label) <= _KEY_WIDTH else label[: _KEY_WIDTH - 1] + "…"


def plot_trajectory(
    points: Sequence[Mapping[str, Any]],
    path: Path | str,
    *,
    title: str = "Safety–capability trajectory",
    xlabel: str = CAPABILITY_LABEL,
    ylabel: str = SAFETY_LABEL,
) -> Path:
    """Draw ``points`` (mappings with ``label``, ``capability``, ``safety``) to a PNG at ``path``.

    Each checkpoint is a numbered marker; the key beside the plot gives its label and numbers.
    Points missing a number are left out. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.6, 6.6), dpi=150, layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(1.0, 0.42), height_ratios=(1.0, 1.0))
    ax, key = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[0, 1])
    _draw_regions(ax)
    usable = _usable(points)
    if usable:
        _draw_path(ax, usable)
    _draw_key(key, usable, _with_numbers(points))
    if len(usable) >= 2:
        _draw_closeup(fig.add_subplot(grid[1, 1]), usable)
    ax.set_xlabel(xlabel, fontsize=9.5)
    ax.set_ylabel(ylabel, fontsize=9.5)
    ax.set_title(title, fontsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redraw a trajectory PNG from its JSON file.")
    parser.add_argument("trajectory", type=Path, help="trajectory.json written by eval")
    parser.add_argument("--output", type=Path, default=None, help="PNG (default: beside it)")
    args = parser.parse_args(argv)
    data = json.loads(args.trajectory.read_text(encoding="utf-8"))
    out = plot_trajectory(data["points"], args.output or args.trajectory.with_suffix(".png"))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
