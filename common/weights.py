"""The trained models on disk: where their weights and curves live, saving and loading the weights,
and the logits of a loaded model."""

import keras
import numpy as np

from common import architectures, outputs, teachers
from common.cli import UserError
from common.data import Dataset, Split
from common.params import Params, Teacher, Training

STUDENTS = ("student", "distilled")
MODELS = ("teacher", *STUDENTS)


def weights_path(model_name: str) -> str:
    return f"models/{model_name}.weights.h5"


def curves_path(model_name: str) -> str:
    return f"metrics/curves/{model_name}"


def save_weights(model: keras.Model, path: str) -> None:
    """Saves the layer weights alone, through a side file renamed into place when complete.

    A compiled model would also save its optimizer state, which no later stage reads; an
    uncompiled model over the same layers holds the weights alone.
    """
    inference_copy = keras.Model(model.inputs, model.outputs, name=model.name)
    with outputs.replacing(path) as partial:
        inference_copy.save_weights(str(partial))


def load_model(model_name: str, recipe: Training, weights_file: str, dataset: Dataset) -> keras.Model:
    """The network params describe, with its trained weights."""
    return load_into(architectures.build(recipe, model_name, dataset), weights_file, architectures.describe(recipe))


def load_teacher(teacher: Teacher, dataset: Dataset) -> keras.Model:
    """The teacher, trained here or from a file, with the weights train@teacher wrote."""
    if teacher.source == "file":
        return load_into(teachers.from_file(teacher, dataset), weights_path("teacher"), f"of {teacher.path}")
    return load_model("teacher", teacher, weights_path("teacher"), dataset)


def load_trained(model_name: str, config: Params, dataset: Dataset) -> keras.Model:
    """The teacher, the student or the distilled student, as evaluate and export take them.

    One at a time, as export needs: Keras names a model's tensors by how many were built before it in
    the process, and a SavedModel's graph keeps those names, so building all three first would change
    the bytes of the first two exports."""
    if model_name == "teacher":
        return load_teacher(config.teacher, dataset)
    return load_model(model_name, config.student, weights_path(model_name), dataset)


def load_into(model: keras.Model, weights_file: str, architecture: str) -> keras.Model:
    try:
        model.load_weights(weights_file)
    except FileNotFoundError:
        raise UserError(f"{weights_file}: missing; run `dvc repro`") from None
    except OSError as error:
        # h5py cannot open it at all: cut short, overwritten or not HDF5.
        raise UserError(
            f"{weights_file}: not a readable weights file ({str(error).splitlines()[0]}); "
            f"`dvc checkout {weights_file}` restores it from DVC's cache, or `dvc repro` retrains"
        ) from None
    except ValueError as error:
        raise UserError(
            f"{weights_file}: does not match the architecture {architecture} in params.yaml "
            f"({str(error).splitlines()[0]}); run `dvc repro`"
        ) from None
    return model


def predict_logits(model: keras.Model, split: Split, batch_size: int = 1024) -> np.ndarray:
    """The model's logits for every image; a model whose logits are not all finite is refused."""
    logits = model.predict(split.images, batch_size=batch_size, verbose=0)
    broken = np.count_nonzero(~np.isfinite(logits).all(axis=1))
    if broken:
        raise UserError(
            f"{weights_path(model.name)}: non-finite logits for {broken} of {len(logits)} images; "
            f"the weights are broken: retrain with `dvc repro -f`"
        )
    return logits
