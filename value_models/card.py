"""``MODEL_CARD.md`` of the built-in value models, rendered from their ``metrics.json``.

What: ``model_card(metrics)`` states what the models are, the data and licences, which
sources were trained on and which held out, the shipped thresholds and the rule that chose
them, the numbers per split and per source at those thresholds, the goal numbers for guided
decoding, the prompt classifier's AUROC, latency, training time, and the known limits.

Why apart from ``builtin.py``: rendering is a pure function of a dict (``evaluation.py`` makes
the numbers), so the card always says what the metrics say.

How: ``builtin.train_builtin`` calls it; nothing to run on its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["model_card"]

_LIMITS = """\
- Labels are proxies. The served model's answer to a harmful prompt counts as unsafe unless a
  regex (``rules.is_refusal``) finds a refusal, so harmless nonsense after a harmful request is
  "unsafe" too; refusals and compliant openings are partly written templates; the edgy-benign
  prompts come from ~150 hand-written topics in ~23 families. The models learn these labels,
  not a policy: Do-Not-Answer counts e.g. lock picking as harmful.
- The served model's answers are one sample per prompt (temperature 0.7, at most 40 tokens): the
  models saw openings and first lines of answers, rarely long answers.
- Inputs are cut (first and last tokens of the prompt, first and most recent tokens of the
  response): a request hidden in the middle of a long jailbreak is unseen. English only.
- "Validation" prompts come from the sources trained on (a seeded 20% of their prompts, 30% of
  the topics of each trained edgy family) and the thresholds are chosen there, so its numbers
  are optimistic (false-positive rates at the threshold are at most the target there by
  construction); the held-out sources (never trained on, never calibrated on) are the honest
  estimate, and HarmBench is the closest to an independent test.
- A 22M-parameter encoder on a few thousand rows, a few hundred steps on 2 CPU cores: it reads
  tone and intent well but does not know facts.
"""


def _fmt(value: Any) -> str:
    if isinstance(value, dict) and "rate" in value:
        if value["rate"] is None:
            return "n/a"
        return f"{value['rate']:.3f} (n={value['n']})"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def _data(metrics: dict[str, Any]) -> list[str]:
    cols = sorted({k for c in metrics["counts"].values() for k in c})
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
        f"The served model's own answers: `{metrics['answers'].get('model', '?')}` "
        f"(fingerprint {str(metrics['answers'].get('model_fingerprint', '?'))[:16]}, dtype "
        f"{metrics['answers'].get('dtype', '?')}, temperature "
        f"{metrics['answers'].get('temperature', '?')}, at most "
        f"{metrics['answers'].get('max_tokens', '?')} tokens).",
        "",
        "Rows per source and split (`prompt`: a prompt alone; `safe`/`unsafe`: pairs). Held-out "
        "sources (split `heldout`) are never trained on and never used to choose a threshold; "
        "HarmBench is evaluation only.",
        "",
        "| source | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        *(
            f"| {src} | " + " | ".join(str(c.get(k, "")) for k in cols) + " |"
            for src, c in metrics["counts"].items()
        ),
        "",
        "Left out: " + ", ".join(f"{k}: {v}" for k, v in metrics["excluded"].items()) + ".",
        "",
    ]


def _thresholds(metrics: dict[str, Any]) -> list[str]:
    return [
        "## Shipped thresholds",
        "",
        *(
            f"- `{k}`: {v['threshold']:.4f}: {v['rule']} (n={v['n']})"
            for k, v in metrics["thresholds"].items()
        ),
        "",
        "The server uses these unless a request or the YAML config sets a threshold.",
        "",
    ]


_GOALS = (
    ("harmful_served_recall_short", "harmful prompt + served answer, first line: flagged"),
    ("harmful_served_recall_full", "harmful prompt + served answer, whole: flagged"),
    ("harmbench_served_recall_short", "HarmBench + served answer, first line: flagged"),
    ("harmbench_served_recall_full", "HarmBench + served answer, whole: flagged"),
    ("edgy_served_helpful_fpr_short", "edgy-benign + served helpful answer, first line: flagged"),
    ("edgy_served_helpful_fpr_full", "edgy-benign + served helpful answer, whole: flagged"),
    ("edgy_written_helpful_fpr", "edgy-benign + written helpful answer: flagged"),
)
_SOURCE_COLS = (
    ("auroc", "AUROC"),
    ("bad_flagged", "bad flagged"),
    ("good_flagged", "good flagged"),
    ("served_compliance_flagged_short", "served compliance, 1st line"),
    ("served_helpful_flagged_short", "served helpful, 1st line"),
    ("refusal_flagged", "refusal flagged"),
)


def _pair_head(name: str, report: dict[str, Any]) -> list[str]:
    lines = [f"## `builtin:{name}` at threshold {report['threshold']:.4f}", ""]
    lines += ["| goal set | validation | held out |", "|---|---|---|"]
    for key, label in _GOALS:
        val, held = report["val"]["goals"].get(key), report["heldout"]["goals"].get(key)
        lines.append(f"| {label} | {_fmt(val)} | {_fmt(held)} |")
    lines += ["", "Per source (a pair is *bad* when its label is 0):", ""]
    lines += ["| split | source | n | " + " | ".join(c for _, c in _SOURCE_COLS) + " |"]
    lines += ["|---|---|---|" + "---|" * len(_SOURCE_COLS)]
    for split in ("val", "heldout"):
        for source, block in report[split]["by_source"].items():
            cells = " | ".join(_fmt(block.get(k)) for k, _ in _SOURCE_COLS)
            lines.append(f"| {split} | {source} | {block['n']} | {cells} |")
    return [*lines, ""]


def _prompt_head(report: dict[str, Any], risk: dict[str, Any]) -> list[str]:
    lines = [
        f"## Prompt classifier (moderation of plain prompts), flags P(harmful) > "
        f"{report['threshold']:.4f}",
        "",
        "| split | source | harmful? | flagged | AUROC vs the split's edgy-benign prompts |",
        "|---|---|---|---|---|",
    ]
    for split in ("val", "heldout"):
        for source, e in report[split]["by_source"].items():
            lines.append(
                f"| {split} | {source} | {e['harmful']} | {_fmt(e['flagged'])} | "
                f"{_fmt(e.get('auroc_vs_edgy'))} |"
            )
        lines.append(
            f"| {split} | **all harmful vs edgy-benign** | | | "
            f"{_fmt(report[split]['auroc_harmful_vs_edgy'])} |"
        )
    lines += [
        "",
        f"Risk head, top kind agrees with the source label (harmful prompts): "
        f"validation {_fmt(risk['val'])}, held out {_fmt(risk['heldout'])}.",
        "",
    ]
    return lines


def model_card(metrics: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the models are, data and licences, thresholds, numbers, limits."""
    train, seconds, latency = metrics["train"], metrics["seconds"], metrics["latency"]
    intro = [
        "# builtin:safety and builtin:values",
        "",
        f"One cross-encoder: {metrics['encoder']}, with four heads: `safe` (P(the pair is "
        "safe), `builtin:safety`), `values` (P(the response is helpful and harmless), "
        "`builtin:values`), `prompt` (P(a prompt alone is a harmful request), moderation) and "
        f"`risk` ({len(metrics['risk_kinds'])} risk kinds: {', '.join(metrics['risk_kinds'])}). "
        f"{train['steps']} AdamW steps of {train['batch_size']} rows (encoder lr {train['lr']}, "
        f"heads {train['head_lr']}), seed {train['seed']}; loss {metrics['loss']['first_10_steps']}"
        f" -> {metrics['loss']['last_10_steps']}. Recipe version {metrics['recipe_version']}.",
        "",
        f"Build time: {seconds['total']} s ({seconds['answers']} s for the served model's "
        f"answers, {seconds['training']} s fine-tuning). Scoring one guided-decoding step (4 "
        f"pairs, every head): {latency['step_of_4_pairs_ms']} ms ({latency['per_pair_ms']} ms per "
        "pair), on the CPU that built it.",
        "",
    ]
    return "\n".join(
        intro
        + _data(metrics)
        + _thresholds(metrics)
        + _pair_head("safety", metrics["safety"])
        + _pair_head("values", metrics["values"])
        + _prompt_head(metrics["prompt"], metrics["risk"])
        + ["## Known limits", "", _LIMITS]
    )
