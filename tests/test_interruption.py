"""A training stage killed halfway leaves nothing that looks complete, and the next `dvc repro` recovers exactly."""

import os
import signal

import psutil
import pytest
from dvc_repo import SMALL, Repo, stages_run

pytestmark = pytest.mark.e2e

# Enough teacher epochs that training is still under way when the test strikes at the third.
LONGER_TEACHER = {**SMALL, "teacher": {"epochs": 5, "patience": 5}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    repo = Repo.copy_of_project(tmp_path_factory.mktemp("interrupted"), **LONGER_TEACHER)
    repo.dvc("repro", "train@teacher")  # and what it needs; the tests touch nothing downstream
    repo.commit("reproduce")
    return repo


def interrupt_teacher_training(repo: Repo, kill, *repro_args: str) -> str:
    """Starts `dvc repro`, waits for the teacher's third epoch, then calls kill(dvc_process)."""
    dvc = repo.start_dvc("repro", *repro_args)
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


@pytest.mark.parametrize("kill", [ctrl_c, kill_stage], ids=["SIGINT to dvc", "SIGKILL to the stage"])
def test_interrupted_training_restarts_to_the_same_result(repo, kill):
    # The reference is the fixture's own uninterrupted run of the same stage with the same params.
    reference = {name: repo.read(name) for name in ("dvc.lock", "models/teacher.weights.h5")}

    output = interrupt_teacher_training(repo, kill, "--force", "--single-item", "train@teacher")

    assert "Running stage 'train@teacher'" in output
    assert repo.read("dvc.lock") == reference["dvc.lock"]
    leftovers = sorted(p.name for p in (repo.path / "models").iterdir() if p.name.endswith(".weights.h5"))
    assert "teacher.weights.h5" not in leftovers, "an interrupted run left a complete-looking teacher"
    assert not (repo.path / "metrics/training/teacher.json").exists()

    # Run again, it trains from its first epoch to exactly the weights of the uninterrupted run.
    resumed = repo.dvc("repro", "--force", "--single-item", "train@teacher")
    assert stages_run(resumed) == {"train@teacher"}
    for name, content in reference.items():
        assert repo.read(name) == content, f"{name} differs from the uninterrupted run"
    assert repo.dvc("status", "train@teacher").strip() == "Data and pipelines are up to date."
