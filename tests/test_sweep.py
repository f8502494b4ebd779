"""End to end: a sweep fanned out as CI runs it (.github/workflows/sweep.yml), simulated on one machine.

A bare git repository stands in for the git host and a local folder for the S3, GCS or SSH remote,
which holds the commit's outputs, as after the `dvc push` that goes with a commit (test_pipeline.py
reproduces them from scratch on a fresh clone). A prepare clone runs the shared stages, two worker
clones run their slices of the grid at the same time, and a collector clone turns what they pushed
into the committed records and the report.

Its runs are also the suite's real runs of a params change: a new temperature (distill and what
follows rerun, and `dvc metrics diff` shows the distilled student's results alone changed) and a
student change that DVC writes in exponent form (test_pipeline_params.py asks DVC's status about
the other kinds of change).
"""

import json
import re
import shutil
import sys

import pytest
from dvc_repo import ALL_STAGES, ROOT, Repo, stages_run

from tools import fanout, records

pytestmark = pytest.mark.e2e

GRID = """\
# A run like the commit's but at T = 2; one with the other teacher and a student trained on half the
# training set at a rate that DVC writes as 1e-05, which the stages must read as the float it is; a bad one.
distill.temperature=2
teacher.arch=mlp student.learning_rate=0.00001 student.train_fraction=0.5 distill.temperature=4
distill.temperature=-1
"""
GOOD, OTHER_TEACHER, BAD = (line.split() for line in GRID.splitlines() if not line.startswith("#"))


def test_a_sweep_fans_out_to_workers_that_share_only_a_git_and_a_dvc_remote(reproduced_template, tmp_path):
    template = Repo(reproduced_template.path)
    origin, remote, grid = tmp_path / "origin.git", tmp_path / "dvc-remote", tmp_path / "grid.txt"
    template.run("git", "clone", "-q", "--bare", str(template.path), str(origin))
    shutil.copytree(reproduced_template.remote, remote)
    grid.write_text(GRID)

    def clone(name: str) -> Repo:
        template.run("git", "clone", "-q", str(origin), str(tmp_path / name))
        repo = Repo(tmp_path / name)
        repo.dvc("remote", "add", "--local", "--default", "shared", str(remote))
        return repo

    # The prepare job: the commit's outputs from the remote, then each shared setting the grid holds.
    prepare = clone("prepare")
    result = prepare.attempt(sys.executable, "-m", "tools.fanout", "prepare", str(grid))
    assert result.returncode == 0, result.stderr
    for stage in ALL_STAGES - {"check_params"}:
        assert f"Pulling data for stage: '{stage}'" in result.stdout, result.stdout
    assert "prepare: the commit's dvc.lock and metrics reproduced as committed" in result.stderr, result.stderr
    # Only the grid's other teacher and student were trained, both from its second line, in one experiment
    # (the params check, whose marker no remote holds, ran again).
    assert stages_run(result.stdout) == {"check_params", "train@teacher", "train@student"}
    assert result.stdout.count("Running stage 'train@teacher'") == result.stdout.count("Running stage 'train@student'") == 1
    assert ("prepare: train@teacher and train@student with teacher.arch=mlp student.learning_rate=0.00001 "
            "student.train_fraction=0.5") in result.stderr, result.stderr
    assert prepare.run("git", "status", "--porcelain") == ""  # prepare leaves the workspace as the commit has it

    # Two workers at once, in clones that hold nothing but the commit and the remote's address.
    workers = [clone("worker0"), clone("worker1")]
    started = [worker.start(sys.executable, "-m", "tools.fanout", "work", str(grid), "--slice", str(index), "--of", "2")
               for index, worker in enumerate(workers)]
    outputs = [process.communicate(timeout=600)[0] for process in started]
    # Worker 0 had the good run and the bad one: it pushes the first and names why the second failed.
    assert [process.returncode for process in started] == [1, 0], outputs
    assert re.search(rf"^error: run {fanout.run_name(BAD)} \(distill.temperature=-1\) failed: error: params.yaml: "
                     r"distill.temperature = -1 is invalid: input should be greater than 0$", outputs[0], re.MULTILINE)
    assert "worker 0 of 2: 1 runs pushed, 1 failed" in outputs[0]
    assert "worker 1 of 2: 1 runs pushed, 0 failed" in outputs[1]

    # Neither worker trained a teacher or a baseline student: the commit's stages came from the remote
    # unchanged, the grid's from the run cache that prepare pushed.
    good_log = workers[0].dvc("queue", "logs", fanout.run_name(GOOD))
    other_log = workers[1].dvc("queue", "logs", fanout.run_name(OTHER_TEACHER))
    assert stages_run(good_log) == stages_run(other_log) == {"check_params", "distill", "evaluate", "export"}
    for stage in ("train@teacher", "train@student"):
        assert f"Pulling data for stage: '{stage}'" in good_log, good_log
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in other_log, other_log
    for worker in workers:
        assert worker.run("git", "status", "--porcelain") == ""  # the queued runs left the workspace alone

    # A worker started again finds its runs pushed and queues nothing.
    again = workers[1].attempt(sys.executable, "-m", "tools.fanout", "work", str(grid), "--slice", "1", "--of", "2")
    assert again.returncode == 0 and "worker 1 of 2: 1 runs, 1 already pushed" in again.stderr, again.stderr

    collector = clone("collector")
    collector.run(sys.executable, "-m", "tools.fanout", "collect")
    recorded = records.load(collector.path / records.RUNS_FILE)
    runs = recorded[recorded["commit"] == collector.run("git", "rev-parse", "HEAD").strip()]  # this sweep's
    shown = json.loads(collector.dvc("exp", "show", "--json", "--all-commits"))
    experiments = {revision["name"]: revision["data"] for commit in shown
                   for experiment in commit.get("experiments") or [] for revision in experiment["revs"]}
    assert set(experiments) == {fanout.run_name(GOOD), fanout.run_name(OTHER_TEACHER)}
    # Every pushed run beside the records the project had; the failed one is none, nor the commit's own run.
    assert len(recorded) == len(records.load(ROOT / records.RUNS_FILE)) + 2
    assert sorted(zip(runs[records.ARCH], runs[records.TEMPERATURE])) == [("cnn", 2), ("mlp", 4)]
    for name, data in experiments.items():
        row = runs[runs["experiment"] == name].iloc[0]
        evaluate = data["metrics"]["metrics/evaluate.json"]["data"]
        assert row["test.distilled.accuracy"] == evaluate["distilled"]["accuracy"]
        assert row["test.student.accuracy"] == evaluate["student"]["accuracy"]
        distilled = data["metrics"]["metrics/training/distilled.json"]["data"]
        assert (row[records.SELECT_ON], row[records.TIE_BREAK]) == (distilled["val_accuracy"], distilled["val_hard_loss"])
    # Half of the 1500 training images, class by class, at the rate DVC wrote in exponent form.
    other = experiments[fanout.run_name(OTHER_TEACHER)]
    assert other["metrics"]["metrics/training/student.json"]["data"]["train_examples"] == 750
    assert runs[runs["experiment"] == fanout.run_name(OTHER_TEACHER)].iloc[0]["params.student.learning_rate"] == 1e-05

    # A new temperature changes the distilled student's results and nothing else's.
    committed = json.loads(collector.read("metrics/evaluate.json"))
    at_t2 = experiments[fanout.run_name(GOOD)]["metrics"]["metrics/evaluate.json"]["data"]
    assert at_t2["teacher"] == committed["teacher"] and at_t2["student"] == committed["student"]
    assert at_t2["distilled"] != committed["distilled"]
    diff = json.loads(collector.dvc("metrics", "diff", "HEAD", fanout.run_name(GOOD), "--json"))
    changed = diff["metrics/evaluate.json"]
    assert changed and all(key.startswith("distilled.") for key in changed)
    assert changed["distilled.accuracy"]["new"] == at_t2["distilled"]["accuracy"]
    # The report counts the runs of the commit's recipe, which the run at another learning rate is not,
    # and gives no verdict: one run is too few for one. Every other record departs from this small
    # repository's params, so it is a variant, the run at another learning rate among them.
    summary = json.loads((collector.path / "reports/summary.json").read_text())
    assert (summary["runs"], summary["results"]) == (1, [])
    assert any(variant["recipe"].startswith("student.learning_rate=1e-05") for variant in summary["variants"])
