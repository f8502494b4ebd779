"""End to end, what goes wrong: bad params, divergence, data changed behind DVC's back (failing queued cells: test_sweep.py).

Each test leaves the repository as committed, so the module's one reproduced repository serves them all.
"""

import json
import re
import sys

import pytest
from dvc_repo import Repo, stages_run

pytestmark = pytest.mark.e2e


def test_a_bad_param_fails_before_any_output_is_touched(repo, reproduced):
    guarded = ("dvc.lock", "models/distilled.weights.h5", "metrics/evaluate.json", "data/params.checked")
    before = {name: repo.read(name) for name in guarded}
    result = repo.attempt(sys.executable, "-m", "dvc", "exp", "run", "-S", "distill.temperature=-1")
    assert result.returncode != 0
    assert "error: params.yaml: distill.temperature = -1 is invalid: input should be greater than 0\n" in result.stderr
    assert "Traceback" not in result.stderr
    assert stages_run(result.stdout) == {"check_params"}
    for name, content in before.items():
        assert repo.read(name) == content, f"{name} changed after a rejected param"
    repo.run("git", "reset", "-q", "--hard")
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def test_exponent_form_written_by_hand_passes_the_check_and_reads_as_dvc_reads_it(repo, reproduced, restore):
    text = repo.read("params.yaml").decode()
    student = text.index("student:")
    edited = text[:student] + text[student:].replace("learning_rate: 0.001", "learning_rate: 3e-3", 1)
    (repo.path / "params.yaml").write_text(edited)
    # The stage that every other waits for accepts it (the stages' reading is property-tested in-process)...
    assert stages_run(repo.dvc("repro", "check_params")) == {"check_params"}
    # ...and DVC reads the same float, so the experiment is recorded with the value the stages trained on.
    changed = json.loads(repo.dvc("params", "diff", "--json"))["params.yaml"]
    assert {key: (change["old"], change["new"]) for key, change in changed.items()} == {
        "student.learning_rate": (0.001, 0.003)
    }


def test_a_diverging_run_stops_with_one_line_and_records_nothing(repo, reproduced, restore):
    # check_params passed and may record the new value; nothing after it may change.
    lock_before = repo.lock_entries("check_params")
    result = repo.attempt(sys.executable, "-m", "dvc", "exp", "run", "-S", "student.learning_rate=1e20")
    assert result.returncode != 0
    assert re.search(
        r"^error: train@student diverged: loss became nan at epoch 1, step \d+; "
        r"lower student.learning_rate \(now 1e\+20\)$", result.stderr, re.MULTILINE,
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert stages_run(result.stdout) == {"check_params", "train@student"}
    assert repo.lock_entries("check_params") == lock_before
    # DVC removes a stage's outputs before running it; the failed run wrote none back.
    for name in ("models/student.weights.h5", "metrics/training/student.json", "metrics/curves/student"):
        assert not (repo.path / name).exists(), name
    assert not list((repo.path / "metrics/curves").glob(".partial-*"))


def test_prepared_data_altered_behind_dvcs_back_is_rebuilt(repo, reproduced):
    path = repo.path / "data/prepared/test_labels.npy"
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one test label changes class
    assert "data/prepared" in repo.dvc("status")
    output = repo.dvc("repro")
    # DVC restores prepare's outputs from its run cache (or reruns it): the same bytes either way,
    # so nothing downstream reruns.
    assert "Stage 'prepare' is cached - skipping run, checking out outputs" in output or "prepare" in stages_run(output)
    assert stages_run(output) <= {"prepare"}
    assert path.read_bytes() == original
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def test_remote_round_trip_gives_a_fresh_clone_the_models(repo, reproduced, tmp_path):
    repo.dvc("remote", "add", "--default", "--force", "shared", str(tmp_path / "remote"))
    repo.commit("a local-directory remote, standing in for S3, GCS or SSH")
    repo.dvc("push")

    repo.run("git", "clone", "-q", str(repo.path), str(tmp_path / "clone"))
    clone = Repo(tmp_path / "clone")
    clone.dvc("pull")
    assert clone.dvc("status").strip() == "Data and pipelines are up to date."
    assert stages_run(clone.dvc("repro")) == set()  # nothing retrained
    for name in ("models/teacher.weights.h5", "models/distilled.weights.h5", "data/prepared/test_images.npy"):
        assert clone.read(name) == repo.read(name)


def test_the_registered_model_downloads_with_dvc_artifacts_get(repo, reproduced, tmp_path):
    repo.dvc("remote", "add", "--default", "--force", "shared", str(tmp_path / "remote"))
    repo.commit("a local-directory remote for the registry")
    repo.dvc("push")
    # A registered version is a git tag in the model registry's (GTO's) form: <artifact>@v<semver>.
    repo.run("git", "tag", "-a", "distilled-student@v1.0.0", "-m", "Registering artifact distilled-student version v1.0.0")
    downloaded = tmp_path / "distilled-student"
    repo.dvc("artifacts", "get", str(repo.path), "distilled-student", "--out", str(downloaded))
    exported = repo.path / "models/export/distilled"
    files = sorted(path.relative_to(exported) for path in exported.rglob("*") if path.is_file())
    assert {"float32.tflite", "int8.tflite", "saved_model/saved_model.pb"} <= {str(name) for name in files}
    assert sorted(path.relative_to(downloaded) for path in downloaded.rglob("*") if path.is_file()) == files
    for name in files:
        assert (downloaded / name).read_bytes() == (exported / name).read_bytes()
