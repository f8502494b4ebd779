"""A training stage killed halfway leaves nothing that looks complete, and the next `dvc repro` recovers exactly."""

import os
import signal

import psutil
import pytest
import yaml
from dvc_repo import SMALL, Repo, stages_run

pytestmark = pytest.mark.e2e

# Enough teacher epochs that training is still under way when the test strikes at the third.
LONGER_TEACHER = {**SMALL, "teacher": {"epochs": 5, "patience": 5}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    repo = Repo.copy_of_project(tmp_path_factory.mktemp("interrupted"), **LONGER_TEACHER)
    repo.dvc("repro")
    repo.commit("reproduce")
    return repo


def interrupt_teacher_training(repo: Repo, kill) -> str:
    """Starts `dvc repro`, waits for the teacher's third epoch, then calls kill(dvc_process)."""
    dvc = repo.start_dvc("repro")
    seen = []
    for line in dvc.stdout:
        seen.append(line)
        if "Running stage 'train@teacher'" in "".join(seen) and line.startswith("Epoch 3/"):
            kill(dvc)
            break
    seen.extend(dvc.stdout)
    assert dvc.wait(timeout=60) != 0, "".join(seen)
    return "".join(seen)


def ctrl_c(dvc):
    os.killpg(dvc.pid, signal.SIGINT)


def kill_stage(dvc):
    # The trainer itself, not the shell dvc wraps it in: dash does not exec its last command, and killing only the
    # shell would leave the trainer running to completion behind the test's back.
    stage = next(p for p in psutil.Process(dvc.pid).children(recursive=True) if "stages.train" in p.cmdline())
    stage.kill()


@pytest.mark.parametrize(
    "kill, learning_rate", [(ctrl_c, 0.002), (kill_stage, 0.003)], ids=["SIGINT to dvc", "SIGKILL to the stage"]
)
def test_interrupted_training_restarts_to_the_same_result(repo, kill, learning_rate):
    lock_before = yaml.safe_load(repo.read("dvc.lock"))["stages"]
    repo.update_params(teacher={"learning_rate": learning_rate})  # a run the cache has never seen

    output = interrupt_teacher_training(repo, kill)

    assert "Running stage 'train@teacher'" in output
    lock_now = yaml.safe_load(repo.read("dvc.lock"))["stages"]
    # check_params finished before the kill and may record the new param; nothing after it may change.
    assert {name: entry for name, entry in lock_now.items() if name != "check_params"} == {
        name: entry for name, entry in lock_before.items() if name != "check_params"
    }
    leftovers = sorted(p.name for p in (repo.path / "models").iterdir() if p.name.endswith(".weights.h5"))
    assert "teacher.weights.h5" not in leftovers, "an interrupted run left a complete-looking teacher"
    assert not (repo.path / "metrics/training/teacher.json").exists()

    resumed = repo.dvc("repro")
    assert {"train@teacher", "distill", "evaluate"} <= stages_run(resumed)
    after_resume = {name: repo.read(name) for name in ("dvc.lock", "models/teacher.weights.h5")}

    # The reference: the same stage run once more, uninterrupted.
    assert stages_run(repo.dvc("repro", "--force", "--single-item", "train@teacher")) == {"train@teacher"}
    for name, content in after_resume.items():
        assert repo.read(name) == content, f"{name} differs from an uninterrupted run"

    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")
