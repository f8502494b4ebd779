"""End to end: the real `dvc` on a copy of this repository, on a small stratified subset of the real data.

Each step checks which stages DVC actually ran, so the cache semantics in dvc.yaml are tested as users meet them.
"""

import json
import re
import sys
import time

import pytest
import yaml
from dvc_repo import ALL_STAGES, SMALL, Repo, stages_run


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return Repo.copy_of_project(tmp_path_factory.mktemp("pipeline"), **SMALL)


@pytest.fixture(scope="module")
def reproduced(repo) -> str:
    output = repo.dvc("repro")
    repo.commit("reproduce")
    return output


def test_repro_runs_every_stage_and_writes_outputs(repo, reproduced):
    assert stages_run(reproduced) == ALL_STAGES
    for model in ("teacher", "student", "distilled"):
        assert (repo.path / f"models/{model}.weights.h5").is_file()
    report = json.loads(repo.read("metrics/evaluate.json"))
    assert set(report) == {"teacher", "student", "distilled"}
    assert report["teacher"]["params"] == 567_434 and report["student"]["params"] == 101_770
    for scores in report.values():
        assert 0.1 < scores["accuracy"] <= 1 and scores["nll"] > 0 and 0 <= scores["ece"] <= 1
    for student in ("student", "distilled"):
        assert 0 <= report[student]["agreement"] <= 1 and report[student]["kl_to_teacher"] >= 0
    teacher_training = json.loads(repo.read("metrics/training/teacher.json"))
    assert teacher_training["epochs_run"] == teacher_training["best_epoch"] == 1
    val_curve = repo.read("metrics/curves/teacher/plots/metrics/eval/loss.tsv").decode().splitlines()
    assert val_curve[0] == "step\tloss" and float(val_curve[1].split("\t")[1]) == pytest.approx(teacher_training["val_loss"], abs=1e-6)
    for term in ("hard_loss", "soft_loss"):
        assert (repo.path / f"metrics/curves/distilled/plots/metrics/eval/{term}.tsv").is_file()
    predictions = repo.read("metrics/predictions/teacher.csv").decode().splitlines()
    assert predictions[0] == "actual,predicted" and len(predictions) == 1 + 333  # round(10000 * 2000 / 60000)
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."


def test_second_repro_is_a_no_op(repo, reproduced):
    assert stages_run(repo.dvc("repro")) == set()


def test_plots_render(repo, reproduced):
    rendered = json.loads(repo.dvc("plots", "show", "--json"))
    assert set(rendered) == {"data"}, rendered.get("errors")
    plots = rendered["data"]
    assert set(plots) == {
        "Loss per epoch", "Accuracy per epoch", "Distillation loss per epoch",
        "Test confusion matrix", "Test accuracy per class",
    }
    curves = plots["Accuracy per epoch"][0]["content"]["data"]["values"]
    assert len(curves) == 6 and {row["step"] for row in curves} == {"0"}  # 3 models x (train, val), 1 epoch
    confusion = plots["Test confusion matrix"][0]["content"]
    rows = confusion["data"]["values"]
    assert {row["filename"] for row in rows} == {"teacher.csv", "student.csv", "distilled.csv"}
    assert len(rows) == 3 * 333 and {"actual", "predicted"} <= set(rows[0])


def test_new_temperature_reruns_only_distill_and_evaluate(repo, reproduced):
    before = json.loads(repo.read("metrics/evaluate.json"))
    output = repo.dvc("exp", "run", "-S", "distill.temperature=8")
    assert stages_run(output) == {"check_params", "distill", "evaluate"}
    after = json.loads(repo.read("metrics/evaluate.json"))
    assert after["teacher"] == before["teacher"] and after["student"] == before["student"]
    assert after["distilled"] != before["distilled"]

    repo.commit("temperature 8")
    diff = json.loads(repo.dvc("metrics", "diff", "HEAD~1", "HEAD", "--json"))
    changed = diff["metrics/evaluate.json"]
    assert changed and all(key.startswith("distilled.") for key in changed)
    assert changed["distilled.accuracy"]["new"] == after["distilled"]["accuracy"]


@pytest.mark.parametrize(
    "change, expected",
    [
        ("distill.alpha=0.9", {"check_params", "distill", "evaluate"}),
        ("student.learning_rate=0.002", {"check_params", "train@student", "distill", "evaluate"}),
        # DVC writes 1e-05; the stages must read the float DVC recorded, not YAML 1.1's string.
        ("student.learning_rate=0.00001", {"check_params", "train@student", "distill", "evaluate"}),
        ("teacher.learning_rate=0.002", {"check_params", "train@teacher", "distill", "evaluate"}),
        ("evaluate.ece_bins=10", {"check_params", "evaluate"}),
        # On this CPU the default strategy is what auto picks: the retrained models come out bit for bit
        # the same, so evaluate's inputs are unchanged and DVC rightly skips it.
        ("train.strategy=default", {"check_params", "train@teacher", "train@student", "distill"}),
        ("prepare.val_size=400", ALL_STAGES),
    ],
)
def test_a_param_change_reruns_exactly_its_downstream(repo, reproduced, change, expected):
    assert stages_run(repo.dvc("exp", "run", "-S", change)) == expected
    # Back to the committed state for the next case: git for params, lock and metrics, DVC for the rest.
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")


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


def test_exponent_form_written_by_hand_runs(repo, reproduced, restore):
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


@pytest.fixture
def restore(repo):
    """Puts the committed state back after a test that leaves its workspace changed, even when it fails."""
    yield
    repo.run("git", "reset", "-q", "--hard")
    repo.dvc("checkout", "--force")


def lock_entries(repo: Repo, *leave_out: str) -> dict:
    return {name: entry for name, entry in yaml.safe_load(repo.read("dvc.lock"))["stages"].items()
            if name not in leave_out}


def test_a_diverging_run_stops_with_one_line_and_records_nothing(repo, reproduced, restore):
    # check_params passed and may record the new value; nothing after it may change.
    lock_before = lock_entries(repo, "check_params")
    result = repo.attempt(sys.executable, "-m", "dvc", "exp", "run", "-S", "student.learning_rate=1e20")
    assert result.returncode != 0
    assert re.search(
        r"^error: train@student diverged: loss became nan at epoch 1, step \d+; "
        r"lower student.learning_rate \(now 1e\+20\)$", result.stderr, re.MULTILINE,
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert stages_run(result.stdout) == {"check_params", "train@student"}
    assert lock_entries(repo, "check_params") == lock_before
    # DVC removes a stage's outputs before running it; the failed run wrote none back.
    for name in ("models/student.weights.h5", "metrics/training/student.json", "metrics/curves/student"):
        assert not (repo.path / name).exists(), name
    assert not list((repo.path / "metrics/curves").glob(".partial-*"))


def test_failing_queued_cells_say_why_and_do_not_stop_the_others(repo, reproduced, restore):
    repo.dvc("exp", "run", "--queue", "-S", "distill.temperature=2,-1")
    repo.dvc("exp", "run", "--queue", "-S", "student.learning_rate=1e20")
    repo.dvc("queue", "start", "--jobs", "2")
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", status := repo.dvc("queue", "status")):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    rows = dict(re.findall(r"^\S+\s+(\S+)\s+.*?\b(Success|Failed)\b", status, re.MULTILINE))
    assert sorted(rows.values()) == ["Failed", "Failed", "Success"], status

    logs = {name: repo.dvc("queue", "logs", name) for name in rows}
    failed = [logs[name] for name, state in rows.items() if state == "Failed"]
    assert any("error: params.yaml: distill.temperature = -1 is invalid: input should be greater than 0" in log
               for log in failed), failed
    assert any(re.search(r"error: train@student diverged: loss became nan at epoch 1, step \d+; "
                         r"lower student.learning_rate \(now 1e\+20\)", log) for log in failed), failed
    succeeded = next(name for name, state in rows.items() if state == "Success")
    shown = json.loads(repo.dvc("exp", "show", "--json"))
    experiments = [exp for commit in shown for exp in (commit.get("experiments") or [])]
    assert any(exp["name"] == succeeded for exp in experiments)
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."  # the workspace was never touched


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
    repo.dvc("remote", "add", "--default", "shared", str(tmp_path / "remote"))
    repo.commit("a local-directory remote, standing in for S3, GCS or SSH")
    repo.dvc("push")

    repo.run("git", "clone", "-q", str(repo.path), str(tmp_path / "clone"))
    clone = Repo(tmp_path / "clone")
    clone.dvc("pull")
    assert clone.dvc("status").strip() == "Data and pipelines are up to date."
    assert stages_run(clone.dvc("repro")) == set()  # nothing retrained
    for name in ("models/teacher.weights.h5", "models/distilled.weights.h5", "data/prepared/test_images.npy"):
        assert clone.read(name) == repo.read(name)


def test_forced_repro_leaves_dvc_lock_byte_identical(repo, reproduced):
    assert repo.dvc("status").strip() == "Data and pipelines are up to date."
    before = {name: repo.read(name) for name in ("dvc.lock", "metrics/evaluate.json", "models/distilled.weights.h5")}
    assert stages_run(repo.dvc("repro", "-f")) == ALL_STAGES
    for name, content in before.items():
        assert repo.read(name) == content, f"{name} changed after dvc repro -f"
