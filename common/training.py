"""The one training loop shared by teacher, student and distilled student, and how it runs: seeds,
XLA, distribution strategy, optimizer and schedule."""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from common import callbacks as stopping, feeding, outputs
from common.architectures import is_cnn
from common.cli import UserError
from common.params import Teacher, Train, Training


def mirrored(strategy: str) -> bool:
    """Whether params' train.strategy means MirroredStrategy on this machine."""
    return strategy == "mirrored" or (strategy == "auto" and len(tf.config.list_logical_devices("GPU")) > 1)


def use_xla(engine: Train, recipe: Training, in_step: Teacher | None = None) -> bool:
    """Whether training compiles with XLA. `auto` measures out as: yes for MLPs, whose CPU epochs it
    makes about 1.5 times faster with 16 steps a call (fused steps, no per-op dispatch); no for CNNs,
    the teacher having trained about 5 times slower with XLA on CPU, nor for a step that runs a
    teacher (`in_step`) that is a CNN or a file, whose layers are unknown; never under
    MirroredStrategy, where XLA fails to reach the other replicas' variables (TensorFlow 2.21)."""
    if mirrored(engine.strategy):
        if engine.jit_compile is True:
            raise UserError(
                "params.yaml: train.jit_compile = true does not work with MirroredStrategy "
                f"(train.strategy = {engine.strategy}); set it to auto or false"
            )
        return False
    if engine.jit_compile == "auto":
        return not is_cnn(recipe) and (in_step is None or (in_step.source == "train" and not is_cnn(in_step)))
    return engine.jit_compile


def steps_per_execution(engine: Train) -> int:
    """Under MirroredStrategy, one step per call: several fail there (TensorFlow 2.21)."""
    return 1 if mirrored(engine.strategy) else engine.steps_per_execution


def make_deterministic(recipe: Training, engine: Train, in_step: Teacher | None = None) -> None:
    """Seeds Python, NumPy and TensorFlow: same params, same bits.

    Without XLA it also pins TensorFlow's op determinism. Keras turns XLA off whenever op determinism
    is on, so with XLA seeding is all there is: XLA's CPU code is deterministic run to run, which the
    tests check byte for byte (same weights twice, and `dvc repro -f` leaving dvc.lock unchanged).
    """
    keras.utils.set_random_seed(recipe.seed)
    if not use_xla(engine, recipe, in_step):
        tf.config.experimental.enable_op_determinism()


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for params' train.strategy; models and compile belong in its scope."""
    if mirrored(name):
        return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("GPU")] or None)
    return tf.distribute.get_strategy()


def make_optimizer(recipe: Training, total_steps: int) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate,
        # Spanning the run by default: a schedule that bottoms out early wastes the last epochs.
        decay_steps=recipe.decay_steps or total_steps,
        alpha=recipe.decay_alpha,
    )
    return keras.optimizers.Adam(learning_rate=schedule, amsgrad=True)


def fit(
    model: keras.Model, recipe: Training, engine: Train, x_train, y_train, x_val, y_val, *, stage: str,
    recipe_name: str, loss=None, monitor: str = "val_loss", curves_dir=None, callbacks=(), keras_feeding: bool = False,
    augment=None, in_step: Teacher | None = None,
) -> dict:
    """Trains with early stopping on the validation metric `monitor` and restores the best epoch's weights.

    `engine` (params' train section) sets XLA and how many steps run per call into TensorFlow: 16 steps
    a call cut the per-step Python overhead that dominates a small MLP's epoch. The batches come from
    epoch_batches; `keras_feeding` hands Keras the arrays instead, as the code did before the speed
    work (the benchmark's old path).

    The test split never reaches this function: model selection sees validation data only.
    `stage` and `recipe_name` (the params section of the recipe) name the run in a divergence error.
    With `curves_dir`, dvclive logs every epoch's train and validation metrics there; the folder
    appears only when training ends well. `callbacks` are added (the benchmark times epochs with one).
    `augment` maps the training batches to what the model trains on (views.consistent_views), and
    `in_step` is the teacher that the model runs inside each step, which the choice of XLA weighs.
    Returns a summary of the run for the stage's metrics file.
    """
    # Two streams (losses.TransferSetDistiller): an epoch is one pass over the transfer images.
    two_streams = isinstance(x_train, dict)
    examples = len(x_train["transfer"]) if two_streams else len(x_train)
    steps = feeding.steps_per_epoch(examples, recipe)
    if keras_feeding:
        rows = steps * recipe.batch_size
        batches = {"x": feeding.repeat_to(x_train, rows), "y": feeding.repeat_to(y_train, rows), "batch_size": recipe.batch_size,
                   "shuffle": True, "validation_data": (x_val, y_val)}
    else:
        batching = feeding.two_stream_batches if two_streams else feeding.epoch_batches
        # shuffle=False: the order is the batches' own (Keras would warn that it ignores True).
        training_batches = batching(x_train, y_train, recipe.batch_size, steps, recipe.seed)
        batches = {"x": augment(training_batches) if augment else training_batches, "shuffle": False,
                   "validation_data": feeding.validation_batches(x_val, y_val, recipe.batch_size)}
    model.compile(
        optimizer=make_optimizer(recipe, recipe.epochs * steps),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=use_xla(engine, recipe, in_step),
        steps_per_execution=steps_per_execution(engine),
    )
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, mode="min", patience=recipe.patience, restore_best_weights=True
    )
    callbacks = [
        stopping.StopOnInterrupt(), stopping.StopOnDivergence(stage, recipe_name, recipe.learning_rate), early_stopping, *callbacks
    ]
    with outputs.replacing_dir(curves_dir) if curves_dir else contextlib.nullcontext() as staged_curves:
        if staged_curves:
            # dvc.yaml is written by hand and experiments by `dvc exp run`, so dvclive does neither.
            live = Live(str(staged_curves), dvcyaml=False, save_dvc_exp=False, report=None)
            callbacks.append(DVCLiveCallback(live=live))
        history = model.fit(**batches, epochs=recipe.epochs, callbacks=callbacks, verbose=2)
    best = early_stopping.best_epoch
    summary = {
        "train_examples": examples,
        **({"labelled_examples": len(x_train["labelled"])} if two_streams else {}),
        "steps_per_epoch": steps,
        "epochs_run": len(history.epoch),
        "best_epoch": best + 1,
        **{name: round(float(values[best]), 6) for name, values in history.history.items()},
    }
    network = getattr(model, "student", model)
    if batch_norm_unsettled(network, (best + 1) * steps):
        settle_batch_norm(network, x_train["transfer"] if two_streams else x_train, recipe.batch_size)
        # The validation scores of the weights as saved, settled statistics and all.
        validation = batches["validation_data"]
        settled = (model.evaluate(*validation, batch_size=recipe.batch_size, return_dict=True, verbose=0)
                   if isinstance(validation, tuple) else model.evaluate(validation, return_dict=True, verbose=0))
        summary |= {f"val_{name}": round(float(value), 6) for name, value in settled.items()}
        summary["batch_norm_settled"] = True
    return summary


# The share of their starting values (mean 0, variance 1) that moving statistics may still hold.
UNSETTLED = 1e-3


def batch_norm_unsettled(model: keras.Model, steps: int) -> bool:
    """Whether a batch normalisation layer's moving statistics still carry more than UNSETTLED of their
    starting values after `steps` updates: momentum ** steps. At Keras's momentum of 0.99 that is any
    run whose best epoch ended within 688 steps, as a CNN on a few hundred images does; its moving
    variance then stays near 1 while the real one may be 0.01, and the saved model scores far below
    what it learned (a 4-class folder student: 0.67 on validation instead of 0.95)."""
    return any(layer.momentum ** steps > UNSETTLED for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def settle_batch_norm(model: keras.Model, images, batch_size: int) -> None:
    """Sets each batch normalisation layer's moving mean and variance to the exact mean and variance
    of its inputs over `images`, in order, each layer seeing the layers before it already settled
    (precise batch norm, as Wu and Johnson 2021 call it). Sums in float64, a batch at a time."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        inputs = keras.Model(model.inputs, layer.input)
        count, total, squares = 0, 0.0, 0.0
        for start in range(0, len(images), batch_size):
            values = inputs(images[start:start + batch_size], training=False).numpy().astype(np.float64)
            values = values.reshape(-1, values.shape[-1])
            count, total, squares = count + len(values), total + values.sum(axis=0), squares + (values**2).sum(axis=0)
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / count - mean**2, 0).astype(np.float32))
