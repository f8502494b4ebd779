"""The schema of params.yaml: every stage validates the whole file before doing any work."""

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML, YAMLError

from common import numerics
from common.cli import UserError
from common.data import EXPECTED_COUNTS, IMAGE_SHAPE, NUM_CLASSES

PARAMS_FILE = Path("params.yaml")

# Upper bounds on every value that sets memory or time; docs/params.md gives the reason for each.
MAX_UNITS = 16_384  # a dense layer's width
MAX_LAYERS = 16
MAX_FILTERS = 1_024
# Each CNN block halves the image with its max-pooling: 28 pixels are 1 after four blocks, 0 after five.
MAX_BLOCKS = int(math.log2(min(IMAGE_SHAPE)))
# The CNN's first block holds 1.6 GB of activations for a batch this size.
MAX_BATCH = 16_384
MAX_EPOCHS = 10_000
# An epoch's batches are gathered at once (models.epoch_batches): 750 MiB of pixels at this many
# images, and as much again while they are gathered.
MAX_PASS_IMAGES = 1_000_000

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
# .inf and .nan are valid YAML floats, never valid params.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
UnitFloat = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
DropoutRate = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class Section(BaseModel):
    # strict: a quoted "0.1" or a bool where a number belongs is a mistake, not a value.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Prepare(Section):
    val_size: PositiveInt
    # At least one image per class; at most the whole training set.
    subset: Annotated[int, Field(ge=NUM_CLASSES, le=EXPECTED_COUNTS["train"])] | None

    def val_size_problem(self) -> str | None:
        """val_size must leave every class in both splits; it depends on subset, so it is checked here."""
        pool = self.subset or EXPECTED_COUNTS["train"]
        if NUM_CLASSES <= self.val_size <= pool - NUM_CLASSES:
            return None
        return (
            f"{PARAMS_FILE}: prepare.val_size = {self.val_size} is invalid: "
            f"allowed {NUM_CLASSES}..{pool - NUM_CLASSES} for {pool} training images"
        )


class Training(Section):
    """The recipe shared by teacher and student; distill reuses the student's."""

    seed: NonNegativeInt  # weight initialisation and shuffling
    arch: Literal["mlp", "cnn"]
    hidden_units: Annotated[list[Annotated[int, Field(gt=0, le=MAX_UNITS)]], Field(min_length=1, max_length=MAX_LAYERS)]
    learning_rate: PositiveFloat
    decay_steps: PositiveInt | None  # None: the cosine spans the whole run
    decay_alpha: UnitFloat
    batch_size: Annotated[int, Field(gt=0, le=MAX_BATCH)]
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)]
    patience: NonNegativeInt
    # A small training set repeats within an epoch until the run has this many steps; bounded with
    # epochs and batch_size by pass_problem.
    min_steps: NonNegativeInt
    # cnn: one block per entry, then the dense layer after the blocks, with dropout before and after it.
    conv_filters: Annotated[list[Annotated[int, Field(gt=0, le=MAX_FILTERS)]], Field(min_length=1, max_length=MAX_BLOCKS)]
    conv_dense_units: Annotated[int, Field(gt=0, le=MAX_UNITS)]
    dropout: DropoutRate

    def pass_problem(self, section: str) -> str | None:
        """min_steps must not make an epoch gather more than MAX_PASS_IMAGES images at once."""
        images = math.ceil(self.min_steps / self.epochs) * self.batch_size
        if images <= MAX_PASS_IMAGES:
            return None
        return (
            f"{PARAMS_FILE}: {section}.min_steps = {self.min_steps} is invalid: with epochs {self.epochs} and "
            f"batch_size {self.batch_size} an epoch gathers {images:,} images at once; allowed up to "
            f"{MAX_PASS_IMAGES:,} (750 MiB): lower min_steps or batch_size, or raise epochs"
        )


class Teacher(Training):
    """The teacher's recipe: the same keys as a student's, without a transfer set."""


class Student(Training):
    # The transfer set: a stratified, seeded share of the training split that both students train
    # on; the teacher always sees the whole split. Seeded by student.seed, and nested: for one seed
    # a smaller share is a subset of a larger one.
    train_fraction: Fraction


class Train(Section):
    """How training runs. steps_per_execution changes speed only; XLA (jit_compile) rounds differently,
    and so does each numerics mode (common/numerics.py)."""

    # portable: the same bits on any core count, whatever the CPU has beyond AVX2; native: all of this CPU
    numerics: Literal[numerics.MODES]
    strategy: Literal["auto", "default", "mirrored"]
    jit_compile: Literal["auto", True, False]  # auto: XLA for MLPs; see models.use_xla
    steps_per_execution: PositiveInt


class Distill(Section):
    temperature: PositiveFloat
    alpha: UnitFloat  # weight on the hard-label loss; 1 - alpha goes to the teacher


class Evaluate(Section):
    # More bins than test images would leave most of them empty.
    ece_bins: Annotated[int, Field(gt=0, le=EXPECTED_COUNTS["t10k"])]


class Export(Section):
    # Training images that set the int8 model's ranges; at most the training split (Params checks).
    calibration_images: PositiveInt


class Params(Section):
    seed: NonNegativeInt  # the train/val split and the subsets; each model has its own seed
    prepare: Prepare
    train: Train
    teacher: Teacher
    student: Student
    distill: Distill
    evaluate: Evaluate
    export: Export

    def calibration_problem(self) -> str | None:
        """The int8 calibration sample must fit in the training split, whose size prepare sets."""
        split = (self.prepare.subset or EXPECTED_COUNTS["train"]) - self.prepare.val_size
        if self.export.calibration_images <= split:
            return None
        return (
            f"{PARAMS_FILE}: export.calibration_images = {self.export.calibration_images} is invalid: allowed "
            f"1..{split}, the training split's size (prepare.subset = {self.prepare.subset}, "
            f"prepare.val_size = {self.prepare.val_size})"
        )


def _allowed_keys(model: type[BaseModel], location: tuple) -> list[str]:
    for key in location:
        if isinstance(key, int):
            continue
        annotation = model.model_fields[key].annotation
        model = next(
            (arg for arg in (annotation, *getattr(annotation, "__args__", ()))
             if isinstance(arg, type) and issubclass(arg, BaseModel)),
            None,
        )
        if model is None:
            return []
    return list(model.model_fields)


def _describe(error: dict) -> str:
    location = tuple(error["loc"])
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location)[1:]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(Params, location[:-1])
        hint = difflib.get_close_matches(str(location[-1]), allowed, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{PARAMS_FILE}: unknown key '{key}'{suggestion}; allowed here: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{PARAMS_FILE}: missing key '{key}'"
    message = error["msg"][0].lower() + error["msg"][1:]
    return f"{PARAMS_FILE}: {key} = {error['input']!r} is invalid: {message}"


def validate(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise UserError(f"{PARAMS_FILE}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        validated = Params.model_validate(raw)
    except ValidationError as error:
        # The first problem is the one to fix; one line keeps the message readable.
        raise UserError(_describe(error.errors()[0])) from None
    problems = (validated.prepare.val_size_problem(), validated.teacher.pass_problem("teacher"),
                validated.student.pass_problem("student"), validated.calibration_problem())
    if problem := next((problem for problem in problems if problem), None):
        raise UserError(problem)
    return validated


def parse_yaml(text: str):
    """YAML 1.2 through ruamel's safe loader, exactly as DVC reads params.yaml.

    PyYAML follows YAML 1.1, where `1e-05` (as `dvc exp run -S` writes 0.00001) is a string and
    `yes` is a bool; the stages must see the values that DVC records for the experiment.
    """
    return YAML(typ="safe").load(text)


def _yaml_problem(error) -> str:
    """ruamel's multi-line report cut to one line: where, then what."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def load(path: Path = PARAMS_FILE) -> Params:
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run from the repository root") from None
    except YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({_yaml_problem(error)})") from None
    return validate(raw)
