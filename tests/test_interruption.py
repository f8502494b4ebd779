"""A training stage killed halfway leaves nothing that looks complete, and the next `dvc repro` recovers exactly."""

import os
import signal
import time

import psutil
import pytest
from dvc_repo import Repo, stages_run

from common import outputs

pytestmark = pytest.mark.e2e


def interrupt_teacher_training(repo: Repo, kill, *repro_args: str) -> str:
    """Starts `dvc repro`, waits for the teacher's training to begin, then calls kill(dvc_process).

    Training has begun when the stage's curves folder is staged beside its final place, just before
    Keras's fit: the shared repository's CNN teacher then traces its graph and trains an epoch, a
    second or more, time enough to strike while training is under way.
    """
    dvc = repo.start_dvc("repro", *repro_args)
    staged = repo.path / "metrics/curves"
    deadline = time.monotonic() + 120
    while not list(staged.glob(f"{outputs.PARTIAL_PREFIX}*-teacher")):
        assert dvc.poll() is None, "the run ended before the teacher's training began:\n" + dvc.stdout.read()
        assert time.monotonic() < deadline, "the teacher's training did not begin within 2 minutes"
        time.sleep(0.05)
    kill(dvc)
    output = dvc.stdout.read()
    assert dvc.wait(timeout=60) != 0, output
    return output


def ctrl_c(dvc):
    os.killpg(dvc.pid, signal.SIGINT)


def kill_stage(dvc):
    # The trainer itself, not the shell dvc wraps it in: dash does not exec its last command, and killing only the
    # shell would leave the trainer running to completion behind the test's back.
    stage = next(p for p in psutil.Process(dvc.pid).children(recursive=True) if "stages.train" in p.cmdline())
    stage.kill()


@pytest.mark.parametrize("kill", [ctrl_c, kill_stage], ids=["SIGINT to dvc", "SIGKILL to the stage"])
def test_interrupted_training_restarts_to_the_same_result(repo, kill):
    # The reference is the shared repository's uninterrupted run of the same stage with the same params.
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
