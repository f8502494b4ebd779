"""End to end: each kind of params change reruns exactly the stages downstream of it, as docs/params.md's table says."""

import pytest
from dvc_repo import ALL_STAGES, stages_run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "change, expected",
    [
        # DVC writes 1e-05; the stages must read the float DVC recorded, not YAML 1.1's string. The transfer
        # set is a student param like the rate: both students retrain, the teacher does not.
        (["student.learning_rate=0.00001", "student.train_fraction=0.5"],
         {"check_params", "train@student", "distill", "evaluate", "export"}),
        (["teacher.arch=mlp"], {"check_params", "train@teacher", "distill", "evaluate", "export"}),
        (["evaluate.ece_bins=10"], {"check_params", "evaluate"}),
        (["prepare.val_size=400"], ALL_STAGES),
    ],
)
def test_a_param_change_reruns_exactly_its_downstream(repo, reproduced, change, expected):
    assert stages_run(repo.dvc("exp", "run", *(arg for item in change for arg in ("-S", item)))) == expected
    # Back to the committed state for the next case: git for params, lock and metrics, DVC for the rest.
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")
