"""params.yaml validation: one line naming the key, the bad value and what is allowed."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common import params
from common.cli import EXIT_USER_ERROR, UserError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(section, key, value):
    raw = copy.deepcopy(DEFAULTS)
    target = raw if section is None else raw[section]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return raw


def test_committed_params_are_valid():
    loaded = params.load(ROOT / "params.yaml")
    assert loaded.teacher.hidden_units == [512, 256, 128]
    assert loaded.student.hidden_units == [128]
    assert loaded.distill.model_dump() == {
        "temperature": float(DEFAULTS["distill"]["temperature"]), "alpha": float(DEFAULTS["distill"]["alpha"]),
        "transfer": "labelled", "views": "fixed", "shift": 2, "flip": True, "mixup": True,
    }
    assert (loaded.data.source, loaded.teacher.source, loaded.student.arch) == ("fashion-mnist", "train", "mlp")
    assert loaded.train.strategy == "auto"


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("distill", "temperature", -1, "params.yaml: distill.temperature = -1 is invalid: input should be greater than 0"),
        ("distill", "temperature", 0, "params.yaml: distill.temperature = 0 is invalid: input should be greater than 0"),
        ("distill", "alpha", 1.5, "params.yaml: distill.alpha = 1.5 is invalid: input should be less than or equal to 1"),
        ("teacher", "epochs", "5", "params.yaml: teacher.epochs = '5' is invalid: input should be a valid integer"),
        ("teacher", "epochs", 0, "params.yaml: teacher.epochs = 0 is invalid: input should be greater than 0"),
        ("student", "hidden_units", [128, -4], "params.yaml: student.hidden_units[1] = -4 is invalid: input should be greater than 0"),
        ("student", "hidden_units", 128, "params.yaml: student.hidden_units = 128 is invalid: input should be a valid list"),
        ("student", "hidden_units", [], "params.yaml: student.hidden_units = [] is invalid: list should have at least 1 item"),
        ("student", "patience", True, "params.yaml: student.patience = True is invalid: input should be a valid integer"),
        ("student", "decay_alpha", -0.5, "params.yaml: student.decay_alpha = -0.5 is invalid: input should be greater than or equal to 0"),
        ("prepare", "subset", 5, "params.yaml: prepare.subset = 5 is invalid: allowed 10..60000, Fashion-MNIST's training images"),
        ("prepare", "subset", 60_001, "params.yaml: prepare.subset = 60001 is invalid: allowed 10..60000, Fashion-MNIST's training images"),
        ("prepare", "val_size", 59_995, "params.yaml: prepare.val_size = 59995 is invalid: allowed 10..59990 for 60000 training images"),
        ("prepare", "val_size", 5, "params.yaml: prepare.val_size = 5 is invalid: allowed 10..59990 for 60000 training images"),
        ("distill", "temprature", 8, "params.yaml: unknown key 'distill.temprature' (did you mean 'temperature'?); allowed here: temperature, alpha, transfer, views, shift, flip, mixup"),
        ("distill", "views", "random", "params.yaml: distill.views = 'random' is invalid: input should be 'fixed' or 'consistent'"),
        ("distill", "shift", 14, "params.yaml: distill.shift = 14 is invalid: allowed 0..13, below half the images' 28-pixel side"),
        ("distill", "shift", -1, "params.yaml: distill.shift = -1 is invalid: input should be greater than or equal to 0"),
        ("distill", "mixup", "yes", "params.yaml: distill.mixup = 'yes' is invalid: input should be a valid boolean"),
        (None, "sed", 1, "params.yaml: unknown key 'sed' (did you mean 'seed'?); allowed here: seed, data, prepare, train, teacher, student, distill, evaluate, export"),
        ("distill", "alpha", KeyError, "params.yaml: missing key 'distill.alpha'"),
        ("student", "seed", -1, "params.yaml: student.seed = -1 is invalid: input should be greater than or equal to 0"),
        ("train", "strategy", "tpu", "params.yaml: train.strategy = 'tpu' is invalid: input should be 'auto', 'default' or 'mirrored'"),
        # YAML 1.2, as DVC reads it: `yes` is a string, not a bool.
        ("train", "jit_compile", "yes", "params.yaml: train.jit_compile = 'yes' is invalid: input should be 'auto', True or False"),
        ("train", "steps_per_execution", 0, "params.yaml: train.steps_per_execution = 0 is invalid: input should be greater than 0"),
        # Upper bounds on what sets memory or time.
        ("student", "hidden_units", [128, 16_385], "params.yaml: student.hidden_units[1] = 16385 is invalid: input should be less than or equal to 16384"),
        ("student", "hidden_units", [8] * 17, "params.yaml: student.hidden_units = [8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8] is invalid: list should have at most 16 items"),
        ("teacher", "conv_filters", [8, 8, 8, 8, 8], "params.yaml: teacher.conv_filters = [8, 8, 8, 8, 8] is invalid: 5 blocks halve a 28-pixel side to nothing; allowed 1..4 blocks"),
        ("data", "source", "imagenet", "params.yaml: data.source = 'imagenet' is invalid: input should be 'fashion-mnist' or 'folder'"),
        ("data", "channels", 2, "params.yaml: data.channels = 2 is invalid: input should be 1 (grayscale) or 3 (RGB)"),
        ("data", "channels", True, "params.yaml: data.channels = True is invalid: input should be a valid integer"),
        ("data", "image_size", [64], "params.yaml: data.image_size = [64] is invalid: list should have at least 2 items"),
        ("data", "image_size", [64, 64], "params.yaml: data.image_size = [64, 64] and data.channels = 1 are for data.source: folder; Fashion-MNIST is 28x28 grayscale"),
        ("data", "test_fraction", 1.0, "params.yaml: data.test_fraction = 1.0 is invalid: input should be less than 1"),
        ("teacher", "source", "download", "params.yaml: teacher.source = 'download' is invalid: input should be 'train' or 'file'"),
        ("teacher", "inputs", "scaled", "params.yaml: teacher.inputs = 'scaled' is invalid: input should be 'pixels' or 'unit'"),
        ("teacher", "path", "", "params.yaml: teacher.path = '' is invalid: string should have at least 1 character"),
        ("teacher", "conv_filters", [1025], "params.yaml: teacher.conv_filters[0] = 1025 is invalid: input should be less than or equal to 1024"),
        ("teacher", "conv_dense_units", 16_385, "params.yaml: teacher.conv_dense_units = 16385 is invalid: input should be less than or equal to 16384"),
        ("student", "batch_size", 16_385, "params.yaml: student.batch_size = 16385 is invalid: input should be less than or equal to 16384"),
        ("teacher", "epochs", 10_001, "params.yaml: teacher.epochs = 10001 is invalid: input should be less than or equal to 10000"),
        ("evaluate", "ece_bins", 10_001, "params.yaml: evaluate.ece_bins = 10001 is invalid: input should be less than or equal to 10000"),
        # 10**6 steps over 30 epochs at batch 256: 33,334 steps an epoch, 8,533,504 images drawn.
        ("student", "min_steps", 1_000_000, "params.yaml: student.min_steps = 1000000 is invalid: with epochs 30 and batch_size 256 an epoch draws 8,533,504 images; allowed up to 1,000,000"),
        ("export", "calibration_images", 55_001, "params.yaml: export.calibration_images = 55001 is invalid: allowed 1..55000, the training split's size (prepare.subset = None, prepare.val_size = 5000)"),
    ],
)
def test_bad_values_give_one_clear_line(section, key, value, message):
    with pytest.raises(UserError) as raised:
        params.validate(with_value(section, key, value))
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_val_size_must_fit_the_subset():
    raw = with_value("prepare", "subset", 100)
    raw["export"]["calibration_images"] = 10  # the training split is 10 images at the edge below
    raw["prepare"]["val_size"] = 95
    with pytest.raises(UserError, match=r"^params.yaml: prepare.val_size = 95 is invalid: allowed 10..90 for 100 training images in 10 classes$"):
        params.validate(raw)
    raw["prepare"]["val_size"] = 90
    assert params.validate(raw).prepare.val_size == 90


def test_the_bounds_that_depend_on_other_keys_hold_at_their_edges():
    at_limit = with_value("student", "min_steps", 117_180)  # 3,906 steps an epoch x 256 = 999,936 images
    assert params.validate(at_limit).student.min_steps == 117_180
    small = with_value("prepare", "subset", 2000)
    small["prepare"]["val_size"] = 500
    small["export"]["calibration_images"] = 1500
    assert params.validate(small).export.calibration_images == 1500
    small["export"]["calibration_images"] = 1501
    with pytest.raises(UserError, match=r"calibration_images = 1501 is invalid: allowed 1\.\.1500"):
        params.validate(small)


def test_consistent_views_take_the_labelled_images_as_transfer_set():
    raw = with_value("distill", "views", "consistent")
    assert params.validate(raw).distill.views == "consistent"
    raw["distill"]["transfer"] = "all"
    with pytest.raises(UserError, match=r"^params.yaml: distill.views = consistent is invalid with distill.transfer = all: "
                                        r"allowed with transfer labelled \(the teacher labels the student's batch\), or views fixed$"):
        params.validate(raw)


def test_integers_are_accepted_where_floats_belong():
    assert params.validate(with_value("distill", "alpha", 1)).distill.alpha == 1.0


def run_stage(stage, workdir, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KD_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args], cwd=workdir, env=env, capture_output=True, text=True
    )


def test_stage_exits_with_one_line_before_any_work(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("distill", "temperature", -1)))
    result = run_stage("prepare", tmp_path)
    assert result.returncode == EXIT_USER_ERROR
    assert result.stderr == "error: params.yaml: distill.temperature = -1 is invalid: input should be greater than 0\n"
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_stage_reports_missing_inputs_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = run_stage("distill", tmp_path)
    assert result.returncode == EXIT_USER_ERROR
    assert result.stderr.splitlines()[-1] == "error: data/prepared/dataset.json: missing; run `dvc repro prepare`"
    assert "Traceback" not in result.stderr


def test_unreadable_params_file(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [1\n")
    result = run_stage("prepare", tmp_path)
    assert result.returncode == EXIT_USER_ERROR
    assert result.stderr.startswith("error: params.yaml: not valid YAML (")
