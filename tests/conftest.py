"""Fixtures of the end-to-end tests: a copy of this project, reproduced once per test module with the real `dvc`."""

import pytest
from dvc_repo import SMALL, Repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return Repo.copy_of_project(tmp_path_factory.mktemp("pipeline"), **SMALL)


@pytest.fixture(scope="module")
def reproduced(repo) -> str:
    output = repo.dvc("repro")
    repo.commit("reproduce")
    return output


@pytest.fixture
def restore(repo):
    """Puts the committed state back after a test that leaves its workspace changed, even when it fails."""
    yield
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")
