"""One process's epoch timings, for bench.run: `python -m bench.epochs {old,new,teacher} EPOCHS` in a pipeline repo.

Each engine runs in its own process, as a stage does, because op determinism, which the old path
turns on, cannot be turned off again in a process and keeps Keras from using XLA.

    old: the path before the speed work: no XLA, one step per call, op determinism on, Keras's own
         feeding of arrays (a gather per batch)
    new: params.yaml's train section (XLA for the MLPs, 16 steps per call) and feeding.epoch_batches,
         under the numerics params.yaml names (bench.run times both modes by rewriting it); last,
         distillation on consistent views, the teacher running in every step (no XLA with a CNN
         teacher: op determinism, which that turns on, stays on for the process)
    teacher: the teacher of params.yaml (the CNN) with that section, beside a convolution of its own
             shape, timed as the teacher trains it (no XLA for a CNN)

Prints one JSON line: import seconds, first-epoch seconds (graph tracing and XLA compilation) and
the seconds of each later epoch, for the student and the distilled student; the new engine also
times the student-shaped matmul that the training rate is compared with.
"""

import time

IMPORTS_STARTED = time.perf_counter()

import argparse  # noqa: E402  (the imports are what the first figure times)
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import common  # noqa: E402,F401  (first: it sets the environment TensorFlow reads at import)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import reference_distill, timed  # noqa: E402
from common import architectures, data, feeding, losses, numerics, params, training, views, weights  # noqa: E402

IMPORTS_S = time.perf_counter() - IMPORTS_STARTED
OLD_ENGINE = params.Train(numerics="portable", strategy="default", jit_compile=False, steps_per_execution=1)


class EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def gflops(flop: float, call, tries: int = 5) -> float:
    """The rate of `call`, which does `flop` floating-point operations: once to warm up (tracing,
    compilation), then the fastest of `tries`, since noise on a shared machine only ever adds."""
    call()
    return round(flop / min(timed(call)[0] for _ in range(tries)) / 1e9, 1)


def matmul_gflops(batch: int, inputs: int, units: int) -> dict[str, float]:
    """The rate of a training-step-sized matmul, (batch x inputs) . (inputs x units), measured two ways.

    per_call: one product per call, as a training step makes it, the way the issue measured it (about
    82 GFLOP/s then, with training at about half that). Of the per-call forms here, eager TensorFlow is
    the fastest (a tf.function, with or without XLA, pays more per call), so the ratio uses it.
    chained: 400 products in one XLA call, so no call costs anything: the kernel's own ceiling.
    """
    a = tf.random.stateless_uniform((batch, inputs), seed=(1, 2))
    b = tf.random.stateless_uniform((inputs, units), seed=(3, 4))
    flop, calls, repeats = 2 * batch * inputs * units, 2000, 400

    def per_call():
        for _ in range(calls):
            product = tf.matmul(a, b)
        return product.numpy()

    @tf.function(jit_compile=True)
    def chain(a, b):
        total = tf.zeros((batch, units))
        for _ in range(repeats):
            total += tf.matmul(a, b)
            a = a + 1e-3  # a new product each time, which XLA cannot fold away
        return total

    return {"per_call": gflops(flop * calls, per_call), "chained": gflops(flop * repeats, lambda: chain(a, b).numpy())}


def forward_macs(model: keras.Model) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, channels_out = layer.output.shape[1:]
            total += height * width * channels_out * math.prod(layer.kernel_size) * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return total


def conv_gflops(batch: int, size: int, channels_in: int, channels_out: int, repeats: int = 20) -> float:
    """The rate of one training-step-sized 3x3 convolution, many in one call, compiled as the CNN is (no XLA)."""
    images = tf.random.stateless_uniform((batch, size, size, channels_in), seed=(1, 2))
    kernel = tf.random.stateless_uniform((3, 3, channels_in, channels_out), seed=(3, 4))

    @tf.function
    def chain(images, kernel):
        total = tf.zeros((batch, size, size, channels_out))
        for _ in range(repeats):
            total += tf.nn.conv2d(images, kernel, strides=1, padding="SAME")
            images = images + 1e-3
        return total

    return gflops(2 * batch * size * size * 9 * channels_in * channels_out * repeats, lambda: chain(images, kernel).numpy())


def teacher_epochs(config: params.Params, epochs: int) -> dict:
    """The teacher's epoch times and training rate, and the rate of its second block's convolution."""
    recipe = config.teacher.model_copy(update={"epochs": epochs, "patience": epochs})
    dataset = data.load_dataset()
    train, val = data.load_split("train", dataset), data.load_split("val", dataset)
    training.make_deterministic(recipe, config.train)
    teacher = architectures.build(recipe, "teacher", dataset)
    clock = EpochClock()
    training.fit(teacher, recipe, config.train, train.images, train.labels, val.images, val.labels, stage="bench",
               recipe_name="teacher", loss=losses.label_loss(), callbacks=[clock])
    macs = forward_macs(teacher)
    # As for the student: 6 FLOPs per multiply-add for a training image, 2 for a validation image.
    images = feeding.steps_per_epoch(len(train), recipe) * recipe.batch_size
    epoch_gflop = macs * (6 * images + 2 * len(val)) / 1e9
    convolutions = [layer for layer in teacher.layers if isinstance(layer, keras.layers.Conv2D)]
    heaviest = convolutions[-1]
    epoch_s = min(clock.seconds[1:])
    return {
        "numerics": numerics.mode,
        "arch": recipe.arch,
        "xla": training.use_xla(config.train, recipe),
        "first_epoch_s": round(clock.seconds[0], 3),
        "epochs_s": [round(t, 3) for t in clock.seconds[1:]],
        "epoch_s": epoch_s,
        "forward_macs_per_image": macs,
        "epoch_gflop": round(epoch_gflop, 1),
        "gflops": round(epoch_gflop / epoch_s, 1),
        "conv_reference": f"3x3, {heaviest.input.shape[1]}x{heaviest.input.shape[2]}x{heaviest.input.shape[3]} "
                          f"to {heaviest.filters}, batch {recipe.batch_size}",
        "conv_gflops": conv_gflops(recipe.batch_size, heaviest.input.shape[1], heaviest.input.shape[3],
                                   heaviest.filters),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=("old", "new", "teacher"))
    parser.add_argument("epochs", type=int)
    args = parser.parse_args()

    config = params.load()
    if args.engine == "teacher":
        print(json.dumps(teacher_epochs(config, args.epochs)))
        return
    engine = OLD_ENGINE if args.engine == "old" else config.train
    recipe = config.student.model_copy(update={"epochs": args.epochs, "patience": args.epochs})
    dataset = data.load_dataset()
    train, val = data.load_split("train", dataset), data.load_split("val", dataset)
    label_loss = losses.label_loss()
    training.make_deterministic(recipe, engine)

    def epochs_of(model, x, y, x_val, y_val, loss=None, **views_options) -> dict:
        clock = EpochClock()
        training.fit(model, recipe, engine, x, y, x_val, y_val, stage="bench", recipe_name="student", loss=loss,
                   callbacks=[clock], keras_feeding=args.engine == "old", **views_options)
        return {"first_epoch_s": round(clock.seconds[0], 3), "epochs_s": [round(t, 3) for t in clock.seconds[1:]]}

    teacher = weights.load_teacher(config.teacher, dataset)
    logits_s, _ = timed(lambda: weights.predict_logits(teacher, train))
    targets = [{"label": split.labels, "teacher_logits": weights.predict_logits(teacher, split)} for split in (train, val)]

    student = architectures.build(recipe, "student", dataset)
    result = {
        "engine": args.engine,
        "numerics": numerics.mode,
        "xla": training.use_xla(engine, recipe),
        "steps_per_execution": training.steps_per_execution(engine),
        "imports_s": round(IMPORTS_S, 2),
        "teacher_logits_s": round(logits_s, 3),
        "student": epochs_of(student, train.images, train.labels, val.images, val.labels, label_loss),
        "distill": epochs_of(
            losses.TeacherLogitsDistiller(architectures.build(recipe, "distilled", dataset),
                                          losses.DistillationLoss(config.distill.temperature, config.distill.alpha)),
            train.images, targets[0], val.images, targets[1],
        ),
        # min_steps may cycle a small training set within an epoch: count the images an epoch trains on.
        "train_images": feeding.steps_per_epoch(len(train), recipe) * recipe.batch_size,
        "val_images": len(val),
        "student_weights": student.count_params(),
    }
    if args.engine == "old":
        # Reference-style distillation: the teacher runs forward on every step.
        reference = reference_distill.build(teacher, recipe, config.distill)
        result["reference_distill"] = epochs_of(reference, train.images, train.labels, val.images, val.labels, label_loss)
    else:
        result["matmul_gflops"] = matmul_gflops(recipe.batch_size, 784, recipe.hidden_units[0])
        # The same distillation on consistent views (params.yaml's shift, flip and mixup), the teacher in the step.
        training.make_deterministic(recipe, engine, config.teacher)
        consistent = config.distill.model_copy(update={"views": "consistent"})
        result["views_distill"] = epochs_of(
            losses.ConsistentViewsDistiller(architectures.build(recipe, "distilled", dataset),
                                            losses.DistillationLoss(consistent.temperature, consistent.alpha), teacher),
            train.images, {"label": train.labels}, val.images, {"label": val.labels},
            augment=functools.partial(views.consistent_views, settings=consistent, seed=recipe.seed + 2),
            in_step=config.teacher,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
