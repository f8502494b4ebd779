"""A teacher you already have: a Keras model from a file, checked against the data and brought to the
pipeline's conventions, so distill, evaluate and export treat it as they treat a teacher trained here.

The contract (params.yaml, teacher.*):
- `path` is a `.keras` file (Keras 3's format, loaded in safe mode: no Lambda layers or other code
  from the file runs) or a SavedModel folder (its `serving_default` signature, one input, one output).
- Input: one image batch, NHWC, of the data's size; (n, h, w) and (n, h, w, 1) are the same thing for
  grayscale. `inputs: pixels` (the default) feeds values 0-255, as the project's own models take them,
  with any scaling inside the model (a Rescaling layer); `inputs: unit` feeds values scaled to [0, 1].
- Output: one score per class, in the order of the data's class names (for a folder: the sorted folder
  names, as Keras's image_dataset_from_directory orders them). `outputs: logits` (the default) wants
  pre-softmax scores; a model that ends in a softmax is refused unless `outputs: probabilities` says so,
  and then its probabilities become log-probabilities, which are logits of the same distribution.
"""

from pathlib import Path

import keras
import numpy as np

from common import metrics
from common.cli import UserError
from common.data import Dataset, Split
from common.params import Teacher

# log(0) is -inf; the smallest normal float32 keeps a zero probability finite (log: about -87.3).
SMALLEST_PROBABILITY = float(np.finfo(np.float32).tiny)
# Rows that sum to 1 within this, with every entry in [0, 1], are probabilities.
SUM_TOLERANCE = 1e-3


class LogProbabilities(keras.layers.Layer):
    """Probabilities in, log-probabilities out: softmax(log p) = p, so they serve as logits."""

    def call(self, probabilities):
        return keras.ops.log(keras.ops.maximum(probabilities, SMALLEST_PROBABILITY))


def _where(teacher: Teacher) -> str:
    return f"params.yaml: teacher.path = {teacher.path!r}"


def load_file(teacher: Teacher) -> keras.Model | keras.layers.Layer:
    """The model at teacher.path, loaded without running code from it; one line if it cannot be."""
    path = Path(teacher.path)
    if not path.exists():
        raise UserError(f"{_where(teacher)}: no such file or folder; a .keras file or a SavedModel folder is needed")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"{_where(teacher)} is a folder without saved_model.pb; teacher.source: file needs "
                            f"a .keras file or a SavedModel folder")
        try:
            return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", name="saved_model")
        except Exception as error:  # TensorFlow raises many kinds for a broken SavedModel; each is this one line
            raise UserError(f"{path}: not a loadable SavedModel with a serving_default signature "
                            f"({type(error).__name__}: {_first_line(error)})") from None
    if path.suffix != ".keras":
        raise UserError(f"{_where(teacher)}: a {path.suffix or 'suffix-less'} file; teacher.source: file reads a "
                        f".keras file (model.save('teacher.keras')) or a SavedModel folder")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # a hostile or broken file can fail anywhere in Keras's loader; each is this one line
        raise UserError(f"{path}: not a loadable Keras model ({type(error).__name__}: {_first_line(error)}); "
                        f"custom layers and Lambda layers are not loaded") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else "no message"


def _shapes(model) -> tuple[tuple, tuple]:
    """(input shape, output shape) without the batch axis, for a Keras model or a SavedModel layer."""
    if isinstance(model, keras.layers.TFSMLayer):
        signature = model.call_endpoint_fn
        inputs = list(signature.structured_input_signature[1].values())
        outputs = list(signature.structured_outputs.values())
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{model.name}: a SavedModel with {len(inputs)} inputs and {len(outputs)} outputs; "
                            f"a teacher has one of each")
        return tuple(inputs[0].shape)[1:], tuple(outputs[0].shape)[1:]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"a model with {len(model.inputs)} inputs and {len(model.outputs)} outputs; a teacher has one of each")
    return tuple(model.inputs[0].shape)[1:], tuple(model.outputs[0].shape)[1:]


def _fits(declared: tuple, needed: tuple) -> bool:
    return len(declared) == len(needed) and all(side is None or side == want for side, want in zip(declared, needed))


def ends_in_softmax(model) -> bool:
    if not isinstance(model, keras.Model) or not model.layers:
        return False
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return isinstance(last, keras.layers.Softmax) or activation is keras.activations.softmax


def from_file(teacher: Teacher, dataset: Dataset) -> keras.Model:
    """The teacher file as a model named "teacher" that takes the prepared uint8 images and returns
    logits; one line naming the file if its input, classes or outputs do not fit the data."""
    model = load_file(teacher)
    try:
        input_shape, output_shape = _shapes(model)
    except UserError as error:
        raise UserError(f"{teacher.path}: {error}") from None
    height, width = dataset.image_shape[:2]
    accepted = [(height, width, dataset.channels)] + ([(height, width)] if dataset.channels == 1 else [])
    fitting = next((shape for shape in accepted if _fits(input_shape, shape)), None)
    if fitting is None:
        raise UserError(f"{teacher.path}: takes images of shape {_show(input_shape)}; the data are "
                        f"{_show(accepted[0])} ({dataset.describe_shape()}; data.image_size and data.channels set them)")
    if len(output_shape) != 1 or output_shape[0] != dataset.num_classes:
        raise UserError(f"{teacher.path}: outputs shape {_show(output_shape)}; the data have {dataset.num_classes} "
                        f"classes ({', '.join(dataset.class_names[:5])}{', ...' if dataset.num_classes > 5 else ''})")
    if ends_in_softmax(model) and teacher.outputs == "logits":
        raise UserError(f"{teacher.path}: ends in a softmax, so it outputs probabilities; set teacher.outputs: "
                        f"probabilities (they become log-probabilities) or save the model without the softmax")

    images = keras.Input(shape=dataset.image_shape, dtype="uint8", name="image")
    # Rescaling also casts the uint8 pixels to the float32 the model computes in.
    x = keras.layers.Rescaling(1 / 255 if teacher.inputs == "unit" else 1.0, name="convention")(images)
    if fitting != dataset.image_shape:
        x = keras.layers.Reshape(fitting, name="channels")(x)
    scores = model(x)
    if isinstance(scores, dict):
        scores = next(iter(scores.values()))
    if teacher.outputs == "probabilities":
        scores = LogProbabilities(name="log_probabilities")(scores)
    return keras.Model(images, scores, name="teacher")


def _show(shape: tuple) -> str:
    return "(" + ", ".join("any" if side is None else str(side) for side in shape) + ")"


def check_outputs(teacher: Teacher, logits: np.ndarray) -> None:
    """The declared output convention against what the model returned for real images."""
    broken = np.count_nonzero(~np.isfinite(logits).all(axis=1))
    if broken:
        raise UserError(f"{teacher.path}: non-finite outputs for {broken} of {len(logits)} validation images")
    looks_like_probabilities = bool(np.all(logits >= 0) and np.all(logits <= 1)
                                    and np.allclose(logits.sum(axis=1), 1, atol=SUM_TOLERANCE))
    if teacher.outputs == "logits" and looks_like_probabilities:
        raise UserError(f"{teacher.path}: every output row is in [0, 1] and sums to 1: these are probabilities, "
                        f"not logits; set teacher.outputs: probabilities")
    if teacher.outputs == "probabilities":
        sums = np.exp(logits.astype(np.float64)).sum(axis=1)
        if not np.allclose(sums, 1, atol=SUM_TOLERANCE):
            raise UserError(f"{teacher.path}: teacher.outputs is probabilities, but its output rows sum to "
                            f"{sums.min():.3g}..{sums.max():.3g}, not 1; set teacher.outputs: logits")


def chance_warning(accuracy: float, dataset: Dataset) -> str | None:
    """A line when a teacher scores near chance: the usual cause is a wrong input convention."""
    chance = 1 / dataset.num_classes
    if accuracy > 1.5 * chance:
        return None
    return (f"warning: validation accuracy {accuracy:.4f} is near chance ({chance:.4f}); check teacher.inputs "
            f"(pixels or unit) and that its classes are in the data's order ({', '.join(dataset.class_names[:3])}, ...)")


def validation_summary(teacher: Teacher, model: keras.Model, logits: np.ndarray, val: Split) -> dict:
    """metrics/training/teacher.json for a teacher from a file: what it is and how it scores on validation."""
    return {
        "source": "file",
        "path": teacher.path,
        "inputs": teacher.inputs,
        "outputs": teacher.outputs,
        "params": int(model.count_params()),
        "val_examples": len(val),
        "val_accuracy": round(metrics.accuracy(logits, val.labels), 6),
        "val_loss": round(metrics.nll(logits, val.labels), 6),
    }
