"""Consistent views (common/views.py) against views worked out by hand with NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from common import params, views


def settings(shift=0, flip=False, mixup=False) -> params.Distill:
    return params.Distill(temperature=1.0, alpha=0.0, transfer="labelled", views="consistent",
                          shift=shift, flip=flip, mixup=mixup)


def test_a_shift_moves_each_image_by_its_own_offset_and_fills_the_edge_with_zeros():
    images = np.arange(1, 2 * 4 * 4 + 1, dtype=np.uint8).reshape(2, 4, 4)
    # Offsets 0..2 for shift 1: image 0 moves one row down and one column left; image 1 stays.
    moved = views.shifted(tf.constant(images), tf.constant([[0, 2], [1, 1]]), 1).numpy()
    expected = np.zeros_like(images[0])
    expected[1:, :-1] = images[0][:-1, 1:]
    np.testing.assert_array_equal(moved[0], expected)
    np.testing.assert_array_equal(moved[1], images[1])


def test_a_shift_keeps_the_channels_of_rgb_images_together():
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 6, 3), dtype=np.uint8)
    moved = views.shifted(tf.constant(images), tf.constant([[4, 0], [2, 2], [0, 3]]), 2).numpy()
    assert moved.shape == images.shape
    np.testing.assert_array_equal(moved[0, :3, 2:], images[0, 2:, :4])  # 2 rows up, 2 columns right
    np.testing.assert_array_equal(moved[1], images[1])


def batch(count=8):
    rng = np.random.default_rng(1)
    return tf.constant(rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)), tf.constant(rng.integers(0, 10, count))


def test_a_flip_reverses_the_columns_of_some_images_and_leaves_the_rest():
    images, labels = batch(64)
    flipped, targets = views.view(images, labels, tf.constant([3, 4], tf.int64), settings(flip=True))
    reversed_ = [np.array_equal(out, image[:, ::-1]) for out, image in zip(flipped.numpy(), images.numpy())]
    kept = [np.array_equal(out, image) for out, image in zip(flipped.numpy(), images.numpy())]
    assert all(a != b for a, b in zip(reversed_, kept))
    assert 16 < sum(reversed_) < 48  # half of 64, give or take four standard deviations
    assert set(targets) == {"label"}


def test_mixup_blends_each_image_with_the_next_and_rounds_to_pixel_values():
    images, labels = batch()
    blended, targets = views.view(images, labels, tf.constant([5, 6], tf.int64), settings(mixup=True))
    mix = targets["mix"].numpy()
    assert ((0 <= mix) & (mix <= 1)).all() and len(set(mix.tolist())) == len(mix)
    pixels = images.numpy().astype(np.float64)
    expected = np.round(mix[:, None, None] * pixels + (1 - mix[:, None, None]) * np.roll(pixels, -1, axis=0))
    # float32 arithmetic may round a value at .5 the other way: one level at most.
    assert np.abs(blended.numpy().astype(int) - expected).max() <= 1
    assert blended.dtype == tf.uint8
    np.testing.assert_array_equal(targets["partner_label"].numpy(), np.roll(labels.numpy(), -1))
    np.testing.assert_array_equal(targets["label"].numpy(), labels.numpy())


def test_views_are_the_same_in_every_run_and_new_in_every_epoch():
    images, labels = batch(32)
    base = tf.data.Dataset.from_tensor_slices((images, {"label": labels})).batch(8)

    def two_epochs():
        tf.keras.utils.set_random_seed(0)
        dataset = views.consistent_views(base, settings(shift=2, flip=True, mixup=True), seed=7)
        return [[view.numpy() for view, _ in dataset] for _ in range(2)]

    first, second = two_epochs(), two_epochs()
    assert all(np.array_equal(a, b) for a, b in zip(first[0] + first[1], second[0] + second[1]))
    assert not any(np.array_equal(a, b) for a, b in zip(first[0], first[1]))
    assert tf.data.experimental.cardinality(views.consistent_views(base, settings(), seed=7)) == 4


@pytest.mark.parametrize("options", [{}, {"shift": 2}, {"flip": True}])
def test_without_mixup_the_labels_pass_through_alone(options):
    images, labels = batch()
    out, targets = views.view(images, labels, tf.constant([1, 2], tf.int64), settings(**options))
    assert set(targets) == {"label"} and out.dtype == tf.uint8 and out.shape == images.shape
