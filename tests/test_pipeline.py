"""End to end: the real `dvc` on a copy of this repository, on a small stratified subset of the real data.

Each step checks which stages DVC actually ran, so the cache semantics in dvc.yaml are tested as users meet them.
The repository fixtures are in conftest.py; test_pipeline_params.py checks what each param change
reruns, test_pipeline_failures.py what goes wrong, and test_sweep.py what a new temperature reruns
and changes (`dvc exp run`, `dvc metrics diff`).
"""

import json

import pytest
from dvc_repo import ALL_STAGES, Repo, stages_run

pytestmark = pytest.mark.e2e


def test_repro_runs_every_stage_and_writes_outputs(repo, reproduced):
    assert stages_run(reproduced) == ALL_STAGES
    for model in ("teacher", "student", "distilled"):
        assert (repo.path / f"models/{model}.weights.h5").is_file()
    report = json.loads(repo.read("metrics/evaluate.json"))
    assert set(report) == {"teacher", "student", "distilled"}
    # the CNN teacher (its count is worked out in test_models.py) and the 784-128-10 student
    assert report["teacher"]["params"] == 824_746 and report["student"]["params"] == 101_770
    for scores in report.values():
        assert 0.1 < scores["accuracy"] <= 1 and scores["nll"] > 0 and 0 <= scores["ece"] <= 1
    for student in ("student", "distilled"):
        assert 0 <= report[student]["agreement"] <= 1 and report[student]["kl_to_teacher"] >= 0
    teacher_training = json.loads(repo.read("metrics/training/teacher.json"))
    assert teacher_training["epochs_run"] == teacher_training["best_epoch"] == 1
    # 12 steps leave the CNN teacher's batch norm mostly at its start: settled before it was saved.
    assert teacher_training["batch_norm_settled"] is True
    student_training = json.loads(repo.read("metrics/training/student.json"))
    val_curve = repo.read("metrics/curves/student/plots/metrics/eval/loss.tsv").decode().splitlines()
    assert val_curve[0] == "step\tloss" and float(val_curve[1].split("\t")[1]) == pytest.approx(student_training["val_loss"], abs=1e-6)
    for term in ("hard_loss", "soft_loss"):
        assert (repo.path / f"metrics/curves/distilled/plots/metrics/eval/{term}.tsv").is_file()
    predictions = repo.read("metrics/predictions/teacher.csv").decode().splitlines()
    assert predictions[0] == "actual,predicted" and len(predictions) == 1 + 333  # round(10000 * 2000 / 60000)
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def test_second_repro_is_a_no_op(repo, reproduced):
    assert stages_run(repo.dvc("repro")) == set()


def test_plots_render(repo, reproduced):
    rendered = json.loads(repo.dvc("plots", "show", "--json"))
    assert set(rendered) == {"data"}, rendered.get("errors")
    plots = rendered["data"]
    assert set(plots) == {
        "Loss per epoch", "Accuracy per epoch", "Distillation loss per epoch",
        "Test confusion matrix", "Test accuracy per class",
    }
    curves = plots["Accuracy per epoch"][0]["content"]["data"]["values"]
    assert len(curves) == 6 and {row["step"] for row in curves} == {"0"}  # 3 models x (train, val), 1 epoch
    confusion = plots["Test confusion matrix"][0]["content"]
    rows = confusion["data"]["values"]
    assert {row["filename"] for row in rows} == {"teacher.csv", "student.csv", "distilled.csv"}
    assert len(rows) == 3 * 333 and {"actual", "predicted"} <= set(rows[0])


def test_a_fresh_clone_reproduces_the_commit_byte_for_byte(reproduced_template, tmp_path):
    # A clone holds what git tracks and nothing else: no outputs, no DVC cache, no remote.
    template = Repo(reproduced_template.path)
    template.run("git", "clone", "-q", str(template.path), str(tmp_path / "clone"))
    clone = Repo(tmp_path / "clone")
    assert stages_run(clone.dvc("repro")) == ALL_STAGES - {"check_params"}  # its marker is committed
    # dvc.lock holds every output's hash, and the metrics are committed: both unchanged.
    assert clone.run("git", "status", "--porcelain") == ""
    for name in ("models/teacher.weights.h5", "models/distilled.weights.h5", "models/export/distilled/int8.tflite",
                 "models/export/teacher/saved_model/saved_model.pb"):
        assert clone.read(name) == template.read(name), f"{name} differs on a fresh clone"
