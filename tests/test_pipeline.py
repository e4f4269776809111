"""``safework-train pipeline``: recipes checked whole before anything runs, stages chained,
finished stages skipped on a rerun, an eval point per stage."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from safework.errors import ConfigError
from safework.training import pipeline
from safework.training.cli import main
from safework.training.config import load_config
from safework.training.eval_report import load_trajectory
from safework.training.pipeline import load_pipeline, run_pipeline

ROOT = Path(__file__).resolve().parent.parent


def _recipe(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stages": ["sft", "ppo"]}, r"unknown stage\(s\) \['ppo'\]"),
        ({"stages": ["m3rl"], "m3rl": {"group_size": 1}}, "group_size must be at least 2"),
        (
            {"stages": ["m3rl"], "m3rl": {"rewards": {"math": {"format": -1}}}},
            "weight must be 0 or more",
        ),
        ({"stages": ["search"], "search": {"rewards": {"search": {"nope": 1}}}}, "unknown reward"),
        ({"stages": ["sft"], "sft": {"model": "x"}}, "chains models and folders"),
        ({"stages": ["sft"], "eval": {"max_tokens": "many"}}, "max_tokens"),
        ({"stages": ["sft"], "extra": 1}, r"unknown keys \['extra'\]"),
        ({"stages": ["efficient", "efficient"]}, "listed twice"),
        ({"stages": ["sft"], "data": {"search_train": -1}}, "search_train"),
        ({"stages": ["sft"], "data": {"output": "x"}}, "uses OUTPUT/data"),
        ({"stages": ["sft"], "data": {"nope": 1}}, "nope"),
        ({"stages": ["m3rl"], "rl_data": {"jailbreak_fraction": 0.5}}, "'data' section"),
        ({"stages": ["m3rl"], "data": {}, "rl_data": {"output": "x"}}, "OUTPUT/rl-data"),
        ({"stages": ["m3rl"], "data": {}, "rl_data": {"jailbreak_fraction": 2}}, "jailbreak"),
    ],
)
def test_recipe_errors_come_before_any_stage_runs(
    tmp_path: Path, data: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "_evaluate", lambda *a: pytest.fail("nothing may run"))
    with pytest.raises(ConfigError, match=message):
        run_pipeline(_recipe(tmp_path, data))


def test_stages_are_chained_in_order(tmp_path: Path) -> None:
    recipe = _recipe(
        tmp_path,
        {
            "output": str(tmp_path / "out"),
            "model": "base-model",
            "stages": ["sft", "m3rl", "efficient"],
            "m3rl": {"max_steps": 7},
        },
    )
    p = load_pipeline(recipe)
    assert p.configs["sft"].model == "base-model"
    assert p.configs["m3rl"].model == str(tmp_path / "out" / "sft")
    assert p.configs["m3rl"].max_steps == 7
    assert p.configs["efficient"].model == str(tmp_path / "out" / "m3rl")
    assert p.configs["efficient"].stage == "efficient"


def test_a_data_section_is_the_dataset_of_every_stage_but_search(tmp_path: Path) -> None:
    out = tmp_path / "out"
    recipe = _recipe(
        tmp_path,
        {
            "output": str(out),
            "stages": ["sft", "m3rl", "search"],
            "data": {"search_train": 20, "math_train": 100},
            "m3rl": {"data": "cot-sft"},  # a section's own choice wins
        },
    )
    p = load_pipeline(recipe)
    assert p.data is not None
    assert (p.data.folder(), p.data.search_train, p.data.math_train) == (out / "data", 20, 100)
    assert Path(p.configs["sft"].data) == out / "data"
    assert p.configs["m3rl"].data == "cot-sft"
    assert p.configs["search"].data == "auto"  # element questions, not the CoT rows
    assert Path(p.eval_section["data"]) == out / "data"
    assert load_pipeline(_recipe(tmp_path, {"stages": ["sft"]})).data is None


def test_dotted_overrides_set_one_key_of_a_section(tmp_path: Path) -> None:
    recipe = _recipe(
        tmp_path,
        {"stages": ["sft", "search"], "sft": {"max_steps": 50, "lr": 1e-3}, "eval": {}},
    )
    p = load_pipeline(
        recipe,
        {
            "output": str(tmp_path / "short"),
            "sft.max_steps": 10,
            "sft.lora.r": 8,
            "search.search.max_turns": 2,
            "eval.capability_samples": 8,
            "data.search_train": 12,
        },
    )
    sft = p.configs["sft"]
    assert (sft.max_steps, sft.lr, sft.lora.r) == (10, 1e-3, 8)  # the rest of the section stays
    assert p.configs["search"].search.max_turns == 2
    assert p.eval_section["capability_samples"] == 8
    assert p.data is not None
    assert p.data.search_train == 12
    assert Path(p.configs["sft"].output) == tmp_path / "short" / "sft"
    for bad, message in (
        ({"stages.x": 1}, "not a recipe section"),
        ({"nope.max_steps": 1}, "not a recipe section"),
        ({"sft.nope": 1}, "nope"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_pipeline(recipe, bad)


def test_shipped_recipe_loads() -> None:
    p = load_pipeline(ROOT / "configs" / "safeladder.yaml")
    assert p.stages == ["sft", "m3rl", "efficient", "search"]


def _finished_run(config: Any) -> dict[str, Any]:
    """What a stage leaves when it has trained to the end (run.json, config.json, metrics)."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(config.identity(), sort_keys=True))
    (out / "config.json").write_text("{}")
    (out / "metrics.json").write_text(json.dumps({"steps": config.max_steps}))
    return {"steps": config.max_steps}


def _children(train: Any, evaluate: Any, calibrate: Any = lambda command: 0) -> Any:
    """A stand-in for ``pipeline._run``: a stage's child (``<stage> --config FILE``) is
    ``train`` of the config read back from that file, as the CLI reads it; ``calibrate ...``
    is ``calibrate``; any other is ``evaluate``."""
    from safework.training.rl import RLConfig
    from safework.training.sft import SFTConfig

    def run(command: list[str]) -> int:
        if "calibrate" in command:
            return calibrate(command)
        if "--config" not in command:
            return evaluate(command)
        at = command.index("--config")
        cls = SFTConfig if command[at - 1] == "sft" else RLConfig
        train(load_config(cls, command[at + 1]))
        return 0

    return run


def _eval_recorder(evaluated: list[str], metrics: Any = lambda n: {}) -> Any:
    """A stand-in for an eval child: notes the label and writes a report with the recipe's
    eval settings (the child's ``KEY=JSON`` arguments) and ``metrics(evals so far)``."""

    def run(command: list[str]) -> int:
        args = dict(a.split("=", 1) for a in command if "=" in a)
        evaluated.append(args["label"])
        folder = Path(args["output"]) / args["label"]
        folder.mkdir(parents=True, exist_ok=True)
        plain = ("model", "label", "output")  # the rest are the recipe's eval keys, as JSON
        settings = {k: json.loads(v) for k, v in args.items() if k not in plain}
        report = {
            "model": args["model"],
            "summary": {"safety": 0.5},
            "metrics": metrics(len(evaluated)),
            "config": settings,
        }
        (folder / "report.json").write_text(json.dumps(report))
        return 0

    return run


def _train_recorder(trained: list[str]) -> Any:
    """A stand-in for a stage's training that notes the stage and leaves it finished."""

    def fake_train(config: Any) -> dict[str, Any]:
        trained.append(getattr(config, "stage", "sft"))  # an SFT config names no stage
        return _finished_run(config)

    return fake_train


def test_rerun_skips_finished_stages_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages and evals are replaced by recorders; the second run trains and evaluates
    nothing again."""
    trained: list[str] = []
    evaluated: list[str] = []

    def capability(n: int) -> dict[str, Any]:
        right = 10 * min(n, 4)  # each point gets 10 more right, up to 40/40
        return {"capability": {"accuracy": {"rate": right / 40, "k": right, "n": 40}}}

    fake_eval_cli = _eval_recorder(evaluated, capability)

    monkeypatch.setattr(pipeline, "_run", _children(_train_recorder(trained), fake_eval_cli))
    recipe = _recipe(
        tmp_path,
        {
            "output": str(tmp_path / "out"),
            "model": str(tmp_path),
            "stages": ["m3rl", "efficient"],
            "m3rl": {"max_steps": 3},
            "efficient": {"max_steps": 2},
        },
    )
    first = run_pipeline(recipe)
    assert trained == ["m3rl", "efficient"]
    assert evaluated == ["base", "m3rl", "efficient"]
    assert first["stages"]["m3rl"]["eval"] == {"safety": 0.5}
    steps = json.loads((tmp_path / "out" / "eval" / "effects.json").read_text())
    assert [(s["before"], s["after"]) for s in steps] == [("base", "m3rl"), ("m3rl", "efficient")]
    assert steps[0]["effects"][0]["metric"] == "capability levels"
    assert (steps[0]["effects"][0]["before"], steps[0]["effects"][0]["after"]) == (
        {"k": 10, "n": 40},
        {"k": 20, "n": 40},
    )
    table = Path(first["effects"]).read_text()
    assert "| capability levels | 10/40 | 20/40 | +25.0 |" in table
    (tmp_path / "out" / "eval" / "trajectory.json").unlink(missing_ok=True)
    run_pipeline(recipe)
    assert trained == ["m3rl", "efficient"]  # nothing trained twice
    assert evaluated == ["base", "m3rl", "efficient"]  # nor evaluated
    # ... and the kept reports' points are back in a lost trajectory, in order
    points = load_trajectory(tmp_path / "out" / "eval" / "trajectory.json")
    assert [(p["label"], p["safety"]) for p in points] == [
        ("base", 0.5),
        ("m3rl", 0.5),
        ("efficient", 0.5),
    ]
    # A checkpoint whose files changed after its report (a stage run again) is evaluated again.
    later = time.time() + 60
    os.utime(tmp_path / "out" / "m3rl" / "config.json", (later, later))
    run_pipeline(recipe)
    assert trained == ["m3rl", "efficient"]
    assert evaluated == ["base", "m3rl", "efficient", "m3rl"]
    # Other eval settings in the recipe: every point is evaluated again, once.
    earlier = time.time() - 60
    os.utime(tmp_path / "out" / "m3rl" / "config.json", (earlier, earlier))
    for _ in range(2):
        run_pipeline(recipe, {"eval.group_max_tokens": {"ifeval": 512}})
    assert evaluated == ["base", "m3rl", "efficient", "m3rl", "base", "m3rl", "efficient"]


def test_a_stage_is_trained_again_when_the_one_before_finished_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[str] = []

    def fake_eval_cli(command: list[str]) -> int:
        args = dict(a.split("=", 1) for a in command if "=" in a)
        folder = Path(args["output"]) / args["label"]
        folder.mkdir(parents=True, exist_ok=True)
        report = {"model": args["model"], "summary": {}, "metrics": {}}
        (folder / "report.json").write_text(json.dumps(report))
        return 0

    monkeypatch.setattr(pipeline, "_run", _children(_train_recorder(trained), fake_eval_cli))
    out = tmp_path / "out"
    recipe = _recipe(
        tmp_path,
        {"output": str(out), "model": str(tmp_path), "stages": ["m3rl", "efficient"]},
    )
    run_pipeline(recipe)
    assert trained == ["m3rl", "efficient"]
    # m3rl made again (say, by hand) after efficient had finished: efficient's start is gone
    now = time.time()
    os.utime(out / "efficient" / "metrics.json", (now - 120, now - 120))
    os.utime(out / "m3rl" / "metrics.json", (now - 60, now - 60))
    run_pipeline(recipe)
    assert trained == ["m3rl", "efficient", "efficient"]
    run_pipeline(recipe)
    assert trained == ["m3rl", "efficient", "efficient"]


def test_a_rebuilt_dataset_makes_every_stage_and_eval_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base point too: its questions are the dataset's dev rows, its capability questions
    are kept off the dataset's train rows, so a report from before the dataset is not kept."""
    trained: list[str] = []
    evaluated: list[str] = []

    fake_eval_cli = _eval_recorder(evaluated)

    import safework.training.data as data_mod

    out = tmp_path / "out"
    dataset = out / "data"
    dataset.mkdir(parents=True)
    (dataset / "manifest.json").write_text("{}")
    past = time.time() - 600
    os.utime(dataset / "manifest.json", (past, past))
    monkeypatch.setattr(data_mod, "ensure_built", lambda config: dataset)
    monkeypatch.setattr(pipeline, "_run", _children(_train_recorder(trained), fake_eval_cli))
    recipe = _recipe(
        tmp_path,
        {"output": str(out), "model": str(tmp_path), "stages": ["m3rl"], "data": {}},
    )
    run_pipeline(recipe)
    run_pipeline(recipe)
    assert (trained, evaluated) == (["m3rl"], ["base", "m3rl"])
    later = time.time() + 60
    os.utime(dataset / "manifest.json", (later, later))  # the dataset built again
    run_pipeline(recipe)
    assert (trained, evaluated) == (["m3rl", "m3rl"], ["base", "m3rl", "base", "m3rl"])


def test_every_help_page_prints(capsys: pytest.CaptureFixture[str]) -> None:
    commands = ("data", "sft", "eval", "rl", "analyze", "pipeline", "effects", "value")
    for argv in (["--help"], *([c, "--help"] for c in (*commands, "calibrate"))):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0, argv
    assert "95% interval" in capsys.readouterr().out


def test_a_stage_runs_in_its_own_process_from_its_whole_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []
    trained: list[Any] = []

    def record(command: list[str]) -> int:
        commands.append(command)
        return 0

    recipe = _recipe(
        tmp_path,
        {"output": str(tmp_path / "out"), "model": str(tmp_path), "stages": ["sft", "m3rl"]},
    )
    monkeypatch.setattr(pipeline, "_run", _children(trained.append, record))
    p = load_pipeline(recipe)
    for name in ("sft", "m3rl"):
        _finished_run(p.configs[name])  # what the child leaves behind
        assert pipeline._train_stage(p, name, p.configs[name]) == {
            "steps": p.configs[name].max_steps
        }
    assert trained == [p.configs["sft"], p.configs["m3rl"]]  # read back equal, field by field
    monkeypatch.setattr(pipeline, "_run", lambda command: 3)
    with pytest.raises(ConfigError, match="stage m3rl failed with exit code 3"):
        pipeline._train_stage(p, "m3rl", p.configs["m3rl"])


def test_cli_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline", str(tmp_path / "missing.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_an_analyze_section_adds_mi_peaks_after_every_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``analyze mi`` runs (as a child process, here recorded) after each eval; its summary
    joins the report and the trajectory point, ``mi_peaks.md`` tables them, and a rerun keeps
    every ``mi.json``."""
    analysed: list[str] = []

    def fake_cli(command: list[str]) -> int:
        args = dict(a.split("=", 1) for a in command if "=" in a)
        if "analyze" in command:
            analysed.append(args["model"])
            assert args["n"] == "8"  # the recipe's section reaches the command
            eval_folder = Path(args["output"]).parent
            assert json.loads(args["answers"]) == str(eval_folder / "samples.jsonl")
            folder = Path(args["output"])
            folder.mkdir(parents=True, exist_ok=True)
            k = 2 * len(analysed)
            part = {
                "peak_rate": {"rate": 0.1, "k": 10, "n": 100},
                "safety_share": {"rate": k / 10, "k": k, "n": 10},
                "words": [["remember", k], ["\n", 1], ["|", 1]],
            }
            mi = {"model": args["model"], "estimator": "gaussian", "summary": {"30": {"all": part}}}
            (folder / "mi.json").write_text(json.dumps(mi))
        else:
            folder = Path(args["output"]) / args["label"]
            folder.mkdir(parents=True, exist_ok=True)
            report = {"model": args["model"], "summary": {"safety": 0.5}, "metrics": {}}
            (folder / "report.json").write_text(json.dumps(report))
            (folder / "samples.jsonl").write_text("")  # the eval's answers, analysed as given
            points = [{"label": label} for label in ("base", "m3rl")]
            (Path(args["output"]) / "trajectory.json").write_text(json.dumps({"points": points}))
        return 0

    monkeypatch.setattr(pipeline, "_run", _children(_finished_run, fake_cli))
    recipe = _recipe(
        tmp_path,
        {
            "output": str(tmp_path / "out"),
            "model": str(tmp_path),
            "stages": ["m3rl"],
            "m3rl": {"max_steps": 3},
            "analyze": {"n": 8},
        },
    )
    summary = run_pipeline(recipe)
    assert analysed == [str(tmp_path), str(tmp_path / "out" / "m3rl")]
    report = json.loads((tmp_path / "out" / "eval" / "m3rl" / "report.json").read_text())
    assert report["mi_peaks"]["layers"]["30"]["all"]["safety_share"]["k"] == 4
    points = json.loads((tmp_path / "out" / "eval" / "trajectory.json").read_text())["points"]
    assert points[1]["mi_peaks"] == report["mi_peaks"]
    assert (tmp_path / "out" / "eval" / "trajectory.png").is_file()  # redrawn with the peaks
    table = Path(summary["mi_peaks"]).read_text()
    # a newline or a pipe at a peak must not break the table's rows
    assert "| base | 30 | all | 10/100 | 2/10 | remember (2), \\n (1), \\| (1) |" in table
    assert "| m3rl | 30 | all | 10/100 | 4/10 | remember (4), \\n (1), \\| (1) |" in table
    assert len(table.splitlines()) == 6  # title, blank line, header, rule, two rows
    run_pipeline(recipe)
    assert len(analysed) == 2  # kept, not analysed again


def test_an_analyze_section_is_checked_with_the_recipe(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"stages": ["m3rl"], "analyze": {"estimator": "knn"}})
    with pytest.raises(ConfigError, match="estimator 'knn'"):
        load_pipeline(recipe)
    recipe = _recipe(tmp_path, {"stages": ["m3rl"], "analyze": {"model": "x"}})
    with pytest.raises(ConfigError, match="analyze section sets 'model'"):
        load_pipeline(recipe)


_LEAVES_A_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(grandchild.pid))
time.sleep(float(sys.argv[2]))
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for init to reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _grandchild(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not path.is_file() or not path.read_text():
        assert time.monotonic() < deadline, "the child never started its grandchild"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_child_leaves_nothing_running_behind(tmp_path: Path) -> None:
    """What a stage child started (vLLM's engine core, here a sleeper) dies with it, even
    when the child exits without stopping it."""
    pid_file = tmp_path / "pid"
    command = [sys.executable, "-c", _LEAVES_A_GRANDCHILD, str(pid_file), "0"]
    assert pipeline._run(command) == 0
    assert _gone(_grandchild(pid_file))
    assert pipeline._run([sys.executable, "-c", "raise SystemExit(5)"]) == 5


def test_stopping_the_pipeline_stops_its_child_group(tmp_path: Path) -> None:
    """SIGTERM to the pipeline (how a ladder is stopped) ends the running child's group
    and exits 143, instead of leaving the stage training on."""
    pid_file = tmp_path / "pid"
    command = [sys.executable, "-c", _LEAVES_A_GRANDCHILD, str(pid_file), "60"]
    handler = signal.getsignal(signal.SIGTERM)

    def stop_once_started() -> None:
        _grandchild(pid_file)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_started, daemon=True).start()
    with pytest.raises(SystemExit) as stopped:
        pipeline._run(command)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert _gone(_grandchild(pid_file))
    assert signal.getsignal(signal.SIGTERM) == handler  # put back


def test_the_search_checkpoint_is_calibrated_after_its_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So ``safework serve --model OUTPUT/search`` finds a map: ``calibrate --if-missing``
    on the search stage's folder with the recipe's search backend, after that eval, on every
    run (a kept map costs nothing); a failed fit stops the pipeline."""
    order: list[str] = []
    evaluated: list[str] = []
    eval_cli = _eval_recorder(evaluated)

    def fake_eval(command: list[str]) -> int:
        order.append("eval")
        return eval_cli(command)

    def fake_fit(command: list[str]) -> int:
        order.append(" ".join(command[command.index("calibrate") :]))
        return 0

    monkeypatch.setattr(pipeline, "_run", _children(_finished_run, fake_eval, fake_fit))
    out = tmp_path / "out"
    recipe = _recipe(
        tmp_path,
        {
            "output": str(out),
            "model": str(tmp_path),
            "stages": ["efficient", "search"],
            "eval": {"search_backend": "local:builtin"},
        },
    )
    run_pipeline(recipe)
    fit = f"calibrate --model {out / 'search'} --if-missing --backend local:builtin"
    assert order == ["eval", "eval", "eval", fit]
    run_pipeline(recipe)
    assert order == ["eval", "eval", "eval", fit, fit]  # reports kept, the fit asked again
    monkeypatch.setattr(pipeline, "_run", lambda command: 2 if "calibrate" in command else 0)
    with pytest.raises(ConfigError, match=r"calibrating .*search failed with exit code 2"):
        run_pipeline(recipe)
