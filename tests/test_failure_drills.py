"""Failure drills: each starts from a working reproduced repository, breaks one thing, and checks that
the run ends with one line and a non-zero exit, or that the documented recovery works; then, the cause
fixed, `dvc repro` gives back the very dvc.lock the repository had (docs/troubleshooting.md lists them).
"""

import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from dvc_repo import Repo, stages_run
from filesystems import read_only, tiny_tmpfs

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh(reproduced_template, tmp_path) -> Repo:
    """A copy of the reproduced repository for one drill: each breaks its copy its own way."""
    path = tmp_path / "repo"
    shutil.copytree(reproduced_template.path, path, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    return Repo(path)


def assert_fails_with_one_line(result, pattern: str) -> None:
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and re.search(pattern, ours[0]), result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def assert_repro_restores_the_lock(repo: Repo, lock: bytes) -> None:
    repo.dvc("repro")
    assert repo.read("dvc.lock") == lock
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def test_disk_full_during_distill(fresh):
    lock = fresh.read("dvc.lock")
    models = fresh.path / "models"
    # tmpfs keeps whole 4 KiB pages: room for everything but the distilled student's weights (about
    # 400 KB), and 64 KiB more, too little for new ones.
    kept = sum(-(-path.stat().st_size // 4096) * 4096 for path in models.rglob("*")
               if path.is_file() and path.name != "distilled.weights.h5")
    with tiny_tmpfs(models, kept + 64 * 1024, leave_out=("distilled.weights.h5",)):
        # Unforced, DVC would restore distill's last result from its run cache, and say of the full disk
        # only "No possible cache link types" (docs/troubleshooting.md); --force runs the stage.
        result = fresh.attempt(sys.executable, "-m", "dvc", "repro", "--force", "distill")
        assert_fails_with_one_line(result, r"^error: models/distilled\.weights\.h5: cannot write \(No space left on device\): "
                                           r"the disk is full: free space on it \(`df -h .*/models`\) and run again$")
        assert [path.name for path in models.iterdir() if path.name.startswith(".partial-")] == []
    assert fresh.read("dvc.lock") == lock
    assert_repro_restores_the_lock(fresh, lock)


def test_read_only_metrics_folder(fresh):
    lock = fresh.read("dvc.lock")
    evaluation = fresh.read("metrics/evaluate.json")
    with read_only(fresh.path / "metrics"):
        result = fresh.attempt(sys.executable, "-m", "stages.evaluate")
        assert_fails_with_one_line(result, r"^error: metrics/.*: cannot write \(Read-only file system\): "
                                           r"the file system is read-only")
        # Through DVC, it is DVC that meets the read-only folder first, deleting the stage's outputs.
        result = fresh.attempt(sys.executable, "-m", "dvc", "repro", "--force", "evaluate")
        assert result.returncode != 0 and "Read-only file system" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert fresh.read("metrics/evaluate.json") == evaluation
    assert_repro_restores_the_lock(fresh, lock)


def test_corrupt_weights_file(fresh):
    lock = fresh.read("dvc.lock")
    weights = fresh.path / "models/student.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = fresh.attempt(sys.executable, "-m", "stages.evaluate")
    assert_fails_with_one_line(result, r"^error: models/student\.weights\.h5: not a readable weights file \(.*\); "
                                       r"`dvc checkout models/student\.weights\.h5` restores it")
    # The documented recovery: DVC sees the changed output and puts the stage's result back.
    assert "models/student.weights.h5" in fresh.dvc("status")
    assert_repro_restores_the_lock(fresh, lock)


def test_truncated_prepared_array(fresh):
    lock = fresh.read("dvc.lock")
    images = fresh.path / "data/prepared/train_images.npy"
    images.write_bytes(images.read_bytes()[:4096])
    result = fresh.attempt(sys.executable, "-m", "stages.train", "student")
    assert_fails_with_one_line(result, r"^error: data/prepared/train_images\.npy: unreadable \(.*\); "
                                       r"run `dvc repro -f prepare`$")
    assert "data/prepared" in fresh.dvc("status")
    assert_repro_restores_the_lock(fresh, lock)


def test_cache_file_deleted_while_the_workspace_copy_is_there(fresh, tmp_path):
    lock = fresh.read("dvc.lock")
    weights = fresh.path / "models/student.weights.h5"
    digest = re.search(r"path: models/student\.weights\.h5\n\s+hash: md5\n\s+md5: (\w+)", lock.decode()).group(1)
    cached = fresh.path / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
    cached.unlink()
    remote = tmp_path / "remote"
    fresh.dvc("remote", "add", "--local", "drill", str(remote))
    # DVC only warns and exits 0, and the remote is left without the file: a collaborator's pull fails.
    result = fresh.attempt(sys.executable, "-m", "dvc", "push", "--remote", "drill")
    assert "Some of the cache files do not exist neither locally nor on remote" in result.stderr + result.stdout
    assert digest in result.stderr + result.stdout
    on_remote = remote / "files/md5" / digest[:2] / digest[2:]
    assert not on_remote.exists()
    # The documented recovery: the workspace copy, whose hash dvc.lock still names, goes back into the cache.
    fresh.dvc("commit", "--force", "train@student")
    assert cached.read_bytes() == weights.read_bytes()
    fresh.dvc("push", "--remote", "drill")
    assert on_remote.read_bytes() == weights.read_bytes()
    assert fresh.read("dvc.lock") == lock
    assert_repro_restores_the_lock(fresh, lock)


def test_lock_left_by_a_killed_dvc(fresh):
    lock = fresh.read("dvc.lock")
    run = fresh.start_dvc("repro", "--force", "train@teacher")
    for line in run.stdout:
        if line.startswith("Epoch 1/"):  # training has begun, DVC's locks are all taken
            break
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(0.5)
    # The kill left DVC's lock files and the stage's side files behind; the next run goes through.
    assert_repro_restores_the_lock(fresh, lock)
    assert stages_run(fresh.dvc("repro")) == set()
