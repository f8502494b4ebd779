"""Model construction and the one training loop shared by teacher, student and distilled student."""

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from common import outputs
from common.cli import UserError, stop_if_interrupted
from common.data import IMAGE_SHAPE, NUM_CLASSES, Split
from common.params import Train, Training


def mirrored(strategy: str) -> bool:
    """Whether params' train.strategy means MirroredStrategy on this machine."""
    return strategy == "mirrored" or (strategy == "auto" and len(tf.config.list_logical_devices("GPU")) > 1)


def is_cnn(recipe: Training) -> bool:
    return recipe.arch == "cnn"


def use_xla(engine: Train, recipe: Training) -> bool:
    """Whether training compiles with XLA. `auto` measures out as: yes for MLPs, whose CPU epochs it
    makes about 1.5 times faster with 16 steps a call (fused steps, no per-op dispatch); no for CNNs,
    the teacher having trained about 5 times slower with XLA on CPU; never under
    MirroredStrategy, where XLA fails to reach the other replicas' variables (TensorFlow 2.21)."""
    if mirrored(engine.strategy):
        if engine.jit_compile is True:
            raise UserError(
                "params.yaml: train.jit_compile = true does not work with MirroredStrategy "
                f"(train.strategy = {engine.strategy}); set it to auto or false"
            )
        return False
    if engine.jit_compile == "auto":
        return not is_cnn(recipe)
    return engine.jit_compile


def steps_per_execution(engine: Train) -> int:
    """Under MirroredStrategy, one step per call: several fail there (TensorFlow 2.21)."""
    return 1 if mirrored(engine.strategy) else engine.steps_per_execution


def make_deterministic(recipe: Training, engine: Train) -> None:
    """Seeds Python, NumPy and TensorFlow: same params, same bits.

    Without XLA it also pins TensorFlow's op determinism. Keras turns XLA off whenever op determinism
    is on, so with XLA seeding is all there is: XLA's CPU code is deterministic run to run, which the
    tests check byte for byte (same weights twice, and `dvc repro -f` leaving dvc.lock unchanged).
    """
    keras.utils.set_random_seed(recipe.seed)
    if not use_xla(engine, recipe):
        tf.config.experimental.enable_op_determinism()


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for params' train.strategy; models and compile belong in its scope."""
    if mirrored(name):
        return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("GPU")] or None)
    return tf.distribute.get_strategy()


def build_mlp(hidden_units: list[int], name: str) -> keras.Model:
    """An MLP on raw uint8 images that outputs logits; scaling happens inside, per batch."""
    images = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    x = keras.layers.Flatten(name="flatten")(x)
    for depth, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{depth}")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(images, logits, name=name)


def build_cnn(filters: list[int], dense_units: int, dropout: float, name: str) -> keras.Model:
    """A small CNN on raw uint8 images that outputs logits: per block a 3x3 convolution, batch
    normalisation, ReLU and 2x2 max-pooling, then dropout, one dense layer and dropout again."""
    images = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="channels")(x)
    for block, count in enumerate(filters, start=1):
        # No bias: the batch normalisation that follows has its own shift.
        x = keras.layers.Conv2D(count, 3, padding="same", use_bias=False, name=f"conv_{block}")(x)
        x = keras.layers.BatchNormalization(name=f"norm_{block}")(x)
        x = keras.layers.ReLU(name=f"relu_{block}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool_{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="hidden_1")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(images, logits, name=name)


def build(recipe: Training, name: str) -> keras.Model:
    """The network a params section's `arch` describes; both students build from the student section."""
    if is_cnn(recipe):
        return build_cnn(recipe.conv_filters, recipe.conv_dense_units, recipe.dropout, name)
    return build_mlp(recipe.hidden_units, name)


def describe(recipe: Training) -> str:
    if is_cnn(recipe):
        return f"cnn (conv_filters {recipe.conv_filters}, conv_dense_units {recipe.conv_dense_units})"
    return f"mlp (hidden_units {recipe.hidden_units})"


def steps_per_epoch(examples: int, recipe: Training) -> int:
    """One pass over the data, or more steps when a pass is too short to reach `min_steps` in `epochs`."""
    return max(math.ceil(examples / recipe.batch_size), math.ceil(recipe.min_steps / recipe.epochs))


def repeat_to(arrays, count: int):
    """`arrays` (an array or a dict of arrays, one row per example) cycled to `count` rows."""
    rows = np.arange(count) % len(next(iter(arrays.values())) if isinstance(arrays, dict) else arrays)
    if isinstance(arrays, dict):
        return {name: values[rows] for name, values in arrays.items()}
    return arrays[rows]


def make_optimizer(recipe: Training, total_steps: int) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate,
        # Spanning the run by default: a schedule that bottoms out early wastes the last epochs.
        decay_steps=recipe.decay_steps or total_steps,
        alpha=recipe.decay_alpha,
    )
    return keras.optimizers.Adam(learning_rate=schedule, amsgrad=True)


class StopOnDivergence(keras.callbacks.Callback):
    """Ends training with one line as soon as a logged loss or metric stops being a finite number.

    A loss that has become NaN or infinite never recovers, and neither JSON nor `dvc metrics` can
    hold it; a large but finite loss is a legitimate (bad) result and trains on.
    """

    def __init__(self, stage: str, recipe_name: str, learning_rate: float):
        super().__init__()
        self.stage, self.recipe_name, self.learning_rate = stage, recipe_name, learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With several steps per call, `batch` is the call's last step, which a short last call overstates.
        step = min(batch + 1, self.params.get("steps") or batch + 1)
        self._check(logs, f"epoch {self.epoch + 1}, step {step}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"the end of epoch {epoch + 1}")

    def _check(self, logs, where: str) -> None:
        for name, value in (logs or {}).items():
            value = float(value)
            if not math.isfinite(value):
                raise UserError(
                    f"{self.stage} diverged: {name} became {value} at {where}; "
                    f"lower {self.recipe_name}.learning_rate (now {self.learning_rate:g})"
                )


class StopOnInterrupt(keras.callbacks.Callback):
    """Ends training at the next call's end after a Ctrl-C whose KeyboardInterrupt Python dropped
    (common.cli), rather than training on to an end whose outputs would be refused."""

    def on_train_batch_end(self, batch, logs=None):
        stop_if_interrupted()


def unoptimised() -> tf.data.Options:
    """Options for datasets that need no tuning: fixed buffers, no parallel maps.

    tf.data's default rewrites reserialise a dataset's tensors at every new iterator, which Keras
    makes every epoch: about 0.1 s a student epoch with the training images inside. Autotuning gives
    each iterator a thread that deleting the iterator waits for; Keras keeps the last epoch's iterator
    as long as the model, and a process that trains many models (the test suite) stalled 12 to 17 s
    when the garbage collector freed the old ones, in that wait.
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return options


def epoch_batches(x, y, batch_size: int, steps: int, seed: int) -> tf.data.Dataset:
    """One pass of `steps` full batches of (x, y), in a new order each time Keras iterates it (each epoch).

    The rows are cycled to fill `steps` batches (a small transfer set passes several times; a full
    split completes its last batch from its first images). Each pass draws one permutation and gathers
    the whole pass at once, so a batch is a slice of it: Keras's own feeding of arrays gathers every
    batch in a tf.data map instead, which cost about a quarter of a student epoch on 2 cores. The
    permutation's seed comes from Dataset.random, which draws anew for every iteration, from `seed` and
    the global seed: the same run gives the same orders in any process. `y` may be a dict of arrays
    (the distiller's labels and teacher logits).
    """
    rows = steps * batch_size
    arrays = tf.nest.map_structure(tf.constant, (repeat_to(x, rows), repeat_to(y, rows)))

    def one_pass(pass_seed):
        order = tf.random.experimental.stateless_shuffle(tf.range(rows), seed=tf.stack([pass_seed, seed]))
        return tf.nest.map_structure(
            lambda values: tf.reshape(tf.gather(values, order), (steps, batch_size, *values.shape[1:])), arrays
        )

    passes = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).map(one_pass)
    batches = passes.flat_map(lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)))
    # A known length lets Keras end each epoch's last call into TensorFlow at the end of the pass.
    return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2).with_options(unoptimised())


def validation_batches(x, y, batch_size: int) -> tf.data.Dataset:
    """The validation data in order, batched once and kept batched for every epoch's evaluation."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().with_options(unoptimised())


def fit(
    model: keras.Model, recipe: Training, engine: Train, x_train, y_train, x_val, y_val, *, stage: str,
    recipe_name: str, loss=None, monitor: str = "val_loss", curves_dir=None, callbacks=(), keras_feeding: bool = False,
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
    Returns a summary of the run for the stage's metrics file.
    """
    examples, steps = len(x_train), steps_per_epoch(len(x_train), recipe)
    if keras_feeding:
        rows = steps * recipe.batch_size
        feeding = {"x": repeat_to(x_train, rows), "y": repeat_to(y_train, rows), "batch_size": recipe.batch_size,
                   "shuffle": True, "validation_data": (x_val, y_val)}
    else:
        # shuffle=False: the order is epoch_batches' own (Keras would warn that it ignores True).
        feeding = {"x": epoch_batches(x_train, y_train, recipe.batch_size, steps, recipe.seed), "shuffle": False,
                   "validation_data": validation_batches(x_val, y_val, recipe.batch_size)}
    model.compile(
        optimizer=make_optimizer(recipe, recipe.epochs * steps),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=use_xla(engine, recipe),
        steps_per_execution=steps_per_execution(engine),
    )
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, mode="min", patience=recipe.patience, restore_best_weights=True
    )
    callbacks = [
        StopOnInterrupt(), StopOnDivergence(stage, recipe_name, recipe.learning_rate), early_stopping, *callbacks
    ]
    with outputs.replacing_dir(curves_dir) if curves_dir else contextlib.nullcontext() as staged_curves:
        if staged_curves:
            # dvc.yaml is written by hand and experiments by `dvc exp run`, so dvclive does neither.
            live = Live(str(staged_curves), dvcyaml=False, save_dvc_exp=False, report=None)
            callbacks.append(DVCLiveCallback(live=live))
        history = model.fit(**feeding, epochs=recipe.epochs, callbacks=callbacks, verbose=2)
    best = early_stopping.best_epoch
    return {
        "train_examples": examples,
        "steps_per_epoch": steps,
        "epochs_run": len(history.epoch),
        "best_epoch": best + 1,
        **{name: round(float(values[best]), 6) for name, values in history.history.items()},
    }


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


def load_model(model_name: str, recipe: Training, weights_file: str) -> keras.Model:
    model = build(recipe, model_name)
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
            f"{weights_file}: does not match the architecture {describe(recipe)} in params.yaml "
            f"({str(error).splitlines()[0]}); run `dvc repro`"
        ) from None
    return model
