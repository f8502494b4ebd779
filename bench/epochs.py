"""One process's epoch timings, for bench.run: `python -m bench.epochs {old,new} EPOCHS` in a pipeline repo.

Each engine runs in its own process, as a stage does, because op determinism, which the old path
turns on, cannot be turned off again in a process and keeps Keras from using XLA.

    old: today's path before the speed work: no XLA, one step per call, op determinism on
    new: params.yaml's train section (XLA for the MLPs, 16 steps per call)

Prints one JSON line: import seconds, first-epoch seconds (graph tracing and XLA compilation) and
the seconds of each later epoch, for the student and the distilled student; the new engine also
times the student-shaped matmul that the training rate is compared with.
"""

import time

IMPORTS_STARTED = time.perf_counter()

import argparse  # noqa: E402  (the imports are what the first figure times)
import json  # noqa: E402

import common  # noqa: E402,F401  (first: it sets the environment TensorFlow reads at import)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import reference_distill, timed  # noqa: E402
from common import data, losses, models, params  # noqa: E402

IMPORTS_S = time.perf_counter() - IMPORTS_STARTED
OLD_ENGINE = params.Train(strategy="default", jit_compile=False, steps_per_execution=1)


class EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def matmul_gflops(batch: int, inputs: int, units: int, repeats: int = 400) -> float:
    """The rate of one training-step-sized matmul, (batch x inputs) . (inputs x units), many in one call."""
    a = tf.random.stateless_uniform((batch, inputs), seed=(1, 2))
    b = tf.random.stateless_uniform((inputs, units), seed=(3, 4))

    @tf.function(jit_compile=True)
    def chain(a, b):
        total = tf.zeros((batch, units))
        for _ in range(repeats):
            total += tf.matmul(a, b)
            a = a + 1e-3  # a new product each time, which XLA cannot fold away
        return total

    chain(a, b).numpy()  # compile
    best = min(timed(lambda: chain(a, b).numpy())[0] for _ in range(5))
    return 2 * batch * inputs * units * repeats / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=("old", "new"))
    parser.add_argument("epochs", type=int)
    args = parser.parse_args()

    config = params.load()
    engine = OLD_ENGINE if args.engine == "old" else config.train
    recipe = config.student.model_copy(update={"epochs": args.epochs, "patience": args.epochs})
    train, val = data.load_split("train"), data.load_split("val")
    label_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    models.make_deterministic(recipe, engine)

    def epochs_of(model, x, y, x_val, y_val, loss=None) -> dict:
        clock = EpochClock()
        models.fit(model, recipe, engine, x, y, x_val, y_val, stage="bench", recipe_name="student", loss=loss,
                   callbacks=[clock])
        return {"first_epoch_s": round(clock.seconds[0], 3), "epochs_s": [round(t, 3) for t in clock.seconds[1:]]}

    teacher = models.load_model("teacher", config.teacher, models.weights_path("teacher"))
    logits_s, _ = timed(lambda: models.predict_logits(teacher, train))
    targets = [{"label": split.labels, "teacher_logits": models.predict_logits(teacher, split)} for split in (train, val)]

    student = models.build_mlp(recipe.hidden_units, "student")
    result = {
        "engine": args.engine,
        "xla": models.use_xla(engine),
        "steps_per_execution": models.steps_per_execution(engine),
        "imports_s": round(IMPORTS_S, 2),
        "teacher_logits_s": round(logits_s, 3),
        "student": epochs_of(student, train.images, train.labels, val.images, val.labels, label_loss),
        "distill": epochs_of(
            losses.TeacherLogitsDistiller(models.build_mlp(recipe.hidden_units, "distilled"),
                                          losses.DistillationLoss(config.distill.temperature, config.distill.alpha)),
            train.images, targets[0], val.images, targets[1],
        ),
        "train_images": len(train),
        "val_images": len(val),
        "student_weights": student.count_params(),
    }
    if args.engine == "old":
        # Reference-style distillation: the teacher runs forward on every step.
        reference = reference_distill.build(teacher, recipe, config.distill)
        result["reference_distill"] = epochs_of(reference, train.images, train.labels, val.images, val.labels, label_loss)
    else:
        result["matmul_gflops"] = round(matmul_gflops(recipe.batch_size, 784, recipe.hidden_units[0]), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
