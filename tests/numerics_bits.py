"""One fresh process's trained bits under the numerics that ./params.yaml names, for test_numerics.

    cd FOLDER_WITH_PARAMS_YAML && PYTHONPATH=ROOT python ROOT/tests/numerics_bits.py [--cnn-images N] [--inference]

Trains the pipeline's layer shapes briefly on fixed random images: a 784-128-10 MLP under XLA and the
CNN teacher's two blocks (32 and 64 filters) without it, in that order (op determinism, which the
CNN turns on, keeps Keras from XLA for the rest of a process). Shapes this size are needed: on a tiny
CNN the thread pool's size changes no bit, and the test would show nothing. --cnn-images 128 trains
the CNN one step at the same shapes, for an emulated CPU, on which a step takes minutes. --inference
adds the trained CNN's logits from Keras's predict and its float32 LiteRT file, the two places where
graph rewriters once brought the CPU's own rsqrt estimate back. Prints one JSON line: each digest
and the settings TensorFlow read.
"""

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

import common  # noqa: F401  (first: it applies ./params.yaml's train.numerics before TensorFlow loads)
from common import architectures, deploy, fashion_mnist, losses, numerics, params, training

ENGINE = params.Train(numerics="portable", strategy="default", jit_compile="auto", steps_per_execution=4)
MLP = params.Training(arch="mlp", conv_filters=[8], conv_dense_units=8, dropout=0.0, norm_momentum=0.99, seed=3, hidden_units=[128], learning_rate=0.001, decay_steps=None, decay_alpha=0.01,
                      batch_size=256, epochs=1, patience=1, min_steps=0)
CNN = params.Training(seed=5, hidden_units=[8], learning_rate=0.001, decay_steps=None, decay_alpha=0.01, batch_size=128,
                     epochs=1, patience=1, min_steps=0, arch="cnn", conv_filters=[32, 64], conv_dense_units=64,
                     dropout=0.3, norm_momentum=0.99)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trained(recipe: params.Training, count: int):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count)
    training.make_deterministic(recipe, ENGINE)
    model = architectures.build(recipe, "student" if recipe is MLP else "teacher", fashion_mnist.DATASET)
    training.fit(model, recipe, ENGINE, images, labels, images[:256], labels[:256], stage="numerics_bits",
               recipe_name="numerics_bits", loss=losses.label_loss())
    return model, images


def inference_digests(model, images: np.ndarray) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        saved_model = Path(folder) / deploy.SAVED_MODEL
        deploy.save_saved_model(model, saved_model, fashion_mnist.DATASET)
        return {"cnn_predict": digest(model.predict(images, batch_size=64, verbose=0).tobytes()),
                "cnn_float32_tflite": digest(deploy.to_tflite(saved_model))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cnn-images", type=int, default=512)
    parser.add_argument("--inference", action="store_true")
    args = parser.parse_args()
    mlp, _ = trained(MLP, 2048)
    cnn, images = trained(CNN, args.cnn_images)
    print(json.dumps({
        "mode": numerics.mode,
        "environment": {name: os.environ.get(name) for name in [*numerics.ENVIRONMENT, "XLA_FLAGS"]},
        "mlp_xla": training.use_xla(ENGINE, MLP),
        "mlp": digest(b"".join(weights.tobytes() for weights in mlp.get_weights())),
        "cnn": digest(b"".join(weights.tobytes() for weights in cnn.get_weights())),
        **(inference_digests(cnn, images) if args.inference else {}),
    }))


if __name__ == "__main__":
    main()
