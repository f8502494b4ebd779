"""What the test run shares, and the order its modules run in.

One reproduced copy of this project, shared by every end-to-end module that reads it: the first
xdist worker to ask reproduces the pipeline with the real `dvc`, under a file lock; each test module
then works in its own copy of that repository, so modules never see each other's changes. Its
outputs are pushed to a folder that serves as a DVC remote, as after a developer's `dvc push`. And one
pair of fresh training processes (tests/same_bits.py), whose bits test_models and test_deploy compare.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import common  # noqa: F401  (before any test module imports Keras: it applies params.yaml's numerics first)
import pytest
from dvc_repo import ROOT, SMALL, Repo
from filelock import FileLock


# The modules in the order the two xdist workers take them (`--no-loadscope-reorder`), longest first:
# test_numerics trains on an emulated CPU for minutes, so one worker starts it while the other takes
# the rest. xdist gives each worker one module, then a second to a worker whose first has at most two
# tests: so the fan-out test (about 70 s after the shared repository's 30) gets the quick test_fanout as its
# companion, and the other worker takes the next modules meanwhile. Modules not named here follow in
# collection order.
SCHEDULE = (
    "test_numerics.py", "test_sweep.py", "test_models.py", "test_own_model.py", "test_fanout.py", "test_pipeline.py", "test_interruption.py",
    "test_pipeline_failures.py", "test_failure_drills.py", "test_strategy.py", "test_deploy.py", "test_losses.py", "test_params_forms.py",
    "test_params.py", "test_pipeline_params.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return SCHEDULE.index(name) if name in SCHEDULE else len(SCHEDULE)

    items.sort(key=rank)  # stable: each module's tests keep their order



def shared_root(tmp_path_factory, worker_id) -> Path:
    """A folder shared by the xdist workers of this run, and by this run only."""
    root = tmp_path_factory.getbasetemp()
    return root if worker_id == "master" else root.parent


@pytest.fixture(scope="session")
def same_bits(tmp_path_factory, worker_id) -> list[dict]:
    """tests/same_bits.py's reports from two fresh processes, run once for the whole test run."""
    root = shared_root(tmp_path_factory, worker_id)
    reports = root / "same_bits.json"
    with FileLock(str(root / "same_bits.lock")):
        if not reports.exists():
            runs = []
            for run in ("first", "second"):
                result = subprocess.run(
                    [sys.executable, str(ROOT / "tests/same_bits.py"), str(root / "same_bits" / run)],
                    cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                )
                assert result.returncode == 0, result.stderr[-2000:]
                runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
            reports.write_text(json.dumps(runs))
    return json.loads(reports.read_text())


class Reproduced(NamedTuple):
    path: Path  # the repository, its results committed
    log: str  # what its `dvc repro` printed
    remote: Path  # a DVC remote holding every output of that commit, as `dvc push` left it


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory, worker_id) -> Reproduced:
    """The reproduced repository, built once for the whole test run."""
    root = shared_root(tmp_path_factory, worker_id)
    template, log, remote = root / "reproduced", root / "reproduced.log", root / "reproduced-remote"
    with FileLock(str(root / "reproduced.lock")):
        if not log.exists():
            repo = Repo.copy_of_project(template, **SMALL)
            output = repo.dvc("repro")
            repo.commit("reproduce")
            # The remote is configured for the push alone: the copies inherit none.
            repo.dvc("remote", "add", "--local", "pushed", str(remote))
            repo.dvc("push", "--remote", "pushed", "--quiet")
            repo.dvc("remote", "remove", "--local", "pushed")
            log.write_text(output)
    return Reproduced(template, log.read_text(), remote)


def _without_dvc_tmp(folder: str, names: list[str]) -> list[str]:
    # DVC's state and lock files belong to the original; the copy builds its own.
    return ["tmp"] if Path(folder).name == ".dvc" else []


@pytest.fixture(scope="module")
def repo(reproduced_template, tmp_path_factory) -> Repo:
    path = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(reproduced_template.path, path, symlinks=True, ignore=_without_dvc_tmp)
    return Repo(path)


@pytest.fixture(scope="module")
def reproduced(reproduced_template) -> str:
    """What the first `dvc repro` of the shared repository printed."""
    return reproduced_template.log


@pytest.fixture
def restore(repo):
    """Puts the committed state back after a test that leaves its workspace changed, even when it fails."""
    yield
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")
