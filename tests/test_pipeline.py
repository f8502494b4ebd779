"""End to end: the real `dvc` on a copy of this repository, on a small stratified subset of the real data.

Each step checks which stages DVC actually ran, so the cache semantics in dvc.yaml are tested as users meet them.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("dvc.lock", "data", "models", "metrics")
ALL_STAGES = {"prepare", "train@teacher", "train@student", "distill", "evaluate"}


def project_files() -> list[str]:
    """Tracked and new files as git sees them, minus pipeline outputs: the copy starts clean."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    return [name for name in listed if name.split("/")[0] not in OUTPUTS and (ROOT / name).is_file()]


class Repo:
    def __init__(self, path: Path):
        self.path = path
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        }

    def run(self, *command: str) -> str:
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


def stages_run(dvc_output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", dvc_output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    path = tmp_path_factory.mktemp("pipeline")
    for name in project_files():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, path / name)
    small = yaml.safe_load((ROOT / "params.yaml").read_text())
    small["prepare"].update(subset=2000, val_size=500)
    for model in ("teacher", "student"):
        small[model].update(epochs=1)
    (path / "params.yaml").write_text(yaml.safe_dump(small, sort_keys=False))
    repo = Repo(path)
    repo.run("git", "init", "-q", "-b", "main")
    repo.commit("project")
    return repo


@pytest.fixture(scope="module")
def reproduced(repo) -> str:
    output = repo.dvc("repro")
    repo.commit("reproduce")
    return output


def test_repro_runs_every_stage_and_writes_outputs(repo, reproduced):
    assert stages_run(reproduced) == ALL_STAGES
    for model in ("teacher", "student", "distilled"):
        assert (repo.path / f"models/{model}.weights.h5").is_file()
    report = json.loads(repo.read("metrics/evaluate.json"))
    assert set(report) == {"teacher", "student", "distilled"}
    assert report["teacher"]["params"] == 567_434 and report["student"]["params"] == 101_770
    for scores in report.values():
        assert 0.1 < scores["accuracy"] <= 1 and scores["nll"] > 0 and 0 <= scores["ece"] <= 1
    for student in ("student", "distilled"):
        assert 0 <= report[student]["agreement"] <= 1 and report[student]["kl_to_teacher"] >= 0
    teacher_training = json.loads(repo.read("metrics/training/teacher.json"))
    assert teacher_training["epochs_run"] == teacher_training["best_epoch"] == 1
    predictions = repo.read("metrics/predictions/teacher.csv").decode().splitlines()
    assert predictions[0] == "actual,predicted" and len(predictions) == 1 + 333  # round(10000 * 2000 / 60000)
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def test_second_repro_is_a_no_op(repo, reproduced):
    assert stages_run(repo.dvc("repro")) == set()


def test_plots_render(repo, reproduced):
    rendered = json.loads(repo.dvc("plots", "show", "--json"))
    assert set(rendered) == {"data"}, rendered.get("errors")
    plots = rendered["data"]
    assert set(plots) == {"Test confusion matrix", "Test accuracy per class"}
    confusion = plots["Test confusion matrix"][0]["content"]
    rows = confusion["data"]["values"]
    assert {row["filename"] for row in rows} == {"teacher.csv", "student.csv", "distilled.csv"}
    assert len(rows) == 3 * 333 and {"actual", "predicted"} <= set(rows[0])


def test_new_temperature_reruns_only_distill_and_evaluate(repo, reproduced):
    before = json.loads(repo.read("metrics/evaluate.json"))
    output = repo.dvc("exp", "run", "-S", "distill.temperature=8")
    assert stages_run(output) == {"distill", "evaluate"}
    after = json.loads(repo.read("metrics/evaluate.json"))
    assert after["teacher"] == before["teacher"] and after["student"] == before["student"]
    assert after["distilled"] != before["distilled"]

    repo.commit("temperature 8")
    diff = json.loads(repo.dvc("metrics", "diff", "HEAD~1", "HEAD", "--json"))
    changed = diff["metrics/evaluate.json"]
    assert changed and all(key.startswith("distilled.") for key in changed)
    assert changed["distilled.accuracy"]["new"] == after["distilled"]["accuracy"]


@pytest.mark.parametrize(
    "change, expected",
    [
        ("distill.alpha=0.5", {"distill", "evaluate"}),
        ("student.learning_rate=0.002", {"train@student", "distill", "evaluate"}),
        ("teacher.learning_rate=0.002", {"train@teacher", "distill", "evaluate"}),
        ("prepare.val_size=400", ALL_STAGES),
    ],
)
def test_a_param_change_reruns_exactly_its_downstream(repo, reproduced, change, expected):
    assert stages_run(repo.dvc("exp", "run", "-S", change)) == expected
    # Back to the committed state for the next case: git for params, lock and metrics, DVC for the rest.
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")


def test_forced_repro_leaves_dvc_lock_byte_identical(repo, reproduced):
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."
    before = {name: repo.read(name) for name in ("dvc.lock", "metrics/evaluate.json", "models/distilled.weights.h5")}
    assert stages_run(repo.dvc("repro", "-f")) == ALL_STAGES
    for name, content in before.items():
        assert repo.read(name) == content, f"{name} changed after dvc repro -f"
