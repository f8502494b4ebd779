"""How training data reaches Keras: seeded, cycled, shuffled batches built with tf.data."""

import math

import numpy as np
import tensorflow as tf

from common.params import Training


def steps_per_epoch(examples: int, recipe: Training) -> int:
    """One pass over the data, or more steps when a pass is too short to reach `min_steps` in `epochs`."""
    return max(math.ceil(examples / recipe.batch_size), math.ceil(recipe.min_steps / recipe.epochs))


def repeat_to(arrays, count: int):
    """`arrays` (an array or a dict of arrays, one row per example) cycled to `count` rows."""
    rows = np.arange(count) % len(next(iter(arrays.values())) if isinstance(arrays, dict) else arrays)
    if isinstance(arrays, dict):
        return {name: values[rows] for name, values in arrays.items()}
    return arrays[rows]


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


# A pass is gathered this many bytes at a time: all of Fashion-MNIST's 55,000 training images
# (43 MB) in one piece, and a large folder dataset without a second copy of it in memory.
CHUNK_BYTES = 64 * 1024**2


def epoch_batches(x, y, batch_size: int, steps: int, seed: int) -> tf.data.Dataset:
    """One pass of `steps` full batches of (x, y), in a new order each time Keras iterates it (each epoch).

    The rows are cycled to fill `steps` batches (a small transfer set passes several times; a full
    split completes its last batch from its first images). Each pass draws one permutation of its
    rows and gathers them CHUNK_BYTES at a time, so a batch is a slice of a chunk: Keras's own feeding
    of arrays gathers every batch in a tf.data map instead, which cost about a quarter of a student
    epoch on 2 cores; gathering the whole pass at once held a second copy of the data. The chunk size
    changes no bits: the batches are the same rows in the same order. The permutation's seed comes
    from Dataset.random, which draws anew for every iteration, from `seed` and the global seed: the same
    run gives the same orders in any process. `y` may be a dict of arrays (the distiller's labels and
    teacher logits).
    """
    rows, examples = steps * batch_size, len(x)
    arrays = tf.nest.map_structure(tf.constant, (x, y))
    row_bytes = sum(values.dtype.size * values.shape[1:].num_elements() for values in tf.nest.flatten(arrays))
    steps_per_chunk = max(1, min(steps, CHUNK_BYTES // (row_bytes * batch_size)))

    def one_pass(pass_seed):
        # Row i of the cycled data is example i mod examples.
        order = tf.random.experimental.stateless_shuffle(tf.range(rows), seed=tf.stack([pass_seed, seed]))
        return tf.reshape(order % examples, (steps, batch_size))

    def gather(chunk):
        return tf.nest.map_structure(lambda values: tf.gather(values, chunk), arrays)

    passes = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).map(one_pass)
    chunks = passes.flat_map(tf.data.Dataset.from_tensor_slices).batch(steps_per_chunk).map(gather)
    batches = chunks.flat_map(lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)))
    # A known length lets Keras end each epoch's last call into TensorFlow at the end of the pass.
    return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2).with_options(unoptimised())


def two_stream_batches(x: dict, y: dict, batch_size: int, steps: int, seed: int) -> tf.data.Dataset:
    """losses.TransferSetDistiller's batches: each step a batch of x["labelled"] with y["label"] and a
    batch of x["transfer"] with y["teacher_logits"], each stream cycled and shuffled by epoch_batches
    on its own seed, so a small labelled set repeats within the pass over the transfer images."""
    labelled = epoch_batches(x["labelled"], y["label"], batch_size, steps, seed)
    transfer = epoch_batches(x["transfer"], y["teacher_logits"], batch_size, steps, seed + 1)
    return tf.data.Dataset.zip(labelled, transfer).map(
        lambda first, second: ({"labelled": first[0], "transfer": second[0]},
                               {"label": first[1], "teacher_logits": second[1]})
    ).with_options(unoptimised())


def validation_batches(x, y, batch_size: int) -> tf.data.Dataset:
    """The validation data in order, batched once and kept batched for every epoch's evaluation."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().with_options(unoptimised())
