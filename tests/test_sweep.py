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


def test_queued_runs_are_collected_into_the_records(repo, reproduced, restore, tmp_path):
    repo.dvc("exp", "run", "--queue", "-S", "student.train_fraction=0.5", "-S", "student.seed=0,1",
             "-S", "distill.temperature=2")
    finished = repo.run_queue()
    assert sorted(finished.values()) == ["Success", "Success"], finished
    for name in finished:
        log = repo.dvc("queue", "logs", name)
        # The teacher and the data come from the reproduced repository; only the students and evaluate run.
        assert stages_run(log) == {"check_params", "train@student", "distill", "evaluate", "export"}, log

    runs_file = tmp_path / "runs.csv"
    repo.run(sys.executable, "-m", "tools.collect", "--runs", str(runs_file))
    runs = pd.read_csv(runs_file)
    shown = json.loads(repo.dvc("exp", "show", "--json"))
    experiments = {revision["name"]: revision["data"] for commit in shown for experiment in commit.get("experiments") or []
                   for revision in experiment["revs"]}
    # The committed run (seed 42, the whole split) and the two queued ones.
    assert sorted(runs[records.SEED]) == [0, 1, 42]
    for name in finished:
        row = runs[runs["experiment"] == name].iloc[0]
        data = experiments[name]
        assert (row[records.FRACTION], row[records.TEMPERATURE]) == (0.5, 2)
        evaluate = data["metrics"]["metrics/evaluate.json"]["data"]
        assert row["test.distilled.accuracy"] == evaluate["distilled"]["accuracy"]
        assert row["test.student.accuracy"] == evaluate["student"]["accuracy"]
        distilled = data["metrics"]["metrics/training/distilled.json"]["data"]
        assert (row[records.SELECT_ON], row[records.TIE_BREAK]) == (distilled["val_accuracy"], distilled["val_hard_loss"])
        # Half of the 1500 training images, class by class.
        assert data["metrics"]["metrics/training/student.json"]["data"]["train_examples"] == 750
