"""One fresh process's bits for each kernel the pipeline's training runs, under the numerics that
./params.yaml names: which kernels a setting or a CPU model changes (docs/reproducibility.md).

    cd FOLDER_WITH_PARAMS_YAML && PYTHONPATH=ROOT python ROOT/tests/numerics_kernels.py
    # the same on an emulated AMD EPYC Zen3:
    cd FOLDER_WITH_PARAMS_YAML && PYTHONPATH=ROOT qemu-x86_64 -cpu EPYC-Milan ROOT/.venv/bin/python ROOT/tests/numerics_kernels.py

Each kernel runs once on fixed random inputs at the shapes of the pipeline's default models: the CNN
teacher's convolutions (forward, and backward to filters and to inputs), batch normalisation (forward
and backward) and dense layers at batch 128, without XLA, and the MLP student's dots and reductions at
batch 256, compiled by XLA as its training step is. Prints one JSON line: a digest of each kernel's output.
"""

import hashlib
import json

import numpy as np

import common  # noqa: F401  (first: it applies ./params.yaml's train.numerics before TensorFlow loads)
import tensorflow as tf
from common import architectures

STRIDES = [1, 1, 1, 1]


def digest(tensor) -> str:
    return hashlib.sha256(np.asarray(tensor).tobytes()).hexdigest()[:12]


def main() -> None:
    rng = np.random.default_rng(0)

    def normal(*shape):
        return tf.constant(rng.standard_normal(shape).astype(np.float32))

    def backward_filter(images, filters, gradient):
        return tf.raw_ops.Conv2DBackpropFilter(input=images, filter_sizes=filters.shape, out_backprop=gradient,
                                               strides=STRIDES, padding="SAME")

    def backward_input(images, filters, gradient):
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=images.shape, filter=filters, out_backprop=gradient,
                                              strides=STRIDES, padding="SAME")

    first_images, first_filters, first_gradient = normal(128, 28, 28, 1), normal(3, 3, 1, 32), normal(128, 28, 28, 32)
    second_images, second_filters, second_gradient = normal(128, 14, 14, 32), normal(3, 3, 32, 64), normal(128, 14, 14, 64)
    norm_gradient = normal(128, 14, 14, 32)
    features, dense_weights, dense_gradient = normal(128, 3136), normal(3136, 256), normal(128, 256)
    pixels, hidden_weights, hidden_gradient = normal(256, 784), normal(784, 128), normal(256, 128)
    hidden, output_weights, output_gradient = normal(256, 128), normal(128, 10), normal(256, 10)

    norm = architectures.BatchNormalization()
    norm.build(second_images.shape)

    def normalised_and_back(images, gradient):
        with tf.GradientTape() as tape:
            tape.watch(images)
            normalised = norm(images, training=True)
        return tf.concat([tf.reshape(normalised, [-1]), tf.reshape(tape.gradient(normalised, images, gradient), [-1])], 0)

    def transposed_left(left, right):
        return tf.matmul(left, right, transpose_a=True)

    def transposed_right(left, right):
        return tf.matmul(left, right, transpose_b=True)

    eager = {
        "conv1_forward": (tf.nn.conv2d, first_images, first_filters, 1, "SAME"),
        "conv1_to_filters": (backward_filter, first_images, first_filters, first_gradient),
        "conv2_forward": (tf.nn.conv2d, second_images, second_filters, 1, "SAME"),
        "conv2_to_filters": (backward_filter, second_images, second_filters, second_gradient),
        "conv2_to_inputs": (backward_input, second_images, second_filters, second_gradient),
        "norm_forward_and_back": (normalised_and_back, second_images, norm_gradient),
        "dense_forward": (tf.matmul, features, dense_weights),
        "dense_to_weights": (transposed_left, features, dense_gradient),
        "dense_to_inputs": (transposed_right, dense_gradient, dense_weights),
    }
    compiled = {
        "xla_hidden_forward": (tf.matmul, pixels, hidden_weights),
        "xla_hidden_to_weights": (transposed_left, pixels, hidden_gradient),
        "xla_hidden_to_inputs": (transposed_right, hidden_gradient, hidden_weights),
        "xla_output_forward": (tf.matmul, hidden, output_weights),
        "xla_output_to_weights": (transposed_left, hidden, output_gradient),
        "xla_bias_gradient": (lambda gradient: tf.reduce_sum(gradient, axis=0), hidden_gradient),
        "xla_log_softmax": (tf.nn.log_softmax, output_gradient),
    }
    digests = {name: digest(kernel(*arguments)) for name, (kernel, *arguments) in eager.items()}
    digests |= {name: digest(tf.function(kernel, jit_compile=True)(*arguments))
                for name, (kernel, *arguments) in compiled.items()}
    print(json.dumps(digests))


if __name__ == "__main__":
    main()
