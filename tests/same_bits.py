"""What `dvc repro -f` relies on, done once in a fresh process: conftest's `same_bits` runs it twice.

    python tests/same_bits.py FOLDER

Trains a tiny MLP with XLA and a tiny CNN without (op determinism, which the CNN turns on, keeps
Keras from XLA for the rest of a process, hence this order), exports the CNN into FOLDER as the
export stage does, and prints one JSON line: the weights' digests and every exported file's.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from common import architectures, deploy, fashion_mnist, losses, params, training

ENGINE = params.Train(numerics="portable", strategy="default", jit_compile="auto", steps_per_execution=4)
MLP = params.Training(arch="mlp", conv_filters=[8], conv_dense_units=8, dropout=0.0, norm_momentum=0.99, seed=3, hidden_units=[32], learning_rate=0.01, decay_steps=50, decay_alpha=0.1,
                      batch_size=32, epochs=2, patience=2, min_steps=0)
CNN = params.Training(seed=5, hidden_units=[8], learning_rate=0.01, decay_steps=None, decay_alpha=0.1, batch_size=16,
                     epochs=2, patience=2, min_steps=0, arch="cnn", conv_filters=[4, 8], conv_dense_units=16, dropout=0.3, norm_momentum=0.99)


def digest(model) -> str:
    return hashlib.sha256(b"".join(weights.tobytes() for weights in model.get_weights())).hexdigest()


def trained(recipe: params.Training, count: int):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count)
    training.make_deterministic(recipe, ENGINE)
    model = architectures.build(recipe, "student" if recipe is MLP else "teacher", fashion_mnist.DATASET)
    initial = model.get_weights()
    training.fit(model, recipe, ENGINE, images, labels, images, labels, stage="same_bits", recipe_name="same_bits",
               loss=losses.label_loss())
    changed = all(not np.array_equal(a, b) for a, b in zip(initial, model.get_weights()) if a.ndim > 1)
    return model, changed


def main() -> None:
    folder = Path(sys.argv[1])
    mlp, mlp_changed = trained(MLP, 320)
    cnn, cnn_changed = trained(CNN, 96)
    deploy.save_saved_model(cnn, folder / deploy.SAVED_MODEL, fashion_mnist.DATASET)
    (folder / deploy.INT8).write_bytes(deploy.to_tflite(folder / deploy.SAVED_MODEL, np.full((8, 28, 28), 7, np.uint8)))
    exported = {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sorted(folder.rglob("*")) if path.is_file()}
    print(json.dumps({
        "mlp": {"xla": mlp.jit_compile, "weights_changed": mlp_changed, "digest": digest(mlp)},
        "cnn": {"xla": cnn.jit_compile, "weights_changed": cnn_changed, "digest": digest(cnn)},
        "exported": exported,
    }))


if __name__ == "__main__":
    main()
