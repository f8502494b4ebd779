"""The fan-out tooling's pieces, on inputs written by hand; test_sweep.py runs the whole of it with DVC."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tools import fanout, sweep

ROOT = Path(__file__).resolve().parents[1]


def test_a_grid_file_holds_one_run_per_line_and_comments(tmp_path):
    grid = tmp_path / "grid.txt"
    grid.write_text("# T sweep\n\ndistill.temperature=2 distill.alpha=0.5  # the first\n  distill.temperature=4\n")
    assert fanout.read_grid(grid) == [["distill.temperature=2", "distill.alpha=0.5"], ["distill.temperature=4"]]


@pytest.mark.parametrize("text, message", [
    ("distill.temperature=2\ndistill.temperature 4\n", "grid.txt:2: 'distill.temperature' is not a key=value params override"),
    ("# nothing\n", "grid.txt: no runs in the grid"),
])
def test_a_bad_grid_is_one_line(tmp_path, capsys, text, message):
    grid = tmp_path / "grid.txt"
    grid.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        fanout.read_grid(grid)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"error: {grid.parent}/{message}\n"


def test_what_the_sweep_prints_is_a_grid(tmp_path):
    grid = tmp_path / "grid.txt"
    runs = [("mlp", 0.01, 1, 2.0, 0.5), ("cnn", 1.0, 0, 8.0, 0.0)]
    grid.write_text("".join(" ".join(sweep.overrides(*run)) + "\n" for run in runs))
    assert fanout.read_grid(grid) == [
        ["teacher.arch=mlp", "teacher.batch_size=256", "teacher.epochs=50", "student.train_fraction=0.01",
         "student.seed=1", "distill.temperature=2", "distill.alpha=0.5"],
        ["teacher.arch=cnn", "student.train_fraction=1.0", "student.seed=0", "distill.temperature=8", "distill.alpha=0"],
    ]


def test_run_names_are_stable_git_refs_that_tell_runs_apart():
    first, second = ["distill.temperature=2"], ["distill.temperature=4"]
    assert fanout.run_name(first) == fanout.run_name(list(first)) != fanout.run_name(second)
    for name in (fanout.run_name(first), fanout.run_name(second)):
        subprocess.run(["git", "check-ref-format", f"refs/exps/{name}"], check=True)


LOCK = {"stages": {
    "check_params": {"params": {"params.yaml": {"seed": 42, "teacher": {}, "student": {}}},
                     "outs": [{"path": "data/params.checked"}]},
    "prepare": {"deps": [{"path": "data/params.checked"}], "params": {"params.yaml": {"seed": 42, "prepare.subset": None}},
                "outs": [{"path": "data/prepared"}]},
    "train@teacher": {"deps": [{"path": "data/params.checked"}, {"path": "data/prepared"}, {"path": "stages/train.py"}],
                      "params": {"params.yaml": {"train.strategy": "auto", "teacher": {"arch": "cnn"}}},
                      "outs": [{"path": "models/teacher.weights.h5"}]},
    "train@student": {"deps": [{"path": "data/params.checked"}, {"path": "data/prepared"}, {"path": "stages/train.py"}],
                      "params": {"params.yaml": {"student": {"learning_rate": 0.001}}},
                      "outs": [{"path": "models/student.weights.h5"}]},
    "distill": {"deps": [{"path": "data/prepared"}, {"path": "models/teacher.weights.h5"}],
                "params": {"params.yaml": {"distill.temperature": 1}}, "outs": [{"path": "models/distilled.weights.h5"}]},
}}


def test_a_stage_reads_its_own_params_and_those_upstream_but_not_the_checks():
    # check_params lists the whole file, but its marker never changes: no run's setting reaches on through it.
    assert fanout.stage_params(LOCK, "train@teacher") == {"seed", "prepare.subset", "train.strategy", "teacher"}
    assert "distill.temperature" not in fanout.stage_params(LOCK, "train@teacher")
    assert fanout.stage_params(LOCK, "distill") >= {"teacher", "distill.temperature"}


def test_prepare_runs_each_shared_setting_once_in_grid_order():
    grid = [["teacher.arch=mlp", "distill.temperature=2"], ["distill.temperature=4"],
            ["teacher.arch=mlp", "student.learning_rate=0.01", "distill.temperature=8"],
            ["teachers.x=1", "teacher.dropout=0.1", "student.learning_rate=0.01"],
            ["prepare.subset=100", "student.learning_rate=0.01"], ["train.jit_compile=false"]]
    assert fanout.shared_runs(grid, LOCK) == [
        (["train@teacher"], ["teacher.arch=mlp"]),
        # The teacher's setting was made by the first line; the student's is new, and runs alone.
        (["train@student"], ["student.learning_rate=0.01"]),
        (["train@teacher"], ["teacher.dropout=0.1"]),
        # prepare.subset reaches both stages: one run trains both on the smaller set.
        (["train@teacher", "train@student"], ["prepare.subset=100", "student.learning_rate=0.01"]),
    ]


def test_queue_status_is_read_run_by_run():
    status = ("Task     Name              Created    Status\n"
              "75f5582  run-ec765c959792  08:18 AM   Failed\n"
              "bf3a3f7  run-b2bc072b09af  08:18 AM   Success\n"
              "c0ffee1  run-0123456789ab  08:19 AM   Running\n\n"
              "Worker status: 1 active, 0 idle\n")
    assert fanout.queue_states(status) == {
        "run-ec765c959792": "Failed", "run-b2bc072b09af": "Success", "run-0123456789ab": "Running"}


def test_the_workflow_runs_the_steps_the_fan_out_test_runs():
    workflow = yaml.safe_load((ROOT / ".github/workflows/sweep.yml").read_text())
    setup = yaml.safe_load((ROOT / ".github/actions/sweep-setup/action.yml").read_text())
    jobs = workflow["jobs"]
    commands = {name: " ".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    assert "tools.fanout prepare grid.txt" in commands["prepare"]
    assert "tools.sweep \"$PHASE\" --dry-run > grid.txt" in commands["prepare"]
    assert "tools.fanout work grid.txt --slice ${{ matrix.slice }}" in commands["work"]
    assert "tools.fanout collect" in commands["collect"]
    assert jobs["work"]["needs"] == "prepare" and set(jobs["collect"]["needs"]) == {"prepare", "work"}
    # Every job sets up the same way: the locked dependencies and the shared DVC remote, as the test's clones do.
    for job in jobs.values():
        assert any(step.get("uses") == "./.github/actions/sweep-setup" for step in job["steps"])
    setup_commands = " ".join(step.get("run", "") for step in setup["runs"]["steps"])
    assert "make setup" in setup_commands
    assert 'dvc remote add --local --default shared "$DVC_REMOTE_URL"' in setup_commands
