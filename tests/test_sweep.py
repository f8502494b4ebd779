"""End to end: a sweep queued with DVC runs in the background, and its runs become committed records.

Queued experiments run in a temporary copy that holds only what git tracks, as the shared repository does.
"""

import json
import sys

import pandas as pd
import pytest
from dvc_repo import stages_run

from tools import records

pytestmark = pytest.mark.e2e


def test_queued_runs_are_collected_and_a_failing_one_says_why(repo, reproduced, restore, tmp_path):
    repo.dvc("exp", "run", "--queue", "-S", "student.train_fraction=0.5", "-S", "distill.temperature=2,-1")
    finished = repo.run_queue()
    assert sorted(finished.values()) == ["Failed", "Success"], finished
    failed = next(name for name, state in finished.items() if state == "Failed")
    succeeded = next(name for name, state in finished.items() if state == "Success")
    # One bad cell fails with its one line and does not stop the others.
    assert "error: params.yaml: distill.temperature = -1 is invalid: input should be greater than 0" in repo.dvc(
        "queue", "logs", failed)
    # The teacher and the data come from the reproduced repository; only the students and what follows run.
    log = repo.dvc("queue", "logs", succeeded)
    assert stages_run(log) == {"check_params", "train@student", "distill", "evaluate", "export"}, log
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."  # the workspace was never touched

    runs_file = tmp_path / "runs.csv"
    repo.run(sys.executable, "-m", "tools.collect", "--runs", str(runs_file))
    runs = pd.read_csv(runs_file)
    shown = json.loads(repo.dvc("exp", "show", "--json"))
    experiments = {revision["name"]: revision["data"] for commit in shown for experiment in commit.get("experiments") or []
                   for revision in experiment["revs"]}
    # The committed run (the whole split) and the queued one that succeeded; the failed one is no record.
    assert sorted(runs[records.FRACTION]) == [0.5, 1.0] and failed not in set(runs["experiment"])
    row = runs[runs["experiment"] == succeeded].iloc[0]
    data = experiments[succeeded]
    assert row[records.TEMPERATURE] == 2
    evaluate = data["metrics"]["metrics/evaluate.json"]["data"]
    assert row["test.distilled.accuracy"] == evaluate["distilled"]["accuracy"]
    assert row["test.student.accuracy"] == evaluate["student"]["accuracy"]
    distilled = data["metrics"]["metrics/training/distilled.json"]["data"]
    assert (row[records.SELECT_ON], row[records.TIE_BREAK]) == (distilled["val_accuracy"], distilled["val_hard_loss"])
    # Half of the 1500 training images, class by class.
    assert data["metrics"]["metrics/training/student.json"]["data"]["train_examples"] == 750
