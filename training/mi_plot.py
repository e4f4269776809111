"""The plots of ``safework-train analyze mi``, in the report's Figure 3 layout, from ``mi.json``.

``mi_along.png``: the estimate along one answer at the last analysed layer (the answer with the
most peaks, harmful prompts first), peaks marked and labelled with their words.
``peak_words.png``: the words at peaks over all answers at that layer, most frequent first,
safety-lexicon words coloured. Drawn with matplotlib's Agg backend. Redraw by hand::

    python -m safework.training.mi_plot runs/mi/mi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .mi_tokens import visible

__all__ = ["plot_mi"]

SAFETY, OTHER = "#c0392b", "#7f8c8d"


def _chosen(result: dict[str, Any], layer: str) -> dict[str, Any] | None:
    records = result["records"]
    if not records:
        return None

    def rank(r: dict[str, Any]) -> tuple[bool, int]:
        return (r["kind"] == "harmful", len(r["layers"][layer]["peaks"]))

    return max(records, key=rank)


def plot_mi(result: dict[str, Any], output: Path) -> list[Path]:
    """Write both PNGs into ``output``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = str(result["layers"][-1])
    lexicon = set(result["lexicon"])
    written = []
    record = _chosen(result, layer)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    if record is not None:
        values = record["layers"][layer]["mi"]
        ax.plot(range(len(values)), values, color="#2c3e50", linewidth=1)
        for t in record["layers"][layer]["peaks"]:
            word = record["words"][t]
            colour = SAFETY if word.lower() in lexicon else OTHER
            ax.plot(t, values[t], "o", color=colour)
            ax.annotate(
                _shown(word),
                (t, values[t]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
                color=colour,
            )
        ax.set_title(f"MI along answer {record['id']} ({record['kind']}), layer {layer}")
    ax.set_xlabel("answer token")
    ax.set_ylabel(f"MI estimate ({result['estimator']})")
    fig.tight_layout()
    path = output / "mi_along.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    words = result["summary"][layer]["all"]["words"][:20]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(words), 4) + 1.2))
    labels = [w for w, _ in words][::-1]
    counts = [c for _, c in words][::-1]
    colours = [SAFETY if w in lexicon else OTHER for w in labels]
    ax.barh([_shown(w) for w in labels], counts, color=colours)
    share = result["summary"][layer]["all"]["safety_share"]
    ax.set_title(
        f"words at MI peaks, layer {layer}: {share['k']}/{share['n']} on the safety lexicon"
    )
    ax.set_xlabel("peaks")
    fig.tight_layout()
    path = output / "peak_words.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written


def _shown(word: str) -> str:
    """A word as a plot label: whitespace shown (``visible``), ``$`` kept literal (matplotlib
    would start maths there)."""
    return visible(word).replace("$", r"\$")


if __name__ == "__main__":
    source = Path(sys.argv[1])
    for written in plot_mi(json.loads(source.read_text(encoding="utf-8")), source.parent):
        print(written)
