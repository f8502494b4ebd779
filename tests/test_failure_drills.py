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
from dvc_repo import Repo
from filesystems import read_only, tiny_tmpfs

from common import outputs

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


def repro_restores_the_lock(repo: Repo, lock: bytes) -> None:
    repo.dvc("repro")
    assert repo.read("dvc.lock") == lock
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def disk_full_during_distill(fresh: Repo, tmp_path: Path, lock: bytes) -> None:
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


def read_only_metrics_folder(fresh: Repo, tmp_path: Path, lock: bytes) -> None:
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


def corrupt_weights_file(fresh: Repo, tmp_path: Path, lock: bytes) -> None:
    weights = fresh.path / "models/student.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = fresh.attempt(sys.executable, "-m", "stages.evaluate")
    assert_fails_with_one_line(result, r"^error: models/student\.weights\.h5: not a readable weights file \(.*\); "
                                       r"`dvc checkout models/student\.weights\.h5` restores it")
    # The documented recovery: DVC sees the changed output and puts the stage's result back.
    assert "models/student.weights.h5" in fresh.dvc("status")


def truncated_prepared_array(fresh: Repo, tmp_path: Path, lock: bytes) -> None:
    images = fresh.path / "data/prepared/train_images.npy"
    images.write_bytes(images.read_bytes()[:4096])
    result = fresh.attempt(sys.executable, "-m", "stages.train", "student")
    assert_fails_with_one_line(result, r"^error: data/prepared/train_images\.npy: unreadable \(.*\); "
                                       r"run `dvc repro -f prepare`$")
    assert "data/prepared" in fresh.dvc("status")


def cache_file_deleted_while_the_workspace_copy_is_there(fresh: Repo, tmp_path: Path, lock: bytes) -> None:
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


def lock_left_by_a_killed_dvc(fresh: Repo, tmp_path: Path, lock: bytes) -> None:
    run = fresh.start_dvc("repro", "--force", "train@teacher")
    # Training has begun when the stage's curves folder is staged beside its place, just before fit.
    while not list((fresh.path / "metrics/curves").glob(f"{outputs.PARTIAL_PREFIX}*-teacher")):
        assert run.poll() is None, "dvc ended before the teacher's training began:\n" + run.stdout.read()
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # dvc and the stage with it, as an out-of-memory kill or a closed terminal
    assert run.wait() == -signal.SIGKILL
    # The dead dvc is still named in DVC's lock of the outputs it was writing, and the stage's staged
    # curves are left beside their place; the repro that follows (the test's) must go through anyway.
    assert str(run.pid) in (fresh.path / ".dvc/tmp/rwlock").read_text()
    assert list((fresh.path / "metrics/curves").glob(f"{outputs.PARTIAL_PREFIX}*-teacher"))


DRILLS = [
    disk_full_during_distill, read_only_metrics_folder, corrupt_weights_file, truncated_prepared_array,
    cache_file_deleted_while_the_workspace_copy_is_there, lock_left_by_a_killed_dvc,
]


@pytest.mark.parametrize("drill", DRILLS, ids=[drill.__name__ for drill in DRILLS])
def test_a_broken_repository_fails_in_one_line_or_recovers_and_repro_restores_its_lock(fresh, tmp_path, drill):
    lock = fresh.read("dvc.lock")
    drill(fresh, tmp_path, lock)
    repro_restores_the_lock(fresh, lock)
