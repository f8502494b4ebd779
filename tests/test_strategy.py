"""train.strategy: the training step under tf.distribute, on two logical CPU devices."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]

# Logical devices must be set before TensorFlow starts its runtime, hence a fresh interpreter.
MIRRORED_ON_TWO_CPUS = r"""
import json
import numpy as np
import common  # first: it applies params.yaml's numerics before TensorFlow loads
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from common import architectures, fashion_mnist, losses, params, training

recipe = params.Training(arch="mlp", conv_filters=[8], conv_dense_units=8, dropout=0.0, norm_momentum=0.99, seed=0, hidden_units=[16], learning_rate=0.01, decay_steps=100, decay_alpha=0.1,
                         batch_size=64, epochs=2, patience=2, min_steps=0)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (512, 28, 28), dtype=np.uint8)
labels = rng.integers(0, 10, 512)
teacher_logits = rng.normal(size=(512, 10)).astype(np.float32)
targets = {"label": labels, "teacher_logits": teacher_logits}

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
engine = params.Train(numerics="portable", strategy="mirrored", jit_compile="auto", steps_per_execution=2)
training.make_deterministic(recipe, engine)
with strategy.scope():
    student = architectures.build(recipe, "student", fashion_mnist.DATASET)
    before = [w.copy() for w in student.get_weights()]
    student_summary = training.fit(student, recipe, engine, images, labels, images, labels, stage="student", recipe_name="student",
                                 loss=losses.label_loss())
    objective = losses.DistillationLoss(temperature=2.0, alpha=0.25)
    distilled = architectures.build(recipe, "distilled", fashion_mnist.DATASET)
    distiller = losses.TeacherLogitsDistiller(distilled, objective)
    distill_summary = training.fit(distiller, recipe, engine, images, targets, images, targets, stage="distill",
                                 recipe_name="student")

# The logged loss of the last epoch, recomputed outside the strategy from the restored weights.
total, hard, soft = objective.terms(labels, teacher_logits, distilled.predict(images, verbose=0))
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "xla_and_steps_per_call": [training.use_xla(engine, recipe), training.steps_per_execution(engine), student.jit_compile],
    "weights_changed": any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights())),
    "student": student_summary,
    "distill": distill_summary,
    "recomputed": {"loss": float(total), "hard_loss": float(hard), "soft_loss": float(soft)},
}))
"""


def test_training_step_runs_under_mirrored_strategy_on_two_cpus():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_ON_TWO_CPUS], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # Under MirroredStrategy, XLA and several steps per call both fail (TensorFlow 2.21): auto turns them off.
    assert report["xla_and_steps_per_call"] == [False, 1, False]
    assert report["weights_changed"]
    assert report["student"]["epochs_run"] == 2
    # Per-replica losses are summed back to the whole batch's mean: validation loss on the training
    # images matches a recomputation outside the strategy.
    for name in ("loss", "hard_loss", "soft_loss"):
        assert abs(report["distill"][f"val_{name}"] - report["recomputed"][name]) < 1e-4, name


def test_auto_picks_the_default_strategy_without_several_gpus():
    import tensorflow as tf

    from common import training

    assert len(tf.config.list_logical_devices("GPU")) <= 1  # this test describes the CPU machine
    strategy = training.distribution_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert training.distribution_strategy("default") is tf.distribute.get_strategy()


def test_mirrored_with_xla_forced_on_is_one_clear_line():
    from common import params, training
    from common.cli import UserError

    engine = params.Train(numerics="portable", strategy="mirrored", jit_compile=True, steps_per_execution=16)
    recipe = params.load().student
    with pytest.raises(UserError) as raised:
        training.use_xla(engine, recipe)
    assert str(raised.value) == ("params.yaml: train.jit_compile = true does not work with MirroredStrategy "
                                 "(train.strategy = mirrored); set it to auto or false")
