"""End to end: each kind of params change reruns exactly the stages downstream of it, as docs/params.md's table says.

DVC's status tells what would rerun, which costs a second instead of a pipeline run. test_sweep.py
makes two of these changes for real: a new temperature, whose run it checks reran exactly the stages
named here, and a student change, trained at the rate DVC writes in exponent form.
"""

import json
import sys

import pytest
from dvc_repo import ALL_STAGES, stages_run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("section, change, expected", [
    ("distill", {"temperature": 8}, {"check_params", "distill", "evaluate", "export"}),
    ("distill", {"transfer": "all"}, {"check_params", "distill", "evaluate", "export"}),
    ("distill", {"views": "consistent", "mixup": False}, {"check_params", "distill", "evaluate", "export"}),
    # The transfer set is a student param like the rate: both students retrain, the teacher does not.
    ("student", {"learning_rate": 1e-05, "train_fraction": 0.5},
     {"check_params", "train@student", "distill", "evaluate", "export"}),
    ("teacher", {"arch": "mlp"}, {"check_params", "train@teacher", "distill", "evaluate", "export"}),
    ("student", {"arch": "cnn"}, {"check_params", "train@student", "distill", "evaluate", "export"}),
    ("evaluate", {"ece_bins": 10}, {"check_params", "evaluate"}),
    ("prepare", {"val_size": 400}, ALL_STAGES),
])
def test_a_param_change_would_rerun_exactly_its_downstream(repo, reproduced, section, change, expected):
    repo.update_params(**{section: change})
    try:
        assert stages_to_rerun(repo) == expected
    finally:
        repo.run("git", "checkout", "--", "params.yaml")


def stages_to_rerun(repo) -> set[str]:
    """What `dvc repro` would run, from `dvc status` without running anything: the stages whose params
    or deps changed, and every stage downstream of them. check_params' marker never changes, so
    nothing reruns because it did."""
    stages = repo.lock_entries()
    rerun, pending = set(), list(json.loads(repo.dvc("status", "--json")))
    while pending:
        name = pending.pop()
        if name in rerun:
            continue
        rerun.add(name)
        if name != "check_params":
            outs = {out["path"] for out in stages[name].get("outs", [])}
            pending += [other for other, entry in stages.items() if outs & {dep["path"] for dep in entry["deps"]}]
    return rerun


def test_a_cnn_student_trains_distils_evaluates_and_exports(repo, reproduced, restore):
    """`student.arch: cnn` gives both students the small CNN; the teacher is kept."""
    result = repo.attempt(sys.executable, "-m", "dvc", "exp", "run", "-S", "student.arch=cnn")
    assert result.returncode == 0, result.stderr[-3000:]
    assert stages_run(result.stdout) == {"check_params", "train@student", "distill", "evaluate", "export"}
    evaluation = json.loads(repo.read("metrics/evaluate.json"))
    assert evaluation["student"]["params"] == evaluation["distilled"]["params"] == 26_770
    assert evaluation["teacher"]["params"] == 824_746
    export = json.loads(repo.read("metrics/export.json"))
    for model in ("student", "distilled"):
        assert export[model]["saved_model"]["top1_agreement_with_keras"] == 1.0
        assert export[model]["int8.tflite"]["bytes"] < export["teacher"]["int8.tflite"]["bytes"]


def test_every_training_image_as_transfer_set_distils_on_a_tenth_of_the_labels(repo, reproduced, restore):
    """`distill.transfer: all` with 10% labelled: the soft term covers all 1,500 training images of the
    small repository, the hard term the 150 labelled ones, and only distill and what follows rerun."""
    result = repo.attempt(sys.executable, "-m", "dvc", "exp", "run", "-S", "distill.transfer=all",
                          "-S", "student.train_fraction=0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert stages_run(result.stdout) == {"check_params", "train@student", "distill", "evaluate", "export"}
    distilled = json.loads(repo.read("metrics/training/distilled.json"))
    assert distilled["train_examples"] == 1500 and distilled["labelled_examples"] == 150
    student = json.loads(repo.read("metrics/training/student.json"))
    assert student["train_examples"] == 150


def test_consistent_views_distil_with_the_teacher_in_the_step_and_repeat_bit_for_bit(repo, reproduced, restore):
    """`distill.views: consistent`: only distill and what follows rerun, and forcing distill again
    leaves its outputs' digests in dvc.lock as they were."""
    result = repo.attempt(sys.executable, "-m", "dvc", "exp", "run", "-S", "distill.views=consistent")
    assert result.returncode == 0, result.stderr[-3000:]
    assert stages_run(result.stdout) == {"check_params", "distill", "evaluate", "export"}
    distilled = json.loads(repo.read("metrics/training/distilled.json"))
    assert distilled["soft_loss"] > 0 and distilled["val_accuracy"] > 0.3  # chance is 0.1
    first = repo.lock_entries()["distill"]["outs"]
    repo.dvc("repro", "-f", "-s", "distill")
    assert repo.lock_entries()["distill"]["outs"] == first
