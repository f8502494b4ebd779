"""The schema of params.yaml: every stage validates the whole file before doing any work."""

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML, YAMLError

from common import numerics
from common.cli import UserError
from common.data import EXPECTED_COUNTS, NUM_CLASSES

PARAMS_FILE = Path("params.yaml")

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
    hidden_units: Annotated[list[PositiveInt], Field(min_length=1)]
    learning_rate: PositiveFloat
    decay_steps: PositiveInt | None  # None: the cosine spans the whole run
    decay_alpha: UnitFloat
    batch_size: PositiveInt
    epochs: PositiveInt
    patience: NonNegativeInt
    min_steps: NonNegativeInt  # a small training set repeats within an epoch until the run has this many steps


class Teacher(Training):
    arch: Literal["mlp", "cnn"]  # mlp: the reference code's network, hidden_units wide
    conv_filters: Annotated[list[PositiveInt], Field(min_length=1)]  # cnn: one block per entry
    conv_dense_units: PositiveInt  # cnn: the dense layer after the conv blocks
    dropout: DropoutRate  # cnn: before and after that dense layer


class Student(Training):
    # The transfer set: a stratified, seeded share of the training split that both students train
    # on; the teacher always sees the whole split. Seeded by student.seed, and nested: for one seed
    # a smaller share is a subset of a larger one.
    train_fraction: Fraction


class Train(Section):
    """How training runs. steps_per_execution changes speed only; XLA (jit_compile) rounds differently,
    and so does each numerics mode (common/numerics.py)."""

    numerics: Literal[numerics.MODES]  # portable: the same bits on any x86-64 CPU with AVX2; native: all of this CPU
    strategy: Literal["auto", "default", "mirrored"]
    jit_compile: Literal["auto", True, False]  # auto: XLA for MLPs; see models.use_xla
    steps_per_execution: PositiveInt


class Distill(Section):
    temperature: PositiveFloat
    alpha: UnitFloat  # weight on the hard-label loss; 1 - alpha goes to the teacher


class Evaluate(Section):
    ece_bins: PositiveInt


class Export(Section):
    calibration_images: PositiveInt  # training images that set the int8 model's ranges


class Params(Section):
    seed: NonNegativeInt  # the train/val split and the subsets; each model has its own seed
    prepare: Prepare
    train: Train
    teacher: Teacher
    student: Student
    distill: Distill
    evaluate: Evaluate
    export: Export


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
    if problem := validated.prepare.val_size_problem():
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
