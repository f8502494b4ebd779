"""The networks the pipeline builds from params: an MLP and a small CNN, both on raw uint8 images,
both with logits out. The input shape and class count come from the prepared data (data.Dataset)."""

import keras

from common.cli import UserError
from common.data import Dataset
from common.params import Training


def is_cnn(recipe: Training) -> bool:
    return recipe.arch == "cnn"


class BatchNormalization(keras.layers.BatchNormalization):
    """Keras's batch normalisation, with 1 / sqrt(variance + epsilon) taken by IEEE square root and
    division. Keras takes it with TensorFlow's rsqrt, which starts from the CPU's own estimate of a
    reciprocal square root (VRSQRTPS): its bits are the CPU vendor's, so the same CNN trained to other
    bits on an emulated AMD EPYC Zen3 than on an Intel Xeon (docs/reproducibility.md). The same holds
    at inference, in Keras's predict and in the exported LiteRT files. Neither mask nor renorm is
    supported, as build_cnn uses neither."""

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable:
            mean, variance = keras.ops.moments(inputs, axes=list(range(len(inputs.shape) - 1)))
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        # TensorFlow's own batch_normalization, but for the square root. Grappler and the LiteRT
        # converter both rewrite x / sqrt(y) into x * rsqrt(y) where the square root has no other use,
        # as at inference, which brings the estimate back; the maximum with 0 changes no bit of the
        # square root and hides it from both.
        deviation = keras.ops.maximum(keras.ops.sqrt(variance + self.epsilon), 0.0)
        inverse = self.gamma / deviation
        return inputs * inverse + (self.beta - mean * inverse)


def build_mlp(hidden_units: list[int], name: str, dataset: Dataset) -> keras.Model:
    """An MLP on raw uint8 images that outputs logits; scaling happens inside, per batch."""
    images = keras.Input(shape=dataset.image_shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    x = keras.layers.Flatten(name="flatten")(x)
    for depth, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{depth}")(x)
    logits = keras.layers.Dense(dataset.num_classes, name="logits")(x)
    return keras.Model(images, logits, name=name)


def build_cnn(filters: list[int], dense_units: int, dropout: float, name: str, dataset: Dataset,
              norm_momentum: float) -> keras.Model:
    """A small CNN on raw uint8 images that outputs logits: per block a 3x3 convolution, batch
    normalisation, ReLU and 2x2 max-pooling, then dropout, one dense layer and dropout again."""
    side = min(dataset.image_shape[:2])
    if side >> len(filters) == 0:
        raise UserError(f"conv_filters {filters}: {len(filters)} blocks halve the data's {side}-pixel side to nothing; "
                        f"allowed 1..{side.bit_length() - 1} blocks for {dataset.describe_shape()} images")
    images = keras.Input(shape=dataset.image_shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    if dataset.channels == 1:
        # Grayscale images are stored (height, width), as Fashion-MNIST's are; convolutions want a channel axis.
        x = keras.layers.Reshape((*dataset.image_shape, 1), name="channels")(x)
    for block, count in enumerate(filters, start=1):
        # No bias: the batch normalisation that follows has its own shift.
        x = keras.layers.Conv2D(count, 3, padding="same", use_bias=False, name=f"conv_{block}")(x)
        x = BatchNormalization(momentum=norm_momentum, name=f"norm_{block}")(x)
        x = keras.layers.ReLU(name=f"relu_{block}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool_{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="hidden_1")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    logits = keras.layers.Dense(dataset.num_classes, name="logits")(x)
    return keras.Model(images, logits, name=name)


def build(recipe: Training, name: str, dataset: Dataset) -> keras.Model:
    """The network a params section's `arch` describes, for `dataset`'s images and classes; both
    students build from the student section."""
    if is_cnn(recipe):
        return build_cnn(recipe.conv_filters, recipe.conv_dense_units, recipe.dropout, name, dataset, recipe.norm_momentum)
    return build_mlp(recipe.hidden_units, name, dataset)


def describe(recipe: Training) -> str:
    if is_cnn(recipe):
        return f"cnn (conv_filters {recipe.conv_filters}, conv_dense_units {recipe.conv_dense_units})"
    return f"mlp (hidden_units {recipe.hidden_units})"
