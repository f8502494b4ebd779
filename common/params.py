"""The schema of params.yaml: every stage validates the whole file before doing any work."""

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML, YAMLError

from common import numerics
from common.cli import UserError
from common.data import size_problem
from common.fashion_mnist import EXPECTED_COUNTS, IMAGE_SHAPE, NUM_CLASSES

PARAMS_FILE = Path("params.yaml")

# Upper bounds on every value that sets memory or time; docs/params.md gives the reason for each.
MAX_UNITS = 16_384  # a dense layer's width
MAX_LAYERS = 16
MAX_FILTERS = 1_024
# Each CNN block halves the image with its max-pooling: 28 pixels are 1 after four blocks, 0 after five.
# The schema allows blocks for the largest image_size; Params.blocks_problem holds them to the data's.
MAX_SIDE = 1_024
MAX_BLOCKS = int(math.log2(MAX_SIDE))
# The CNN's first block holds 1.6 GB of activations for a batch this size.
MAX_BATCH = 16_384
MAX_EPOCHS = 10_000
# An epoch's rows are drawn as one permutation (feeding.epoch_batches), which a run keeps per
# pass: a million rows is 8 MB of indices and, at Fashion-MNIST's size, an epoch of a few minutes.
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


class Data(Section):
    """Where the images come from: Fashion-MNIST, or a folder of class folders (common/image_folders.py)."""

    source: Literal["fashion-mnist", "folder"]
    # The folder (data.source: folder). DVC depends on it whatever the source, so it always names an
    # existing folder: the default, data/images, is an empty one kept in git.
    path: Annotated[str, Field(min_length=1)]
    layout: Literal["classes", "train_test"]
    test_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]  # layout classes: the test split
    image_size: Annotated[list[Annotated[int, Field(gt=0, le=MAX_SIDE)]], Field(min_length=2, max_length=2)] | None
    # An int field, not Literal[1, 3]: a Literal would take YAML's `true` as 1.
    channels: Annotated[int, Field(ge=1, le=3)]

    def problem(self) -> str | None:
        if self.channels == 2:
            return f"{PARAMS_FILE}: data.channels = 2 is invalid: input should be 1 (grayscale) or 3 (RGB)"
        if self.source == "fashion-mnist" and (self.image_size is not None or self.channels != 1):
            return (f"{PARAMS_FILE}: data.image_size = {self.image_size} and data.channels = {self.channels} are for "
                    f"data.source: folder; Fashion-MNIST is 28x28 grayscale: set them to null and 1")
        return None


class Prepare(Section):
    val_size: PositiveInt
    # At least one image per class; at most the whole training set (checked against a folder by prepare).
    subset: Annotated[int, Field(ge=2)] | None

    def size_problem(self, data: Data) -> str | None:
        """For Fashion-MNIST the sizes are known now; a folder's are checked by prepare once it is read."""
        if data.source != "fashion-mnist":
            return None
        if self.subset is not None and not NUM_CLASSES <= self.subset <= EXPECTED_COUNTS["train"]:
            return (f"{PARAMS_FILE}: prepare.subset = {self.subset} is invalid: allowed "
                    f"{NUM_CLASSES}..{EXPECTED_COUNTS['train']}, Fashion-MNIST's training images")
        pool = self.subset or EXPECTED_COUNTS["train"]
        return size_problem("prepare.val_size", self.val_size, pool, "training images", NUM_CLASSES)


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
    # cnn: the batch normalisation's moving-average momentum. Its statistics start at mean 0 and
    # variance 1 and keep momentum ** steps of that start: 0.99 needs about 700 steps to forget it,
    # 0.9 about 70, which suits a run on a few hundred images (training.settle_batch_norm).
    norm_momentum: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]

    def pass_problem(self, section: str) -> str | None:
        """min_steps must not make an epoch draw more than MAX_PASS_IMAGES images."""
        images = math.ceil(self.min_steps / self.epochs) * self.batch_size
        if images <= MAX_PASS_IMAGES:
            return None
        return (
            f"{PARAMS_FILE}: {section}.min_steps = {self.min_steps} is invalid: with epochs {self.epochs} and "
            f"batch_size {self.batch_size} an epoch draws {images:,} images; allowed up to "
            f"{MAX_PASS_IMAGES:,}: lower min_steps or batch_size, or raise epochs"
        )


class Teacher(Training):
    """The teacher: trained from the recipe (the same keys as a student's, without a transfer set), or
    taken from a Keras file (common/teachers.py), whose conventions the last three keys declare."""

    source: Literal["train", "file"]
    # A .keras file or a SavedModel folder. DVC depends on it whatever the source, so it always names
    # an existing path: the default, models/teachers, is an empty folder kept in git.
    path: Annotated[str, Field(min_length=1)]
    inputs: Literal["pixels", "unit"]  # pixels: values 0-255 (any scaling inside the model); unit: [0, 1]
    outputs: Literal["logits", "probabilities"]


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
    jit_compile: Literal["auto", True, False]  # auto: XLA for MLPs; see training.use_xla
    steps_per_execution: PositiveInt


class Distill(Section):
    temperature: PositiveFloat
    alpha: UnitFloat  # weight on the hard-label loss; 1 - alpha goes to the teacher
    # The images the soft term covers: the labelled ones (the student's train_fraction), or every
    # training image, labels unused (losses.TransferSetDistiller).
    transfer: Literal["labelled", "all"]
    # fixed: the teacher's logits computed once, for the images as they are. consistent: a new random
    # view of each batch every step, labelled by the teacher inside the step (common/views.py); the
    # next three keys shape the view and apply to it alone.
    views: Literal["fixed", "consistent"]
    shift: Annotated[int, Field(ge=0, le=MAX_SIDE)]  # pixels, each way; below half the image's shorter side
    flip: bool    # left-right, half of the images
    mixup: bool   # blend each image with another at a uniform ratio; the hard term blends the labels alike

    def views_problem(self, side: int | None) -> str | None:
        if self.views == "consistent" and self.transfer == "all":
            return (f"{PARAMS_FILE}: distill.views = consistent is invalid with distill.transfer = all: allowed "
                    f"with transfer labelled (the teacher labels the student's batch), or views fixed")
        if side is not None and 2 * self.shift >= side:
            return (f"{PARAMS_FILE}: distill.shift = {self.shift} is invalid: allowed 0..{(side - 1) // 2}, "
                    f"below half the images' {side}-pixel side")
        return None


class Evaluate(Section):
    # More bins than test images would leave most of them empty.
    ece_bins: Annotated[int, Field(gt=0, le=EXPECTED_COUNTS["t10k"])]


class Export(Section):
    # Training images that set the int8 model's ranges; at most the training split (Params checks).
    calibration_images: PositiveInt


class Params(Section):
    seed: NonNegativeInt  # the train/val split and the subsets; each model has its own seed
    data: Data
    prepare: Prepare
    train: Train
    teacher: Teacher
    student: Student
    distill: Distill
    evaluate: Evaluate
    export: Export

    def image_side(self) -> int | None:
        """The shorter side of the prepared images, where params alone tell it."""
        if self.data.source == "fashion-mnist":
            return min(IMAGE_SHAPE)
        return min(self.data.image_size) if self.data.image_size else None

    def blocks_problem(self) -> str | None:
        """Each CNN block halves the image: the image must keep at least one pixel through them all."""
        side = self.image_side()
        built = [("student", self.student)] + ([("teacher", self.teacher)] if self.teacher.source == "train" else [])
        for section, recipe in built:
            if recipe.arch == "cnn" and side is not None and side >> len(recipe.conv_filters) == 0:
                return (f"{PARAMS_FILE}: {section}.conv_filters = {recipe.conv_filters} is invalid: {len(recipe.conv_filters)} "
                        f"blocks halve a {side}-pixel side to nothing; allowed 1..{int(math.log2(side))} blocks")
        return None

    def calibration_problem(self) -> str | None:
        """The int8 calibration sample must fit in the training split, whose size prepare sets."""
        if self.data.source != "fashion-mnist":
            return None  # a folder's size is known to export, which checks it
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
    problems = (validated.data.problem(), validated.prepare.size_problem(validated.data),
                validated.teacher.pass_problem("teacher"), validated.student.pass_problem("student"),
                validated.blocks_problem(), validated.calibration_problem(),
                validated.distill.views_problem(validated.image_side()))
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
