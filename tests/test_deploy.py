"""The exported formats of tiny models: fidelity to Keras, byte stability, and the predict command."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import architectures, data, deploy, fashion_mnist, params, training
from common import images as common_images
from tools import predict

ROOT = Path(__file__).resolve().parents[1]
ENGINE = params.Train(numerics="portable", strategy="default", jit_compile=False, steps_per_execution=1)
MLP = params.Training(arch="mlp", conv_filters=[8], conv_dense_units=8, dropout=0.0, norm_momentum=0.99, seed=1, hidden_units=[16], learning_rate=0.01, decay_steps=None, decay_alpha=0.1,
                      batch_size=32, epochs=1, patience=1, min_steps=0)
CNN = params.Training(**{**MLP.model_dump(), "arch": "cnn", "conv_filters": [4, 8], "conv_dense_units": 16, "dropout": 0.3})


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module", params=[MLP, CNN], ids=["mlp", "cnn"])
def exported(request, tmp_path_factory):
    """(Keras model, folder with the three formats) for a tiny model with random weights."""
    recipe = request.param
    training.make_deterministic(recipe, ENGINE)
    model = architectures.build(recipe, "tiny", fashion_mnist.DATASET)
    folder = tmp_path_factory.mktemp("export")
    deploy.save_saved_model(model, folder / deploy.SAVED_MODEL, fashion_mnist.DATASET)
    (folder / deploy.FLOAT32).write_bytes(deploy.to_tflite(folder / deploy.SAVED_MODEL))
    (folder / deploy.INT8).write_bytes(deploy.to_tflite(folder / deploy.SAVED_MODEL, images(64, seed=1)))
    data.write_dataset(fashion_mnist.DATASET, folder / data.DATASET_FILE)
    return model, folder


def test_float_exports_reproduce_keras(exported):
    model, folder = exported
    test_images = images(2500, seed=2)  # more than one chunk of 1000, and a short last chunk
    reference = model.predict(test_images, verbose=0)
    for logits in (
        deploy.run_saved_model(folder / deploy.SAVED_MODEL, test_images),
        deploy.run_tflite(deploy.tflite_interpreter(folder / deploy.FLOAT32), test_images),
    ):
        assert logits.shape == (2500, 10) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)
        assert np.array_equal(logits.argmax(1), reference.argmax(1))


def test_int8_export_is_smaller_and_close(exported):
    model, folder = exported
    test_images = images(500, seed=3)
    reference = model.predict(test_images, verbose=0)
    int8 = deploy.run_tflite(deploy.tflite_interpreter(folder / deploy.INT8), test_images)
    assert deploy.size_bytes(folder / deploy.INT8) < deploy.size_bytes(folder / deploy.FLOAT32) / 2
    # Quantised, not equal: on average within a few percent of the logits' own range.
    assert np.abs(int8 - reference).mean() < 0.05 * np.ptp(reference)
    assert deploy.size_bytes(folder / deploy.SAVED_MODEL) == sum(
        path.stat().st_size for path in (folder / deploy.SAVED_MODEL).rglob("*") if path.is_file())


def test_exports_are_byte_identical_across_processes(same_bits):
    """Keras's model.export orders variables by object identity; the pipeline's SavedModel must not.
    Two fresh processes (tests/same_bits.py) export the same trained CNN."""
    first, second = same_bits
    assert "saved_model/fingerprint.pb" in first["exported"] and "saved_model/variables/variables.index" in first["exported"]
    assert "int8.tflite" in first["exported"]
    assert first["exported"] == second["exported"]


# ------------------------------------------------------------------ tools.predict


def garment(size=(90, 60), light_on_dark=True) -> Image.Image:
    """A filled rectangle, the rough shape of a bag, in RGB at a size unlike 28x28."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[10:-10, 15:-15] = 230
    if not light_on_dark:
        pixels = 255 - pixels
    return Image.fromarray(pixels)


def test_a_photo_like_image_is_inverted_to_look_like_the_training_data(tmp_path):
    garment(light_on_dark=True).save(tmp_path / "dark.png")
    garment(light_on_dark=False).save(tmp_path / "light.jpg", quality=95)
    dark, light = (predict.load_image(tmp_path / name, fashion_mnist.DATASET) for name in ("dark.png", "light.jpg"))
    assert dark.shape == light.shape == (28, 28) and dark.dtype == np.uint8
    assert common_images.border_colour(dark)[0] < 10 and dark[14, 14] > 200  # dark background, light object
    assert np.abs(dark.astype(int) - light.astype(int)).max() <= 12  # the same picture, up to JPEG's loss


def test_predict_prints_every_class_with_probabilities(exported, tmp_path):
    _, folder = exported
    garment().save(tmp_path / "bag.png")
    garment(light_on_dark=False).save(tmp_path / "bag.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "tools.predict", str(tmp_path / "bag.png"), str(tmp_path / "bag.jpg"),
         "--model", str(folder / deploy.FLOAT32)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.strip().split("\n" + str(tmp_path / "bag.jpg") + ":\n")
    assert blocks[0].startswith(f"{tmp_path / 'bag.png'}:\n")
    for block in blocks:
        rows = [line.split() for line in block.splitlines() if line.startswith("  ")]
        names = [" ".join(row[:-1]) for row in rows]
        probabilities = [float(row[-1]) for row in rows]
        assert sorted(names) == sorted(fashion_mnist.CLASS_NAMES)
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1, abs=1e-3)


def test_a_missing_model_says_how_to_make_it(tmp_path):
    garment().save(tmp_path / "bag.png")
    result = subprocess.run([sys.executable, "-m", "tools.predict", str(tmp_path / "bag.png"), "--model",
                             str(tmp_path / "none.tflite")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'none.tflite'}: missing; run `dvc repro export` (or `dvc pull`)\n"
