"""``safework-train pipeline recipe.yaml``: the SafeLadder stages in order, eval after each.

A recipe names the stages to run and holds one section per stage (the keys of that stage's own
command), plus an ``eval`` section used after every stage::

    output: runs/safeladder        # stage S writes OUTPUT/S; eval writes OUTPUT/eval
    model: default                 # the starting model
    stages: [sft, m3rl, efficient, search]
    eval_base: true                # also evaluate the starting model (the first point)
    data: {search_train: 150}      # optional: `safework-train data` keys, built into OUTPUT/data
    rl_data: {jailbreak_fraction: 0.5}  # optional: m3rl's and efficient's prompts (OUTPUT/rl-data)
    eval: {max_tokens: 256, safety_samples: 40}
    sft: {max_steps: 50}
    m3rl: {max_steps: 60, lr: 5e-5}
    efficient: {max_steps: 30}
    search: {max_steps: 30}
    analyze: {n: 50}               # optional: `analyze mi` after every eval (MI peaks)

Keys on the command line win over the recipe: ``output=runs/short`` replaces a top-level key,
``sft.max_steps=20`` or ``eval.capability_samples=8`` sets one key of a section.

With a ``data`` section the recipe's own dataset is built first (into ``OUTPUT/data``, rebuilt
only when its settings or code change) and is what SFT trains on, what the CoT RL stages
draw prompts from and what eval's dev groups read, unless a section names its own ``data``.
An ``rl_data`` section gives the CoT RL stages (m3rl, efficient) a second dataset: the ``data``
section with its keys over it, built into ``OUTPUT/rl-data`` (the same seed and sources, so the
same prompts; say, half the safety prompts asked inside jailbreak templates that SFT never saw).
Each stage starts from the previous stage's servable folder. Every stage config is loaded and
checked before anything runs, so a typo in the last section fails in the first second. Running
the same recipe again resumes: a finished stage (its ``metrics.json`` written for this same
run, after its dataset was built and the stage before it finished) is skipped, an interrupted
one continues from its latest checkpoint, and a checkpoint already evaluated with the recipe's
eval settings keeps its report (change ``eval`` and every point is evaluated again). Each eval
adds the stage's point to ``OUTPUT/eval/trajectory.png`` (base -> sft -> m3rl -> ...). With an
``analyze`` section, ``safework-train analyze mi`` runs after each eval: its summary joins the
report and the trajectory point as ``mi_peaks``, and ``OUTPUT/eval/mi_peaks.md`` tables every
checkpoint's peak rate and safety share of peaks. After its eval, the search checkpoint's
confidence map is fitted (``safework-train calibrate --if-missing``), so it is served
calibrated. Stages and evals run as child processes, so vLLM's memory is returned before the
next stage trains; each child gets a process group of its own, killed when the child ends
(nothing it started outlives it) or the pipeline is stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safework.errors import ConfigError

from .config import config_to_dict, load_config
from .eval_report import TRAJECTORY_FILE, load_trajectory, trajectory_point, update_trajectory

__all__ = ["PIPELINE_STAGES", "Pipeline", "load_pipeline", "run_pipeline"]

logger = logging.getLogger(__name__)

PIPELINE_STAGES = ("sft", "m3rl", "efficient", "search")
_SECTIONS = ("data", "rl_data", "eval", "analyze", *PIPELINE_STAGES)
_COT_RL_STAGES = ("m3rl", "efficient")
"""The RL stages that draw their prompts from the recipe's CoT dataset (search asks its own
element questions)."""
_TOP_KEYS = {"output", "model", "stages", "eval_base", *_SECTIONS}


@dataclass
class Pipeline:
    output: Path
    model: str
    stages: list[str]
    eval_base: bool
    configs: dict[str, Any] = field(default_factory=dict)
    """stage -> its checked config (SFTConfig or RLConfig)."""
    eval_section: dict[str, Any] = field(default_factory=dict)
    data: Any = None
    """The recipe's ``DataConfig`` (its ``data`` section), built before the first stage."""
    rl_data: Any = None
    """The CoT RL stages' ``DataConfig`` (the ``data`` section with ``rl_data``'s keys over it),
    built into OUTPUT/rl-data beside the other; None when the recipe has no ``rl_data``."""
    analyze: dict[str, Any] | None = None
    """The recipe's ``analyze`` section (``analyze mi`` keys): run after every eval when set."""


def _stage_config(name: str, section: dict[str, Any], model: str, output: Path) -> Any:
    fixed = {"model": model, "output": str(output)}
    clash = sorted(set(section) & set(fixed))
    if clash:
        raise ConfigError(
            f"recipe section {name!r} sets {clash}; the pipeline chains models and folders "
            "itself (set the top-level 'model' and 'output')"
        )
    if name == "sft":
        from .sft import SFTConfig

        return load_config(SFTConfig, None, {**section, **fixed})
    from .rl import RLConfig

    if "stage" in section:
        raise ConfigError(f"recipe section {name!r}: the stage is the section's name")
    return load_config(RLConfig, None, {**section, **fixed, "stage": name})


def load_pipeline(path: Path, overrides: dict[str, Any] | None = None) -> Pipeline:
    """The recipe at ``path`` with every stage's config built and checked."""
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping")
    _apply_overrides(data, overrides or {})
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"recipe {path}: unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    stages = data.get("stages", list(PIPELINE_STAGES))
    if not isinstance(stages, list) or not stages:
        raise ConfigError("recipe: 'stages' must be a non-empty list")
    bad = [s for s in stages if s not in PIPELINE_STAGES]
    if bad:
        raise ConfigError(f"recipe: unknown stage(s) {bad}; use {', '.join(PIPELINE_STAGES)}")
    if len(set(stages)) != len(stages):
        raise ConfigError("recipe: a stage is listed twice")
    output = Path(data.get("output", "runs/safeladder"))
    pipeline = Pipeline(
        output, str(data.get("model", "default")), stages, bool(data.get("eval_base", True))
    )
    data_section = data.get("data")
    if data_section is not None:
        pipeline.data = _data_config("data", data_section, {}, output / "data")
    rl_section = data.get("rl_data")
    if rl_section is not None:
        if data_section is None:
            raise ConfigError("recipe: 'rl_data' sets keys over a 'data' section; add one")
        # The same seed and sources give the same prompts, so the eval's exclusions (the data
        # section's train rows) still hold for the RL stages' prompts.
        pipeline.rl_data = _data_config("rl_data", rl_section, data_section, output / "rl-data")
    model = pipeline.model
    for name in stages:
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"recipe: section {name!r} must be a mapping of keys")
        if pipeline.rl_data is not None and name in _COT_RL_STAGES:
            section = {"data": str(pipeline.rl_data.folder()), **section}
        elif pipeline.data is not None and name != "search":
            section = {"data": str(output / "data"), **section}
        pipeline.configs[name] = _stage_config(name, section, model, output / name)
        model = str(output / name)
    eval_section = data.get("eval") or {}
    if not isinstance(eval_section, dict):
        raise ConfigError("recipe: 'eval' must be a mapping of eval keys")
    from .evaluate import EvalConfig

    for key in ("model", "label", "output"):
        if key in eval_section:
            raise ConfigError(f"recipe eval section sets {key!r}; the pipeline sets it per stage")
    load_config(EvalConfig, None, {**eval_section, "output": str(output / "eval")})
    if pipeline.data is not None:  # built when the pipeline runs, so checked without it
        eval_section = {"data": str(output / "data"), **eval_section}
    pipeline.eval_section = eval_section
    analyze = data.get("analyze")
    if analyze is not None:
        from .analyze import MIConfig

        if not isinstance(analyze, dict):
            raise ConfigError("recipe: 'analyze' must be a mapping of `analyze mi` keys")
        for key in ("model", "output"):
            if key in analyze:
                raise ConfigError(f"recipe analyze section sets {key!r}; the pipeline sets it")
        load_config(MIConfig, None, {**analyze, "output": str(output / "eval")})
        pipeline.analyze = analyze
    return pipeline


def _data_config(name: str, section: Any, under: dict[str, Any], folder: Path) -> Any:
    """The checked ``DataConfig`` of the recipe section ``name`` (``data``, or ``rl_data`` with
    the ``data`` section's keys ``under`` its own), built into ``folder``."""
    from .data_config import DataConfig

    if not isinstance(section, dict):
        raise ConfigError(f"recipe: '{name}' must be a mapping of `safework-train data` keys")
    if "output" in section:
        raise ConfigError(
            f"recipe {name} section sets 'output'; the pipeline uses OUTPUT/{folder.name}"
        )
    config = load_config(DataConfig, None, {**under, **section, "output": str(folder)})
    config.check()
    return config


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """``output=...`` replaces a top-level key; ``SECTION.KEY=...`` (``sft.max_steps=20``,
    ``eval.capability_samples=8``, ``m3rl.lora.r=8``) sets one key of a section."""
    for key, value in overrides.items():
        section, dot, rest = key.partition(".")
        if not dot:
            data[key] = value
            continue
        if section not in _SECTIONS:
            raise ConfigError(
                f"override {key!r}: {section!r} is not a recipe section "
                f"(sections: {', '.join(_SECTIONS)})"
            )
        current = data.get(section)
        if current is None:
            current = data[section] = {}
        if not isinstance(current, dict):
            raise ConfigError(f"override {key!r}: recipe section {section!r} is not a mapping")
        current[rest] = value


def _finished(config: Any, inputs_at: float = 0.0) -> bool:
    """The stage's folder holds this same run, trained to the end after ``inputs_at`` (when
    its dataset was built and the stage before it finished: a stage whose inputs were made
    again since is trained again, though its settings name the same folders)."""
    output = Path(config.output)
    try:
        run = json.loads((output / "run.json").read_text(encoding="utf-8"))
        metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
        finished_at = (output / "metrics.json").stat().st_mtime
    except (OSError, json.JSONDecodeError):
        return False
    same = run == json.loads(json.dumps(config.identity(), sort_keys=True))
    fresh = finished_at >= inputs_at
    return same and fresh and (output / "config.json").is_file() and "steps" in metrics


def _mtime(path: Path) -> float:
    """``path``'s modification time, 0 when it is absent."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _report_of(
    report: Path, model: str, settings: dict[str, Any] | None = None, after: float = 0.0
) -> dict[str, Any] | None:
    """The eval report at ``report`` when it is of ``model`` as it is now, with ``settings``
    (the recipe's eval keys): it names the model, records the same values for those keys, and
    was written after the model's files (a stage run again rewrites them) and after ``after``
    (the recipe's dataset, whose dev rows it asks and whose train rows it keeps out)."""
    if not report.is_file():
        return None
    data = json.loads(report.read_text(encoding="utf-8"))
    if data.get("model") != model:
        return None
    recorded = data.get("config") or {}
    for key, value in (settings or {}).items():
        if key not in recorded or _plain(recorded[key]) != _plain(value):
            return None
    folder = Path(model)
    files = [f for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []
    newest = max((f.stat().st_mtime for f in files), default=after)
    return data if report.stat().st_mtime >= max(newest, after) else None


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (paths as text), for comparing settings."""
    return json.loads(json.dumps(value, default=str))


def _evaluate(pipeline: Pipeline, model: str, label: str, data_at: float) -> dict[str, Any]:
    """``safework-train eval`` in a child process; the report (kept if already there, made
    with the recipe's eval settings after the dataset written at ``data_at``)."""
    evals = pipeline.output / "eval"
    report = evals / label / "report.json"
    kept = _report_of(report, model, pipeline.eval_section, after=data_at)
    if kept is not None:
        logger.info("eval %s: kept %s", label, report)
        if label not in [p.get("label") for p in load_trajectory(evals / TRAJECTORY_FILE)]:
            update_trajectory(evals, trajectory_point({**kept, "label": label}))  # lost: put back
        return kept
    args = ["eval", f"model={model}", f"label={label}", f"output={evals}"]
    code = _child(args, pipeline.eval_section, f"eval {label}")
    if code != 0:
        raise ConfigError(f"eval of {label} ({model}) failed with exit code {code}")
    return json.loads(report.read_text(encoding="utf-8"))


_CLI = (sys.executable, "-m", "safework.training.cli")
"""``safework-train`` in a child process, on this interpreter."""


def _train_stage(pipeline: Pipeline, name: str, config: Any) -> dict[str, Any]:
    """``safework-train <stage> --config`` the stage's full config, in a child process: each
    stage's model, optimizer and colocated vLLM engine go back to the system when it ends
    (in one process the allocator kept them, and by the third stage the pipeline held 20 GB
    of a 24 GB machine). Returns the stage's ``metrics.json``."""
    folder = pipeline.output / "stages"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
    verb = "sft" if name == "sft" else "rl"  # an RL stage's config names its stage
    command = [*_CLI, verb, "--config", str(path)]
    logger.info("stage %s: %s", name, " ".join(command))
    code = _run(command)
    if code != 0:
        raise ConfigError(f"stage {name} failed with exit code {code} (config: {path})")
    return json.loads((Path(config.output) / "metrics.json").read_text(encoding="utf-8"))


def _child(args: list[str], section: dict[str, Any], what: str) -> int:
    """``safework-train ARGS`` plus the section's keys as ``KEY=JSON``, in a child process
    (so vLLM's memory goes back when it ends); its exit code."""
    overrides = [f"{k}={json.dumps(v)}" for k, v in section.items()]
    command = [*_CLI, *args, *overrides]
    logger.info("%s: %s", what, " ".join(command))
    return _run(command)


def _run(command: list[str]) -> int:
    """``command`` in a process group of its own; its exit code. When it ends, whatever is
    left in its group is killed: a stage killed for memory leaves its vLLM engine core (3 GB)
    running otherwise, for the rest of the ladder. When the pipeline itself is stopped
    (Ctrl-C, SIGTERM), the group is asked to stop, then killed."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on) if main else None
    child = subprocess.Popen(command, start_new_session=True)
    try:
        return child.wait()
    finally:
        if child.poll() is None:  # interrupted while it runs
            _signal_group(child.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=_STOP_GRACE_S)
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


_STOP_GRACE_S = 20.0


def _exit_on(signum: int, frame: Any) -> None:
    """SIGTERM as ``SystemExit``, so the ``finally`` that ends a child's group runs."""
    raise SystemExit(128 + signum)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _calibrate(pipeline: Pipeline, model: str) -> None:
    """``safework-train calibrate --if-missing`` of the search checkpoint, after its eval, in
    a child process: the map (fitted on the dev half of the element questions, never on the
    eval's held-out half) is stored under the checkpoint's weights, where ``safework serve
    --model OUTPUT/search`` finds it, so ``:search`` answers carry calibrated confidences."""
    command = [*_CLI, "calibrate", "--model", model, "--if-missing"]  # new weights: new map
    if pipeline.eval_section.get("search_backend"):
        command += ["--backend", str(pipeline.eval_section["search_backend"])]
    logger.info("calibrate %s: %s", model, " ".join(command))
    code = _run(command)
    if code != 0:
        raise ConfigError(f"calibrating {model} failed with exit code {code}")


def _analyze(pipeline: Pipeline, model: str, label: str, report: dict[str, Any]) -> dict:
    """``safework-train analyze mi`` of the checkpoint in a child process (its ``mi.json``
    kept if already there), on the answers its eval wrote; its summary goes into the eval
    report and the trajectory point as ``mi_peaks``."""
    folder = pipeline.output / "eval" / label
    result = _report_of(folder / "mi" / "mi.json", model)
    if result is None:
        assert pipeline.analyze is not None
        section = dict(pipeline.analyze)
        samples = folder / "samples.jsonl"
        if section.get("prompts", "cot-sft") == "cot-sft" and samples.is_file():
            section.setdefault("answers", str(samples))  # the eval's answers: no generation
            if "data" in pipeline.eval_section:
                section.setdefault("data", pipeline.eval_section["data"])
        args = ["analyze", "mi", f"model={model}", f"output={folder / 'mi'}"]
        code = _child(args, section, f"analyze {label}")
        if code != 0:
            raise ConfigError(f"analyze mi of {label} ({model}) failed: exit {code}")
        result = json.loads((folder / "mi" / "mi.json").read_text(encoding="utf-8"))
    peaks = {"estimator": result["estimator"], "layers": result["summary"]}
    report["mi_peaks"] = peaks
    (folder / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    evals = pipeline.output / "eval"
    if (evals / TRAJECTORY_FILE).is_file():
        for point in load_trajectory(evals / TRAJECTORY_FILE):
            if point.get("label") == label:
                update_trajectory(evals, {**point, "mi_peaks": peaks})  # the plot redrawn too
    return peaks


def _cell(word: str) -> str:
    """A peak word inside a markdown table cell: whitespace shown, ``|`` escaped."""
    from .mi_tokens import visible

    return visible(word).replace("|", "\\|")


def _write_mi_table(folder: Path, rows: list[tuple[str, dict[str, Any]]]) -> str:
    """``mi_peaks.md``: per checkpoint and layer, the peak rate and the safety share of
    peaks (all prompts, then each kind) as k/n."""
    lines = [
        "# MI peaks along the ladder (`safework-train analyze mi`)\n",
        "| checkpoint | layer | prompts | peak rate | safety share of peaks | top words |",
        "|---|---|---|---|---|---|",
    ]
    for label, peaks in rows:
        for layer, by_kind in peaks["layers"].items():
            for kind, part in by_kind.items():
                rate, share = part["peak_rate"], part["safety_share"]
                words = ", ".join(f"{_cell(w)} ({c})" for w, c in part["words"][:5])
                lines.append(
                    f"| {label} | {layer} | {kind} | {rate['k']}/{rate['n']} | "
                    f"{share['k']}/{share['n']} | {words} |"
                )
    path = folder / "mi_peaks.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run_pipeline(recipe: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of ``recipe``; returns each stage's summary and eval."""
    from .sft import resolve_model

    pipeline = load_pipeline(recipe, overrides)
    pipeline.output.mkdir(parents=True, exist_ok=True)
    (pipeline.output / "recipe.json").write_text(
        json.dumps({name: config_to_dict(c) for name, c in pipeline.configs.items()}, indent=2),
        encoding="utf-8",
    )
    summary: dict[str, Any] = {"output": str(pipeline.output), "stages": {}}
    reports: list[tuple[str, dict[str, Any]]] = []
    mi_rows: list[tuple[str, dict[str, Any]]] = []
    data_at = rl_data_at = 0.0  # when the datasets (the RL stages' prompts) were built
    if pipeline.data is not None:
        from .data import MANIFEST, ensure_built

        summary["data"] = str(ensure_built(pipeline.data))
        data_at = rl_data_at = _mtime(Path(summary["data"]) / MANIFEST)
        if pipeline.rl_data is not None:
            summary["rl_data"] = str(ensure_built(pipeline.rl_data))
            rl_data_at = max(data_at, _mtime(Path(summary["rl_data"]) / MANIFEST))
    before_at = 0.0  # when the stage before finished
    if pipeline.eval_base:
        base = str(resolve_model(pipeline.model)) if pipeline.model == "default" else pipeline.model
        report = _evaluate(pipeline, base, "base", data_at)
        reports.append(("base", report))
        summary["base_eval"] = _summary_of(report)
        if pipeline.analyze is not None:
            mi_rows.append(("base", _analyze(pipeline, base, "base", report)))
    for name in pipeline.stages:
        config = pipeline.configs[name]
        if name in _COT_RL_STAGES:
            inputs_at = rl_data_at
        elif name == "search":  # asks its own questions, not the recipe's dataset
            inputs_at = 0.0
        else:
            inputs_at = data_at
        if _finished(config, max(before_at, inputs_at)):
            logger.info("stage %s: already finished in %s", name, config.output)
            result: dict[str, Any] = {"skipped": "finished"}
        else:
            result = _train_stage(pipeline, name, config)
        before_at = _mtime(Path(config.output) / "metrics.json")
        report = _evaluate(pipeline, str(config.output), name, data_at)
        reports.append((name, report))
        result["eval"] = _summary_of(report)
        if pipeline.analyze is not None:
            mi_rows.append((name, _analyze(pipeline, str(config.output), name, report)))
            summary["mi_peaks"] = _write_mi_table(pipeline.output / "eval", mi_rows)
        if name == "search":
            _calibrate(pipeline, str(config.output))
        summary["stages"][name] = result
        summary["effects"] = _write_effects(pipeline.output / "eval", reports)
    summary["trajectory"] = str(pipeline.output / "eval" / "trajectory.png")
    return summary


def _write_effects(folder: Path, reports: list[tuple[str, dict[str, Any]]]) -> str:
    """Each stage against the point before it (``effects.py``): ``effects.json`` and a
    markdown table per step in ``effects.md``; returns the markdown file's path."""
    from .effects import effect_steps

    steps = effect_steps(reports)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "effects.json").write_text(
        json.dumps([{k: v for k, v in s.items() if k != "markdown"} for s in steps], indent=2),
        encoding="utf-8",
    )
    path = folder / "effects.md"
    parts = ["# What each stage changed (95% intervals)\n", *(s["markdown"] for s in steps)]
    path.write_text("\n".join(parts), encoding="utf-8")
    return str(path)


def _summary_of(report: dict[str, Any]) -> dict[str, Any]:
    return report.get("summary", report)
