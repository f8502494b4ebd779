"""A teacher from a file: its conventions, checks and one-line refusals, on small models saved here."""

import zipfile

import keras
import numpy as np
import pytest

from common import data, fashion_mnist, params, teachers, weights
from common.cli import UserError

FASHION = fashion_mnist.DATASET
COLOUR = data.Dataset("folder", ("cat", "dog", "owl"), (8, 8, 3))


def teacher_params(path, inputs="pixels", outputs="logits") -> params.Teacher:
    defaults = params.load().teacher.model_dump()
    return params.Teacher(**{**defaults, "source": "file", "path": str(path), "inputs": inputs, "outputs": outputs})


def images(dataset: data.Dataset, count: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *dataset.image_shape), dtype=np.uint8)


def small_model(input_shape, classes: int, *, rescale: bool, softmax: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs) if rescale else inputs
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(classes, activation="softmax" if softmax else None)(x)
    return keras.Model(inputs, outputs)


def saved(model: keras.Model, tmp_path, name: str = "teacher.keras"):
    path = tmp_path / name
    model.save(path)
    return path


def test_a_pixels_teacher_gives_its_own_logits(tmp_path):
    model = small_model((28, 28, 1), 10, rescale=True)
    teacher = teachers.from_file(teacher_params(saved(model, tmp_path)), FASHION)
    batch = images(FASHION)
    expected = model.predict(batch[..., None].astype(np.float32), verbose=0)
    assert teacher.name == "teacher"
    np.testing.assert_allclose(teacher.predict(batch, verbose=0), expected, rtol=1e-6, atol=1e-6)


def test_a_unit_teacher_gets_pixels_divided_by_255(tmp_path):
    model = small_model((8, 8, 3), 3, rescale=False)
    teacher = teachers.from_file(teacher_params(saved(model, tmp_path), inputs="unit"), COLOUR)
    batch = images(COLOUR)
    expected = model.predict(batch.astype(np.float32) / 255, verbose=0)
    np.testing.assert_allclose(teacher.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_probabilities_become_log_probabilities(tmp_path):
    model = small_model((8, 8, 3), 3, rescale=True, softmax=True)
    path = saved(model, tmp_path)
    with pytest.raises(UserError, match=r"ends in a softmax, so it outputs probabilities; set teacher.outputs: probabilities"):
        teachers.from_file(teacher_params(path), COLOUR)
    teacher = teachers.from_file(teacher_params(path, outputs="probabilities"), COLOUR)
    batch = images(COLOUR)
    probabilities = model.predict(batch.astype(np.float32), verbose=0)
    logits = teacher.predict(batch, verbose=0)
    np.testing.assert_allclose(logits, np.log(probabilities), rtol=1e-5, atol=1e-5)
    # A zero probability stays finite: log of float32's smallest normal number.
    zero = teachers.LogProbabilities()(np.array([[0.0, 1.0]], dtype=np.float32))
    assert float(zero[0, 0]) == pytest.approx(np.log(np.finfo(np.float32).tiny))


def test_declared_outputs_are_checked_against_real_outputs():
    probabilities = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    with pytest.raises(UserError, match=r"every output row is in \[0, 1\] and sums to 1: these are probabilities"):
        teachers.check_outputs(teacher_params("t.keras"), probabilities)
    teachers.check_outputs(teacher_params("t.keras", outputs="probabilities"), np.log(probabilities))
    with pytest.raises(UserError, match=r"teacher.outputs is probabilities, but its output rows sum to"):
        teachers.check_outputs(teacher_params("t.keras", outputs="probabilities"), np.array([[2.0, -1.0]]))
    with pytest.raises(UserError, match=r"t.keras: non-finite outputs for 1 of 2 validation images"):
        teachers.check_outputs(teacher_params("t.keras"), np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_a_chance_level_teacher_gets_a_warning():
    assert teachers.chance_warning(0.12, FASHION).startswith("warning: validation accuracy 0.1200 is near chance (0.1000)")
    assert teachers.chance_warning(0.6, FASHION) is None


@pytest.mark.parametrize(
    "input_shape, classes, dataset, message",
    [
        ((32, 32, 3), 10, FASHION, "takes images of shape (32, 32, 3); the data are (28, 28, 1) (28x28, grayscale"),
        ((28, 28, 1), 5, FASHION, "outputs shape (5); the data have 10 classes (T-shirt/top, Trouser, Pullover, Dress, Coat, ...)"),
        ((8, 8, 1), 3, COLOUR, "takes images of shape (8, 8, 1); the data are (8, 8, 3) (8x8, RGB"),
    ],
    ids=["size", "classes", "channels"],
)
def test_a_teacher_that_does_not_fit_the_data_is_one_line(tmp_path, input_shape, classes, dataset, message):
    path = saved(small_model(input_shape, classes, rescale=True), tmp_path)
    with pytest.raises(UserError) as raised:
        teachers.from_file(teacher_params(path), dataset)
    assert str(raised.value).startswith(f"{path}: {message}")
    assert "\n" not in str(raised.value)


def test_flexible_and_channel_free_inputs_fit(tmp_path):
    flexible = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    assert teachers.from_file(teacher_params(saved(flexible, tmp_path)), COLOUR).predict(images(COLOUR), verbose=0).shape == (6, 3)
    channel_free = small_model((28, 28), 10, rescale=True)
    assert teachers.from_file(teacher_params(saved(channel_free, tmp_path, "flat.keras")), FASHION).predict(
        images(FASHION), verbose=0).shape == (6, 10)


def test_bad_teacher_files_are_one_line_each(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "none.keras", "no such file or folder; a .keras file or a SavedModel folder is needed")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    cases["suffix"] = (tmp_path / "weights.h5", "a .h5 file; teacher.source: file reads a .keras file")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    cases["garbage"] = (tmp_path / "garbage.keras", "not a loadable Keras model (")
    (tmp_path / "empty_folder").mkdir()
    cases["folder"] = (tmp_path / "empty_folder", "is a folder without saved_model.pb")
    with zipfile.ZipFile(tmp_path / "no_config.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    cases["no-config"] = (tmp_path / "no_config.keras", "not a loadable Keras model (")
    for name, (path, message) in cases.items():
        with pytest.raises(UserError) as raised:
            teachers.from_file(teacher_params(path), FASHION)
        assert message in str(raised.value), name
        assert "\n" not in str(raised.value), name


def test_code_in_a_teacher_file_is_not_run(tmp_path):
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2)(inputs)))
    path = saved(keras.Model(inputs, outputs), tmp_path)
    with pytest.raises(UserError, match=r"not a loadable Keras model \(ValueError: .*Lambda layers are not loaded"):
        teachers.from_file(teacher_params(path), FASHION)


def test_a_saved_model_folder_teaches_and_its_weights_round_trip(tmp_path):
    model = small_model((8, 8, 3), 3, rescale=True)
    model.export(tmp_path / "exported", verbose=False)
    teacher = teachers.from_file(teacher_params(tmp_path / "exported"), COLOUR)
    batch = images(COLOUR)
    np.testing.assert_allclose(teacher.predict(batch, verbose=0), model.predict(batch.astype(np.float32), verbose=0),
                               rtol=1e-5, atol=1e-6)
    weights.save_weights(teacher, str(tmp_path / "teacher.weights.h5"))
    again = weights.load_into(teachers.from_file(teacher_params(tmp_path / "exported"), COLOUR),
                              str(tmp_path / "teacher.weights.h5"), "of the SavedModel")
    np.testing.assert_array_equal(again.predict(batch, verbose=0), teacher.predict(batch, verbose=0))
