"""The deployable formats: a SavedModel, a float32 LiteRT file and an int8 one, written and run.

Every exported model takes raw uint8 images, (n, 28, 28) for Fashion-MNIST and (n, *image_shape) for
a folder dataset, and returns float32 logits, as the Keras models do: the scaling to [0, 1] is inside
the graph, so a deployer feeds pixels as they are. Beside each model, dataset.json names its classes
and image shape.

TensorFlow is imported only by the functions that write or run a SavedModel: running a .tflite file
needs ai-edge-litert alone, so `tools.predict` starts in a fraction of TensorFlow's import time.
"""

import hashlib
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from common.cli import UserError
from common.data import Dataset

SAVED_MODEL, FLOAT32, INT8 = "saved_model", "float32.tflite", "int8.tflite"
FORMATS = (SAVED_MODEL, FLOAT32, INT8)
SIGNATURE = "serving_default"
CHUNK = 1000  # images per call when scoring a whole split: bounds the CNN's activations to about 100 MB


EXPORT_ROOT = Path("models/export")


def export_path(model_name: str, file_format: str) -> Path:
    return EXPORT_ROOT / model_name / file_format


def save_saved_model(model, directory: Path, dataset: Dataset) -> None:
    """A byte-stable SavedModel with one signature, `serving_default`: image (uint8) -> logits.

    Keras's own `model.export` writes the variables in an order that changes from process to process
    (it follows object identities), so two exports of the same weights differ. A plain tf.Module that
    lists the variables in layer order saves the same bytes every time, except for the random `uuid`
    that TensorFlow puts in fingerprint.pb; that is replaced by a hash of the model's own checksum.
    """
    import tensorflow as tf

    module = tf.Module()
    module.weights = [weight.value for weight in model.weights]
    module.serve = tf.function(
        lambda image: {"logits": model(image, training=False)},
        input_signature=[tf.TensorSpec((None, *dataset.image_shape), tf.uint8, name="image")],
    )
    tf.saved_model.save(module, str(directory), signatures={SIGNATURE: module.serve})
    _pin_fingerprint(directory / "fingerprint.pb")


def _pin_fingerprint(path: Path) -> None:
    from tensorflow.core.protobuf import fingerprint_pb2

    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    fingerprint.uuid = str(int(hashlib.sha256(str(fingerprint.saved_model_checksum).encode()).hexdigest()[:30], 16))
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def to_tflite(saved_model: Path, calibration_images: np.ndarray | None = None) -> bytes:
    """The SavedModel as LiteRT flatbuffer bytes: float32, or int8 when calibration images are given.

    int8 is full-integer post-training quantization: weights and activations in int8, with ranges
    measured on `calibration_images` (training images, never test ones); uint8 pixels in, float32
    logits out.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    if calibration_images is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter.convert()


def require_export(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro export` (or `dvc pull`)")


def tflite_interpreter(path: Path, threads: int | None = None) -> Interpreter:
    require_export(path)
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def run_tflite(interpreter: Interpreter, images: np.ndarray) -> np.ndarray:
    """Logits for `images` from a LiteRT interpreter, in chunks of at most CHUNK images."""
    logits = []
    for start in range(0, len(images), CHUNK):
        batch = images[start:start + CHUNK]
        (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
        if tuple(entry["shape"]) != batch.shape:
            interpreter.resize_tensor_input(entry["index"], batch.shape)
            interpreter.allocate_tensors()
            (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.set_tensor(entry["index"], batch)
        interpreter.invoke()
        logits.append(interpreter.get_tensor(exit_["index"]).copy())
    return np.concatenate(logits)


def run_saved_model(directory: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(directory)).signatures[SIGNATURE]
    return np.concatenate([
        serve(image=tf.constant(images[start:start + CHUNK]))["logits"].numpy()
        for start in range(0, len(images), CHUNK)
    ])


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(file.stat().st_size for file in sorted(path.rglob("*")) if file.is_file())
    return path.stat().st_size
