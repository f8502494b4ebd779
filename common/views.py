"""Consistent views (distill.views: consistent): each training batch becomes a random view that the
student and the teacher both see, the teacher labelling it inside the step (losses.ConsistentViewsDistiller).

Beyer et al. (2022) call this function matching: with fixed logits the student learns the teacher's
function at a few hundred points, with views at a new point every step. A view shifts each image by
up to `distill.shift` pixels (the uncovered edge filled with 0, the background of Fashion-MNIST's
images), flips half of them left to right (`distill.flip`) and, with `distill.mixup`, blends each
image with the next one in the shuffled batch at a ratio drawn uniformly from [0, 1].

Views stay uint8, the input both networks take: a blend is rounded to whole pixel values, which
changes it by at most half a level in 255, and the teacher and the student see the same rounded image.
Every draw is a stateless op on a seed drawn per batch from `seed`, anew each epoch, so two runs
with the same params see the same views in the same order, bit for bit.
"""

import tensorflow as tf

from common.params import Distill


def shifted(images: tf.Tensor, offsets: tf.Tensor, shift: int) -> tf.Tensor:
    """`images` (batch, height, width[, channels]) moved by `offsets` (batch, 2) rows and columns,
    each in 0..2 * shift for a move of -shift..shift, with zeros coming in at the edges."""
    padding = [[0, 0], [shift, shift], [shift, shift]] + [[0, 0]] * (len(images.shape) - 3)
    padded = tf.pad(images, padding)
    height, width = images.shape[1], images.shape[2]
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    columns = offsets[:, 1:] + tf.range(width)[tf.newaxis]
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), columns, axis=2, batch_dims=1)


def view(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, settings: Distill):
    """One batch's view and its targets: {"label"} and, with mixup, {"partner_label", "mix"}, the
    blended image being mix * image + (1 - mix) * partner."""
    shift_seed, flip_seed, mix_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    batch = tf.shape(images)[0]
    if settings.shift:
        offsets = tf.random.stateless_uniform((batch, 2), shift_seed, minval=0, maxval=2 * settings.shift + 1,
                                              dtype=tf.int32)
        images = shifted(images, offsets, settings.shift)
    if settings.flip:
        flips = tf.random.stateless_uniform((batch,), flip_seed) < 0.5
        flips = tf.reshape(flips, [-1] + [1] * (len(images.shape) - 1))
        images = tf.where(flips, tf.reverse(images, axis=[2]), images)
    targets = {"label": labels}
    if settings.mixup:
        # The batch is already in a random order, so the next image is a random partner.
        partners = tf.roll(tf.range(batch), shift=-1, axis=0)
        mix = tf.random.stateless_uniform((batch,), mix_seed)
        weights = tf.reshape(mix, [-1] + [1] * (len(images.shape) - 1))
        blend = weights * tf.cast(images, tf.float32) + (1 - weights) * tf.cast(tf.gather(images, partners), tf.float32)
        images = tf.cast(tf.round(blend), tf.uint8)
        targets |= {"partner_label": tf.gather(labels, partners), "mix": mix}
    return images, targets


def consistent_views(batches: tf.data.Dataset, settings: Distill, seed: int) -> tf.data.Dataset:
    """`batches` of (uint8 images, {"label"}) turned into views, a new draw for every batch of every
    epoch (Dataset.random draws anew at each iteration, from `seed` and the global seed)."""
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(batches, draws).map(
        lambda batch, draw: view(batch[0], batch[1]["label"], tf.stack([draw, tf.cast(seed, tf.int64)]), settings)
    ).with_options(batches.options())
