"""Property tests of the params path: what `dvc exp run -S` writes is what the stages read.

Each example writes params.yaml with DVC's own `-S` code (dvc.utils.hydra.apply_overrides, which
parses the override with Hydra and writes YAML with ruamel), then loads it as every stage does.
Valid values, in every form a person or DVC writes them, must come back equal; invalid ones must
end in exit 2 with one line starting `error:`, never a traceback.
"""

import contextlib
import io
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from dvc.exceptions import InvalidArgumentError
from dvc.utils.hydra import apply_overrides
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common import cli, params
from common.cli import EXIT_USER_ERROR

ROOT = Path(__file__).resolve().parents[1]
TRAINING_TRAIT_KEYS = ("seed", "hidden_units", "learning_rate", "decay_steps", "decay_alpha", "batch_size", "epochs", "patience")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def params_copy():
    with tempfile.TemporaryDirectory(prefix="params-") as folder:
        path = Path(folder) / "params.yaml"
        shutil.copy(ROOT / "params.yaml", path)
        yield path


def set_params(path: Path, *overrides: str) -> None:
    """Exactly what `dvc exp run -S override ...` does to params.yaml before it runs anything."""
    apply_overrides(path, list(overrides))


def outcome(path: Path):
    """(exit code, stderr, loaded params) of loading `path` the way a stage does, through cli.run."""
    loaded, stderr = {}, io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            cli.run(lambda: loaded.setdefault("params", params.load(path)))
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return code, stderr.getvalue(), loaded.get("params")


def assert_one_error_line(path: Path, *expected_fragments: str) -> str:
    code, stderr, _ = outcome(path)
    assert code == EXIT_USER_ERROR, stderr
    assert stderr.startswith("error: ") and stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for fragment in expected_fragments:
        assert fragment in stderr
    return stderr


def lookup(loaded: params.Params, key: str):
    value = loaded
    for part in key.split("."):
        value = getattr(value, part)
    return value


# ------------------------------------------------------------------ valid values, in every written form

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
positive_floats = finite_floats.filter(lambda value: value > 0)
unit_floats = st.floats(min_value=0, max_value=1)
fractions = st.floats(min_value=0, max_value=1, exclude_min=True)
# Below 1 by more than the fixed-point form's rounding: f"{0.9999996:.6g}" is "1", which is not a dropout rate.
dropout_rates = st.floats(min_value=0, max_value=0.999)


def float_forms(value: float) -> list[str]:
    """How a float reaches `-S`: Python's repr, exponent form (DVC's own `1e-05`), fixed point, integral."""
    forms = {repr(value), f"{value:e}", f"{value:.6g}", f"{value:E}"}
    if value.is_integer() and abs(value) < 1e15:
        forms.add(str(int(value)))
    return sorted(forms)


def written_floats(values):
    return values.flatmap(lambda value: st.sampled_from(float_forms(value)))


def written_ints(values):
    return values.map(str)


def written_lists(values):
    return st.lists(values, min_size=1, max_size=4).flatmap(
        lambda items: st.sampled_from([f"[{','.join(map(str, items))}]", f"[{', '.join(map(str, items))}]"])
    )


# Every key of the schema but prepare's two, which depend on each other and are generated together.
VALID_TEXT = {
    "seed": written_ints(st.integers(min_value=0, max_value=2**31)),
    "train.numerics": st.sampled_from(["portable", "native"]),
    "train.strategy": st.sampled_from(["auto", "default", "mirrored"]),
    "train.jit_compile": st.sampled_from(["auto", "true", "false", "True", "FALSE"]),
    "train.steps_per_execution": written_ints(st.integers(min_value=1, max_value=10_000)),
    "distill.temperature": written_floats(positive_floats),
    "distill.alpha": written_floats(unit_floats),
    "evaluate.ece_bins": written_ints(st.integers(min_value=1, max_value=10_000)),
    "export.calibration_images": written_ints(st.integers(min_value=1, max_value=55_000)),
}
for model in ("teacher", "student"):
    VALID_TEXT |= {
        f"{model}.seed": written_ints(st.integers(min_value=0, max_value=2**31)),
        f"{model}.hidden_units": written_lists(st.integers(min_value=1, max_value=4096)),
        f"{model}.learning_rate": written_floats(positive_floats),
        f"{model}.decay_steps": written_ints(st.integers(min_value=1, max_value=10**7)) | st.just("null"),
        f"{model}.decay_alpha": written_floats(unit_floats),
        f"{model}.batch_size": written_ints(st.integers(min_value=1, max_value=16_384)),
        f"{model}.epochs": written_ints(st.integers(min_value=1, max_value=10_000)),
        f"{model}.patience": written_ints(st.integers(min_value=0, max_value=10_000)),
        # Up to what the default epochs and batch size allow (params.MAX_PASS_IMAGES).
        f"{model}.min_steps": written_ints(st.integers(min_value=0, max_value=100_000)),
        f"{model}.arch": st.sampled_from(["mlp", "cnn"]),
        f"{model}.conv_filters": written_lists(st.integers(min_value=1, max_value=512)),
        f"{model}.conv_dense_units": written_ints(st.integers(min_value=1, max_value=4096)),
        f"{model}.dropout": written_floats(dropout_rates),
        f"{model}.norm_momentum": written_floats(dropout_rates.filter(lambda value: value > 0)),
    }
VALID_TEXT |= {
    "student.train_fraction": written_floats(fractions),
    "distill.transfer": st.sampled_from(["labelled", "all"]),
    "distill.views": st.sampled_from(["fixed", "consistent"]),
    "distill.shift": written_ints(st.integers(min_value=0, max_value=13)),
    "distill.flip": st.sampled_from(["true", "false", "True", "FALSE"]),
    "distill.mixup": st.sampled_from(["true", "false", "True", "FALSE"]),
    "data.source": st.sampled_from(["fashion-mnist", "folder"]),
    "data.path": st.sampled_from(["data/images", "my_images", "data/shoes/train"]),
    "data.layout": st.sampled_from(["classes", "train_test"]),
    "data.test_fraction": written_floats(fractions.filter(lambda value: value < 1)),
    # With Fashion-MNIST, the default source, only these two are valid: it is 28x28 grayscale.
    "data.image_size": st.just("null"),
    "data.channels": st.just("1"),
    "teacher.source": st.sampled_from(["train", "file"]),
    "teacher.path": st.sampled_from(["models/teachers", "models/teachers/resnet.keras", "teacher_saved_model"]),
    "teacher.inputs": st.sampled_from(["pixels", "unit"]),
    "teacher.outputs": st.sampled_from(["logits", "probabilities"]),
}


FLOAT_NAMES = ("temperature", "alpha", "learning_rate", "decay_alpha", "dropout", "train_fraction", "test_fraction",
               "norm_momentum")
WORDS = ("distill.transfer", "distill.views", "train.numerics", "train.strategy", "teacher.arch", "student.arch", "data.source", "data.path", "data.layout",
         "teacher.source", "teacher.path", "teacher.inputs", "teacher.outputs")
BOOLEANS = ("distill.flip", "distill.mixup")
TEXT_KEYS = (*WORDS, *BOOLEANS, "train.jit_compile")


def expected_value(key: str, text: str):
    if text.startswith("["):
        return [int(item) for item in text.strip("[]").split(",")]
    if key.rsplit(".", 1)[-1] in FLOAT_NAMES:
        return float(text)
    if text == "null":
        return None
    if key in WORDS:
        return text
    if key == "train.jit_compile":
        return text if text == "auto" else text.lower() == "true"
    if key in BOOLEANS:
        return text.lower() == "true"
    return int(text)


def test_every_schema_key_is_generated():
    flat = {f"{section}.{key}" for section, fields in params.Params.model_fields.items()
            if (model := fields.annotation) and isinstance(model, type) and issubclass(model, params.Section)
            for key in model.model_fields}
    assert flat | {"seed"} == set(VALID_TEXT) | {"prepare.subset", "prepare.val_size"}


@SETTINGS
@given(key=st.sampled_from(sorted(VALID_TEXT)), data=st.data())
@example(key="student.learning_rate", data=None)  # the case that broke learning-rate sweeps
def test_any_valid_value_dvc_writes_is_read_back_equal(key, data):
    text = "0.00001" if data is None else data.draw(VALID_TEXT[key], label="text")
    with params_copy() as path:
        set_params(path, f"{key}={text}")
        code, stderr, loaded = outcome(path)
        assert code == 0, f"{key}={text}: {stderr}"
        assert lookup(loaded, key) == expected_value(key, text)


@SETTINGS
@given(subset=st.none() | st.integers(min_value=20, max_value=60_000), data=st.data())
def test_prepare_sizes_are_read_back_equal(subset, data):
    val_size = data.draw(st.integers(min_value=10, max_value=(subset or 60_000) - 10), label="val_size")
    with params_copy() as path:
        # The int8 calibration sample comes from the training split, which these sizes may leave smaller
        # than its default (test_params checks that bound).
        set_params(path, f"prepare.subset={'null' if subset is None else subset}", f"prepare.val_size={val_size}",
                   "export.calibration_images=10")
        code, stderr, loaded = outcome(path)
        assert code == 0, stderr
        assert (loaded.prepare.subset, loaded.prepare.val_size) == (subset, val_size)


@pytest.mark.parametrize("written", ["1e-3", "1E-3", "1.0e-3", "0.001", ".001", "1e-03"])
def test_exponent_forms_typed_by_hand_are_floats(written):
    with params_copy() as path:
        path.write_text(path.read_text().replace("learning_rate: 0.001", f"learning_rate: {written}"))
        _, stderr, loaded = outcome(path)
        assert stderr == ""
        assert loaded.teacher.learning_rate == loaded.student.learning_rate == 0.001


def test_dvc_writes_small_learning_rates_in_exponent_form():
    with params_copy() as path:
        set_params(path, "student.learning_rate=0.00001")
        assert "learning_rate: 1e-05" in path.read_text()
        assert outcome(path)[2].student.learning_rate == 1e-05


# ------------------------------------------------------------------ invalid values: exit 2, one line

FLOAT_KEYS = [key for key in VALID_TEXT if key.rsplit(".", 1)[-1] in FLOAT_NAMES]
INT_KEYS = [key for key in VALID_TEXT
            if key not in FLOAT_KEYS and key not in TEXT_KEYS and not key.endswith(("hidden_units", "conv_filters", "image_size"))]

wrong_type_text = st.sampled_from([
    "'0.1'", "'5'", "true", "false", "[1,2]", "{a: 1}", "abc", "null", "inf", "nan", "-inf",
])


@SETTINGS
@given(key=st.sampled_from(FLOAT_KEYS + INT_KEYS), text=wrong_type_text)
def test_wrong_types_give_one_line(key, text):
    if text == "null" and key.endswith("decay_steps"):
        return  # null is decay_steps' "span the run"
    with params_copy() as path:
        set_params(path, f"{key}={text}")
        assert_one_error_line(path, f"params.yaml: {key}")


@SETTINGS
@given(key=st.sampled_from(INT_KEYS), value=st.integers(max_value=-1))
def test_negative_integers_give_one_line(key, value):
    with params_copy() as path:
        set_params(path, f"{key}={value}")
        assert_one_error_line(path, f"params.yaml: {key} = {value} is invalid")


@SETTINGS
@given(key=st.sampled_from(FLOAT_KEYS), value=finite_floats)
def test_out_of_range_floats_give_one_line(key, value):
    if key.endswith("alpha"):  # alpha and decay_alpha: [0, 1]
        if 0 <= value <= 1:
            value = -value - 1
        allowed = "greater than or equal to 0" if value < 0 else "less than or equal to 1"
    elif key.endswith("dropout"):  # [0, 1)
        if 0 <= value < 1:
            value = -value - 1
        allowed = "greater than or equal to 0" if value < 0 else "less than 1"
    elif key.endswith("train_fraction"):  # (0, 1]
        if 0 < value <= 1:
            value = -value
        allowed = "greater than 0" if value <= 0 else "less than or equal to 1"
    else:  # temperature and learning rates: > 0
        value = min(value, -value)
        allowed = "greater than 0"
    with params_copy() as path:
        set_params(path, f"{key}={value!r}")
        assert_one_error_line(path, f"params.yaml: {key} = ", f"is invalid: input should be {allowed}")


@SETTINGS
@given(
    section=st.sampled_from(["distill", "student", "teacher", "prepare", "evaluate", "train"]),
    name=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True),
)
def test_unknown_keys_give_one_line(section, name):
    with params_copy() as path:
        try:
            set_params(path, f"+{section}.{name}=1")
        except InvalidArgumentError:
            return  # `+` on a key that exists: DVC itself refuses it before any stage runs
        assert_one_error_line(path, f"params.yaml: unknown key '{section}.{name}'", "allowed here:")


@SETTINGS
@given(position=st.floats(min_value=0, max_value=1), junk=st.text(max_size=40))
def test_any_edit_to_the_file_is_accepted_or_refused_in_one_line(position, junk):
    """Arbitrary text spliced into params.yaml: either still a valid file, or exit 2 and one line."""
    with params_copy() as path:
        original = path.read_text()
        cut = int(position * len(original))
        path.write_text(original[:cut] + junk + original[cut:], encoding="utf-8")
        code, stderr, _ = outcome(path)
        if code != 0:
            assert_one_error_line(path)


@pytest.mark.parametrize("broken, message", [
    ("seed: [1\n", "params.yaml: not valid YAML (line 2, column 1: expected ',' or ']'"),
    ("seed: 1\nseed: 2\n", 'params.yaml: not valid YAML (line 2, column 1: found duplicate key "seed"'),
    ("\tseed: 1\n", "params.yaml: not valid YAML (line 1, column 1: found character '\\t'"),
    ("- 1\n- 2\n", "params.yaml: expected a mapping of sections, got list"),
    ("", "params.yaml: expected a mapping of sections, got NoneType"),
])
def test_broken_yaml_gives_one_line(broken, message):
    with params_copy() as path:
        path.write_text(broken)
        assert_one_error_line(path, message)


def test_non_finite_floats_are_refused_with_the_rule():
    with params_copy() as path:
        set_params(path, "distill.temperature=inf")
        assert math.isinf(params.parse_yaml(path.read_text())["distill"]["temperature"])
        assert_one_error_line(path, "params.yaml: distill.temperature = inf is invalid: input should be a finite number")
