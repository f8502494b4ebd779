"""Fixtures of the end-to-end tests: one reproduced copy of this project, shared by every module that reads it.

The first xdist worker to ask reproduces the pipeline with the real `dvc`, under a file lock; each
test module then works in its own copy of that repository, so modules never see each other's changes.
"""

import shutil
from pathlib import Path

import pytest
from dvc_repo import SMALL, Repo
from filelock import FileLock


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory, worker_id) -> tuple[Path, str]:
    """(the reproduced repository, what `dvc repro` printed), built once for the whole test run."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by the workers of this run, and by this run only
    template, log = root / "reproduced", root / "reproduced.log"
    with FileLock(str(root / "reproduced.lock")):
        if not log.exists():
            repo = Repo.copy_of_project(template, **SMALL)
            output = repo.dvc("repro")
            repo.commit("reproduce")
            log.write_text(output)
    return template, log.read_text()


def _without_dvc_tmp(folder: str, names: list[str]) -> list[str]:
    # DVC's state and lock files belong to the original; the copy builds its own.
    return ["tmp"] if Path(folder).name == ".dvc" else []


@pytest.fixture(scope="module")
def repo(reproduced_template, tmp_path_factory) -> Repo:
    path = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(reproduced_template[0], path, symlinks=True, ignore=_without_dvc_tmp)
    return Repo(path)


@pytest.fixture(scope="module")
def reproduced(reproduced_template) -> str:
    """What the first `dvc repro` of the shared repository printed."""
    return reproduced_template[1]


@pytest.fixture
def restore(repo):
    """Puts the committed state back after a test that leaves its workspace changed, even when it fails."""
    yield
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")
