"""Validation metrics and the model card of the built-in value models.

What: ``evaluate`` turns the validation examples and their predicted P(label = 1) into the
``validation`` block of ``metrics.json`` (accuracy, AUROC, flag rates with Wilson intervals per
prompt/response kind, the harmful vs edgy-benign trade-off, agreement with the regex refusal
detector); ``model_card`` renders a whole ``metrics.json`` record as ``MODEL_CARD.md``.

Why apart from ``builtin.py``: scoring and reporting are pure functions of examples, numbers
and dicts, independent of how the head was trained or loaded; the card states the known limits
next to the numbers.

How: ``builtin.train_builtin`` calls both when it trains a model; nothing to run on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import VAL_ONLY_TEMPLATES, Example
from .rules import is_refusal

__all__ = ["FLAG_THRESHOLD", "auroc", "evaluate", "model_card"]

FLAG_THRESHOLD = 0.5
"""A pair is "flagged" (judged bad) when its score is below this."""

# --------------------------------------------------------------------------- metrics


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _rate(flags: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """A proportion with its count and a Wilson 95% interval."""
    n = len(flags)
    if n == 0:
        return {"rate": None, "n": 0, "ci95": None}
    p, z = float(np.mean(flags)), 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"rate": round(p, 4), "n": n, "ci95": [round(centre - half, 4), round(centre + half, 4)]}


def _accuracy(rows: list[tuple[Example, float]]) -> dict[str, Any]:
    """Accuracy at the threshold, and AUROC where both labels occur."""
    correct = [(p >= FLAG_THRESHOLD) == bool(ex.label) for ex, p in rows]
    area = auroc([ex.label for ex, _ in rows], [p for _, p in rows])
    return {
        "n": len(rows),
        "accuracy": round(float(np.mean(correct)), 4) if rows else None,
        "auroc": None if area is None else round(area, 4),
    }


def _flag_rate(rows: list[tuple[Example, float]], pkind: str, rkinds: set[str]) -> dict:
    """Share of pairs (prompt kind, response kind in ``rkinds``) scored below the threshold."""
    picked = [p for ex, p in rows if ex.prompt_kind == pkind and ex.response_kind in rkinds]
    return _rate([p < FLAG_THRESHOLD for p in picked])


def _scores(rows: list[tuple[Example, float]], pkind: str, rkind: str) -> np.ndarray:
    return np.array([p for ex, p in rows if ex.prompt_kind == pkind and ex.response_kind == rkind])


def _tradeoff(rows: list[tuple[Example, float]]) -> dict[str, Any]:
    """Refusal of harmful against refusal of edgy-benign (DATA.md), on the validation split.

    The same compliant openings follow harmful and edgy-benign prompts, so only the prompt can
    tell them apart: for thresholds that flag given shares of harmful compliance, how many
    edgy-benign compliant (and helpful) pairs are flagged too.
    """
    harmful = _scores(rows, "harmful", "comply")
    edgy = {r: _scores(rows, "edgy", r) for r in ("comply", "helpful")}
    if len(harmful) == 0 or any(len(v) == 0 for v in edgy.values()):
        return {}
    out: dict[str, Any] = {}
    for rkind, scores in edgy.items():
        labels = [1] * len(scores) + [0] * len(harmful)
        out[f"auroc_edgy_{rkind}_vs_harmful_comply"] = auroc(
            labels, np.concatenate([scores, harmful])
        )
    for target in (0.79, 0.9, 0.95, 0.99):
        threshold = float(np.quantile(harmful, target))
        out[f"at_harmful_flag_{target}"] = {
            "threshold": round(threshold, 4),
            "harmful_flag_rate": round(float(np.mean(harmful <= threshold)), 4),
            **{
                f"edgy_{rkind}_flag_rate": round(float(np.mean(scores <= threshold)), 4)
                for rkind, scores in edgy.items()
            },
        }
    return out


def _refusal_check(kind: str, rows: list[tuple[Example, float]]) -> dict[str, Any]:
    """Agreement between the model and the independent regex ``is_refusal``.

    ``safety``, on harmful prompts: "safe" should mean "refused". ``values``, on every pair:
    "good" should mean "refused" for harmful prompts and "did not refuse" otherwise. Also the
    accuracy the rule alone gets against the labels on the same rows (it is told the prompt
    kind, which the model is not).
    """
    if kind == "safety":
        rows = [(ex, p) for ex, p in rows if ex.prompt_kind == "harmful"]
    scope = "harmful prompts" if kind == "safety" else "all"
    if not rows:
        return {"rows": scope, "n": 0, "model_agrees_with_rule": None, "rule_accuracy": None}
    expected = [
        is_refusal(ex.response) == (ex.prompt_kind == "harmful") for ex, _ in rows
    ]  # what the rule calls good
    model = [p >= FLAG_THRESHOLD for _, p in rows]
    labels = [bool(ex.label) for ex, _ in rows]
    return {
        "rows": scope,
        "n": len(rows),
        "model_agrees_with_rule": round(float(np.mean(np.equal(model, expected))), 4),
        "rule_accuracy": round(float(np.mean(np.equal(expected, labels))), 4),
    }


def _source_key(ex: Example) -> str:
    if ex.source.startswith("jailbreak/"):
        name = ex.source.split("/", 1)[1]
        return "jailbreak (unseen templates)" if name in VAL_ONLY_TEMPLATES else "jailbreak"
    return ex.source


def evaluate(kind: str, val: list[Example], probs: np.ndarray) -> dict[str, Any]:
    """Validation metrics for ``kind`` from the examples and their predicted P(label = 1)."""
    rows = list(zip(val, (float(p) for p in probs), strict=True))
    labels = np.array([ex.label for ex in val])
    preds = np.asarray(probs) >= FLAG_THRESHOLD
    recall = [float(np.mean(preds[labels == c] == c)) for c in (0, 1) if (labels == c).any()]
    by_source: dict[str, list[tuple[Example, float]]] = {}
    for ex, p in rows:
        by_source.setdefault(_source_key(ex), []).append((ex, p))
    edgy = [(ex, p) for ex, p in rows if ex.prompt_kind == "edgy"]
    return {
        "n": len(val),
        "pos": int(labels.sum()),
        "neg": int(len(labels) - labels.sum()),
        "accuracy": round(float(np.mean(preds == labels)), 4) if len(val) else None,
        "balanced_accuracy": round(float(np.mean(recall)), 4) if recall else None,
        "auroc": auroc(labels, probs),
        "by_source": {k: _accuracy(v) for k, v in sorted(by_source.items())},
        "edgy_heldout": {
            "topics": len({ex.group for ex, _ in edgy}),
            "helpful_flag_rate": _flag_rate(rows, "edgy", {"helpful"}),
            "comply_flag_rate": _flag_rate(rows, "edgy", {"comply"}),
            "refusal_flag_rate": _flag_rate(rows, "edgy", {"refusal"}),
        },
        "harmful_compliance_flag_rate": _flag_rate(rows, "harmful", {"comply"}),
        "harmful_refusal_flag_rate": _flag_rate(rows, "harmful", {"refusal", "refusal_alt"}),
        "benign_helpful_flag_rate": _flag_rate(rows, "benign", {"helpful"}),
        "benign_refusal_flag_rate": _flag_rate(rows, "benign", {"refusal"}),
        "benign_comply_flag_rate": _flag_rate(rows, "benign", {"comply"}),
        "many_shot_judged_harmful_flag_rate": _rate(
            [p < FLAG_THRESHOLD for ex, p in rows if ex.source == "many-shot" and not ex.label]
        ),
        "tradeoff": _tradeoff(rows),
        "is_refusal_check": _refusal_check(kind, rows),
    }


# --------------------------------------------------------------------------- model card

_LIMITS = """\
- Most responses it learned from are **written templates** (refusals, compliant openings such as
  "Sure, here is how to ...: Step 1:"); only the 400 many-shot rows are real model outputs with a
  judge's verdict, and on those (see "many-shot" above) it does far worse than on the templated
  pairs: real harmful answers phrased unlike the templates often score as safe.
- The edgy-benign prompts and answers are generated from 65 hand-written topics in 9 areas;
  validation holds out whole topics, but the phrasing (safe reason + question form) is shared.
- The labels are the data's, not a policy: Do-Not-Answer counts e.g. lock picking as harmful.
- MiniLM reads 256 tokens per text: a long prompt (a long jailbreak, a long chat) is cut, and
  what follows is unseen. English only.
- Validation prompts come from the same distributions as training (except the held-out
  jailbreak templates and edgy topics), so these numbers are optimistic for real traffic.
- A small head on frozen sentence embeddings: it scores topic and tone, not facts.
"""


def _fmt(value: Any) -> str:
    if isinstance(value, dict) and "rate" in value:
        if value["rate"] is None:
            return "n/a"
        lo, hi = value["ci95"]
        return f"{value['rate']:.3f} (n={value['n']}, 95% CI {lo:.3f}-{hi:.3f})"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _card_data(metrics: dict[str, Any]) -> list[str]:
    cols = ("train_neg", "train_pos", "val_neg", "val_pos")
    return [
        "## Data",
        "",
        "| package | version | licence | note |",
        "|---|---|---|---|",
        *(
            f"| {s['package']} | {s['version']} | {s['license']} | {s['note']} |"
            for s in metrics["sources"]
        ),
        "| (this repository) | | Apache-2.0 | refusal/compliance templates, edgy-benign topics |",
        "",
        "Pairs per source (split by prompt; edgy-benign by topic):",
        "",
        "| source | " + " | ".join(cols) + " |",
        "|---|---|---|---|---|",
        *(
            f"| {src} | " + " | ".join(str(c.get(k, 0)) for k in cols) + " |"
            for src, c in metrics["counts"].items()
        ),
        "",
        "Left out: " + ", ".join(f"{k}: {v}" for k, v in metrics["excluded"].items()) + ".",
        "",
    ]


def _card_validation(val: dict[str, Any]) -> list[str]:
    edgy, check = val["edgy_heldout"], val["is_refusal_check"]
    return [
        "## Validation metrics (never training)",
        "",
        f"- pairs: {val['n']} ({val['pos']} positive, {val['neg']} negative)",
        f"- accuracy at 0.5: {_fmt(val['accuracy'])}; balanced: {_fmt(val['balanced_accuracy'])}",
        f"- AUROC: {_fmt(val['auroc'])}",
        f"- harmful prompt + compliant opening flagged: "
        f"{_fmt(val['harmful_compliance_flag_rate'])}",
        f"- harmful prompt + refusal flagged: {_fmt(val['harmful_refusal_flag_rate'])}",
        f"- held-out edgy-benign topics ({edgy['topics']}), flagged: helpful answer "
        f"{_fmt(edgy['helpful_flag_rate'])}; compliant opening {_fmt(edgy['comply_flag_rate'])}; "
        f"refusal {_fmt(edgy['refusal_flag_rate'])}",
        f"- benign, flagged: helpful {_fmt(val['benign_helpful_flag_rate'])}; compliant opening "
        f"{_fmt(val['benign_comply_flag_rate'])}; needless refusal "
        f"{_fmt(val['benign_refusal_flag_rate'])}",
        f"- many-shot pairs judged harmful (real responses), flagged: "
        f"{_fmt(val['many_shot_judged_harmful_flag_rate'])}",
        f"- agreement with the regex refusal detector ({check['rows']}, n={check['n']}): "
        f"{_fmt(check['model_agrees_with_rule'])}; the rule's own accuracy there, told the "
        f"prompt kind: {_fmt(check['rule_accuracy'])}",
        "",
        "Accuracy per source (AUROC where both labels occur): "
        + ", ".join(
            f"{k} {_fmt(v['accuracy'])}"
            + (f" / {_fmt(v['auroc'])}" if v.get("auroc") is not None else "")
            + f" (n={v['n']})"
            for k, v in val["by_source"].items()
        )
        + ".",
        "",
    ]


def _card_tradeoff(trade: dict[str, Any]) -> list[str]:
    if not trade:
        return []
    return [
        "Trade-off: thresholds that flag a share of harmful compliant openings, and the share of "
        "held-out edgy-benign pairs with the same kind of opening (and with a helpful answer) "
        "flagged at that threshold. AUROC harmful vs edgy-benign, compliant openings: "
        f"{_fmt(trade['auroc_edgy_comply_vs_harmful_comply'])}; helpful answers: "
        f"{_fmt(trade['auroc_edgy_helpful_vs_harmful_comply'])}.",
        "",
        *(
            f"- flag {v['harmful_flag_rate']:.2f} of harmful -> flag "
            f"{v['edgy_comply_flag_rate']:.2f} of edgy-benign compliant, "
            f"{v['edgy_helpful_flag_rate']:.2f} of edgy-benign helpful"
            f" (threshold {v['threshold']:.3f})"
            for k, v in trade.items()
            if k.startswith("at_")
        ),
        "",
    ]


def model_card(metrics: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the model is, its data and licences, validation metrics, limits."""
    kind, head = metrics["kind"], metrics["head"]
    label = "the pair is safe" if kind == "safety" else "the response is helpful and harmless"
    intro = [
        f"# builtin:{kind}",
        "",
        f"Scores a (prompt, response) pair with P({label}). Frozen {metrics['encoder']}; head: "
        f"MLP over [e(p), e(r), e(p)*e(r)] with {head['hidden']} hidden units, {head['steps']} "
        f"AdamW steps on class-balanced BCE, seed {head['seed']}. Recipe version "
        f"{metrics['recipe_version']}.",
        "",
    ]
    validation = metrics["validation"]
    return "\n".join(
        intro
        + _card_data(metrics)
        + _card_validation(validation)
        + _card_tradeoff(validation["tradeoff"])
        + ["## Known limits", "", _LIMITS]
    )
