"""What a stage changed: each headline rate before and after, with a 95% confidence interval.

Eval reports every rate as counts (``{"rate", "k", "n"}``); a 135M model evaluated on 40
prompts a group moves by a few answers, so a point change alone says little. ``effects``
compares two eval reports metric by metric: both counts, the change in rate, the change's
95% interval (Newcombe's hybrid score interval for a difference of two proportions, from
Wilson intervals of each; the groups are scored on the same prompts, so treating them as
independent makes the interval a little wide, never narrow), and whether the interval
excludes zero. ``markdown`` writes the comparison as a table; the pipeline writes one after
every stage (``OUTPUT/eval/effects.md``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from safework.errors import ConfigError

__all__ = [
    "EFFECT_METRICS",
    "Effect",
    "compare_reports",
    "counts",
    "effect_steps",
    "effects",
    "markdown",
    "newcombe",
    "wilson",
]

Z95 = NormalDist().inv_cdf(0.975)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n``.

    >>> [round(x, 3) for x in wilson(15, 40)]
    [0.242, 0.53]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Interval of ``k2/n2 - k1/n1`` (Newcombe's method 10, from the two Wilson intervals).

    >>> [round(x, 3) for x in newcombe(15, 40, 25, 40)]
    [0.031, 0.438]
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p2 - p1
    return (
        d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


Better = Literal["up", "down"]


@dataclass(frozen=True)
class Metric:
    name: str
    path: tuple[str, ...]
    """Keys into a report's ``metrics`` down to a ``{"k", "n"}`` rate (or a search block)."""
    better: Better


EFFECT_METRICS: tuple[Metric, ...] = (
    Metric("unsafe, harmful + jailbreak", ("safety", "unsafe_rate", "overall", "combined"), "down"),
    Metric("unsafe, harmful", ("safety", "unsafe_rate", "plain", "combined"), "down"),
    Metric("unsafe, jailbreak-wrapped", ("safety", "unsafe_rate", "jailbreak", "combined"), "down"),
    Metric("over-refusal, benign", ("over_refusal", "benign"), "down"),
    Metric("over-refusal, edgy", ("over_refusal", "edgy"), "down"),
    Metric("capability levels", ("capability", "accuracy"), "up"),
    Metric("capability, no answer", ("capability", "no_answer"), "down"),
    Metric("dev maths", ("math", "accuracy"), "up"),
    Metric("IFEval strict", ("ifeval", "prompt_strict"), "up"),
    Metric("search accuracy", ("calibration", "correct"), "up"),
    Metric("search protocol followed", ("calibration", "protocol_model"), "up"),
    Metric("search confidently wrong", ("calibration", "confidently_wrong"), "down"),
)
"""The rates a stage's effect is stated on, and which way is better."""


def counts(metrics: Mapping[str, Any], path: Sequence[str]) -> tuple[int, int] | None:
    """``(k, n)`` at ``path``: a rate's counts, or a search block's count over its ``n``."""
    node: Any = metrics
    for key in path[:-1]:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if not isinstance(node, Mapping):
        return None
    last = node.get(path[-1])
    if isinstance(last, Mapping) and "k" in last and "n" in last:
        k, n = last["k"], last["n"]
    elif isinstance(last, int) and isinstance(node.get("n"), int):
        k, n = last, node["n"]  # a search block: "correct": 12 beside "n": 40
    else:
        return None
    return (int(k), int(n)) if n else None


@dataclass(frozen=True)
class Effect:
    metric: str
    before: tuple[int, int]
    after: tuple[int, int]
    better: Better

    @property
    def change(self) -> float:
        return self.after[0] / self.after[1] - self.before[0] / self.before[1]

    @property
    def ci95(self) -> tuple[float, float]:
        return newcombe(*self.before, *self.after)

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` when the interval excludes 0, else ``no clear change``."""
        lo, hi = self.ci95
        if lo <= 0 <= hi:
            return "no clear change"
        up = lo > 0
        return "better" if up == (self.better == "up") else "worse"

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {
            "metric": self.metric,
            "before": {"k": self.before[0], "n": self.before[1]},
            "after": {"k": self.after[0], "n": self.after[1]},
            "change": round(self.change, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "better_is": self.better,
            "verdict": self.verdict,
        }


def effects(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Effect]:
    """Every ``EFFECT_METRICS`` rate both reports' ``metrics`` have."""
    out = []
    for m in EFFECT_METRICS:
        a, b = counts(before, m.path), counts(after, m.path)
        if a is not None and b is not None:
            out.append(Effect(m.name, a, b, m.better))
    return out


def markdown(rows: Sequence[Effect], before: str, after: str) -> str:
    """A table: each metric's counts, the change in points and its 95% interval."""
    lines = [
        f"| metric | {before} | {after} | change | 95% interval | |",
        "|---|---:|---:|---:|---|---|",
    ]
    for e in rows:
        lo, hi = e.ci95
        lines.append(
            f"| {e.metric} | {e.before[0]}/{e.before[1]} | {e.after[0]}/{e.after[1]} | "
            f"{100 * e.change:+.1f} | [{100 * lo:+.1f}, {100 * hi:+.1f}] | {e.verdict} |"
        )
    return "\n".join(lines) + "\n"


def _read_report(path: Path) -> dict[str, Any]:
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such eval report (safework-train eval writes one)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: not a readable eval report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise ConfigError(f"{file}: not an eval report (it has no metrics)")
    return report


def effect_steps(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Each labelled eval report against the one before it: a list of
    ``{"before", "after", "effects", "markdown"}``."""
    steps = []
    for (la, a), (lb, b) in itertools.pairwise(reports):
        rows = effects(a.get("metrics", {}), b.get("metrics", {}))
        steps.append(
            {
                "before": la,
                "after": lb,
                "effects": [e.to_json() for e in rows],
                "markdown": f"## {la} -> {lb}\n\n{markdown(rows, la, lb)}",
            }
        )
    return steps


def compare_reports(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """``effect_steps`` of eval reports read from disk (``report.json`` or its folder), each
    labelled by its own ``label``."""
    if len(paths) < 2:
        raise ConfigError("effects: give two or more eval reports, in order")
    reports = [_read_report(Path(p)) for p in paths]
    return effect_steps(
        [(str(r.get("label") or Path(p).stem), r) for r, p in zip(reports, paths, strict=True)]
    )
