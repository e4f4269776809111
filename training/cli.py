"""``safework-train``: the SafeLadder training stages, one subcommand each.

A thin CLI: each subcommand is a small object with ``add_arguments`` and ``run``, listed in
``COMMANDS``; the work lives in the modules they call. Stages configured by a dataclass
(``ConfigCommand``) take ``--config FILE.yaml`` and ``KEY=VALUE`` overrides (``config.py``):

  data       fetch the pinned sources and build the cot-sft mix (``data.py``)
  sft        CoT supervised fine-tuning, LoRA or full, DeepSpeed-ready (``sft.py``)
  eval       score a checkpoint and add it to the trajectory plot (``evaluate.py``)
  value      train the built-in value models (``builtin:safety``, ``builtin:values``: one
             cross-encoder) and print their metrics (``value_models/builtin.py``)
  calibrate  fit the search-mode confidence calibration of a model (``calibrate.py``)

  rl         an RL stage: ``--stage m3rl|efficient|search`` (``rl.py``)
  pipeline   sft -> m3rl -> efficient -> search, eval after each (``pipeline.py``)
  analyze    ``analyze mi``: MI between hidden states and a reference, its peaks (``analyze.py``)

Run::

    safework-train data
    safework-train sft --config configs/sft-lora.yaml max_steps=50 output=runs/sft
    safework-train eval model=runs/sft label=sft
    safework-train value --kind all            # trains what is missing, prints metrics
    safework-train sft --help                  # every key, its default and meaning
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from safework.errors import SafeWorkError
from safework.training.config import add_config_arguments, config_from_args

__all__ = [
    "COMMANDS",
    "AnalyzeCommand",
    "CalibrateCommand",
    "Command",
    "ConfigCommand",
    "PipelineCommand",
    "RLCommand",
    "ValueCommand",
    "build_parser",
    "main",
]


class Command(Protocol):
    """A subcommand: its name, one line of help, its flags, and what it does."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of the built-in models' ``metrics.json``: thresholds, and per split
    the goal numbers of guided decoding and the prompt classifier's AUROC."""
    out: dict[str, Any] = {
        "thresholds": {k: v["threshold"] for k, v in metrics["thresholds"].items()},
        "latency": metrics.get("latency"),
        "seconds": metrics.get("seconds"),
    }
    for kind in ("safety", "values"):
        for split in ("val", "heldout"):
            goals = metrics[kind][split]["goals"]
            out[f"{kind}_{split}"] = {k: v["rate"] for k, v in goals.items() if v["n"]}
            out[f"{kind}_{split}"]["auroc"] = metrics[kind][split]["all"]["auroc"]
    for split in ("val", "heldout"):
        out[f"prompt_{split}_auroc_harmful_vs_edgy"] = metrics["prompt"][split][
            "auroc_harmful_vs_edgy"
        ]
    return out


class ValueCommand:
    """``safework-train value``: train the built-in value models (one shared network)."""

    name = "value"
    help = "train the built-in value models (a MiniLM cross-encoder) and print their metrics"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--kind",
            choices=("safety", "values", "all"),
            default="all",
            help="which model (both are heads of one network, trained together)",
        )
        parser.add_argument(
            "--cache", type=Path, default=None, help="cache root (default $SAFEWORK_CACHE)"
        )
        parser.add_argument(
            "--force", action="store_true", help="retrain even if a trained model exists"
        )
        parser.add_argument(
            "--full", action="store_true", help="print the whole metrics.json, not a summary"
        )

    def run(self, args: argparse.Namespace) -> int:
        from safework.value_models import builtin

        started = time.monotonic()
        folder = builtin.ensure_builtin(args.cache, progress=True, force=args.force)
        metrics = json.loads((folder / builtin.METRICS_FILE).read_text(encoding="utf-8"))
        print(json.dumps(metrics if args.full else _summary(metrics), indent=2))
        kinds = builtin.KINDS if args.kind == "all" else (args.kind,)
        names = ", ".join(f"builtin:{k}" for k in kinds)
        print(f"{names}: {folder} ({time.monotonic() - started:.1f} s)")
        return 0


class CalibrateCommand:
    """``safework-train calibrate``: fit the search-mode confidence calibration."""

    name = "calibrate"
    help = "fit the confidence calibration of search answers on generated QA; report ECE"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from safework.training import calibrate

        calibrate.add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from safework.training import calibrate

        return calibrate.run(args)


class EffectsCommand:
    """``safework-train effects A B [C ...]``: what changed between eval reports, with intervals."""

    name = "effects"
    help = "compare eval reports in order (each rate as k/n, the change and its 95%% interval)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "reports",
            nargs="+",
            type=Path,
            metavar="REPORT",
            help="eval reports in order: a report.json or the folder holding it (two or more)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON, not markdown")

    def run(self, args: argparse.Namespace) -> int:
        from safework.training.effects import compare_reports

        steps = compare_reports(args.reports)
        if args.json:
            print(json.dumps(steps, indent=2))
        else:
            print("\n".join(step["markdown"] for step in steps), end="")
        return 0


class ConfigCommand:
    """A stage configured by a dataclass: ``--config FILE.yaml`` plus ``KEY=VALUE`` overrides.

    ``target`` is ``"module:ConfigClass:function"``; the function takes the config and returns a
    summary dict, printed as JSON; the module's docstring is the stage's ``--help`` text. Modules
    are imported when the parser is built (for ``--help``), so they must stay cheap to import:
    heavy libraries load inside the functions.
    """

    def __init__(self, name: str, help: str, target: str) -> None:
        self.name = name
        self.help = help
        self.target = target

    def _parts(self) -> tuple[ModuleType, type, Any]:
        module, cls, func = self.target.split(":")
        mod = importlib.import_module(module)
        return mod, getattr(mod, cls), getattr(mod, func)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        mod, cls, _ = self._parts()
        parser.description = (mod.__doc__ or "").strip()
        add_config_arguments(parser, cls)

    def run(self, args: argparse.Namespace) -> int:
        _, cls, func = self._parts()
        config = config_from_args(cls, args)
        summary = func(config)
        print(json.dumps(summary, indent=2, default=str))
        return 0


class RLCommand(ConfigCommand):
    """``safework-train rl --stage NAME``: the stage flag is the config's ``stage`` key."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from safework.training.rl_config import STAGES

        super().add_arguments(parser)
        parser.add_argument(
            "--stage", choices=STAGES, default=None, help="the RL stage (or stage=NAME)"
        )

    def run(self, args: argparse.Namespace) -> int:
        if args.stage is not None:
            args.overrides = [f"stage={args.stage}", *args.overrides]
        return super().run(args)


class AnalyzeCommand(ConfigCommand):
    """``safework-train analyze mi [KEY=VALUE ...]``: the analysis is named first."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("analysis", choices=("mi",), help="what to analyse")
        super().add_arguments(parser)


class PipelineCommand:
    """``safework-train pipeline recipe.yaml [KEY=VALUE ...]``."""

    name = "pipeline"
    help = "chain the stages of a recipe: sft, m3rl, efficient, search, eval after each"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from safework.training import pipeline

        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.description = (pipeline.__doc__ or "").strip()
        parser.add_argument("recipe", type=Path, help="the recipe YAML")
        parser.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="recipe keys that win: output=DIR, or SECTION.KEY=VALUE (sft.max_steps=20)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from safework.training.config import parse_overrides
        from safework.training.pipeline import run_pipeline

        summary = run_pipeline(args.recipe, parse_overrides(args.overrides))
        print(json.dumps(summary, indent=2, default=str))
        return 0


COMMANDS: tuple[Command, ...] = (
    ConfigCommand(
        "data",
        "fetch the pinned sources and build training datasets",
        "safework.training.data:DataConfig:run_data",
    ),
    ConfigCommand(
        "sft",
        "supervised fine-tuning on reasoning conversations (full or LoRA)",
        "safework.training.sft:SFTConfig:train",
    ),
    ConfigCommand(
        "eval",
        "score checkpoints on safety, over-refusal, capability; plot the trajectory",
        "safework.training.evaluate:EvalConfig:run_eval",
    ),
    RLCommand(
        "rl",
        "a SafeLadder RL stage with CPGD: --stage m3rl, efficient or search",
        "safework.training.rl:RLConfig:train_rl",
    ),
    AnalyzeCommand(
        "analyze",
        "mi: where a checkpoint's hidden states carry the reference answer (MI peaks)",
        "safework.training.analyze:MIConfig:run_mi",
    ),
    PipelineCommand(),
    EffectsCommand(),
    ValueCommand(),
    CalibrateCommand(),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safework-train", description="SafeWork training stages.")
    # `deepspeed --module` puts --local_rank before the subcommand; ranks read LOCAL_RANK
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    by_name = {c.name: c for c in COMMANDS}
    try:
        return by_name[args.command].run(args)
    except SafeWorkError as exc:
        print(f"safework-train {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
