"""The distillation objective against numbers computed by hand with NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from common import architectures, fashion_mnist, feeding, losses, params, training

STUDENT = np.array([[2.0, 1.0, 0.0], [0.5, -1.0, 3.0]], dtype=np.float32)
TEACHER = np.array([[3.0, 0.0, -1.0], [0.0, 0.0, 2.0]], dtype=np.float32)
LABELS = np.array([0, 2])
ENGINE = params.Train(numerics="portable", strategy="default", jit_compile="auto", steps_per_execution=4)
RECIPE = params.Training(arch="mlp", conv_filters=[8], conv_dense_units=8, dropout=0.0, norm_momentum=0.99, seed=0, hidden_units=[8], learning_rate=0.01, decay_steps=20, decay_alpha=0.1,
                         batch_size=32, epochs=2, patience=2, min_steps=0)


def softmax(logits, temperature=1.0):
    scaled = np.asarray(logits, np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def cross_entropy(logits, labels):
    return float(np.mean(-np.log(softmax(logits)[np.arange(len(labels)), labels])))


def kl(teacher, student, temperature):
    p, q = softmax(teacher, temperature), softmax(student, temperature)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def terms(temperature, alpha, student=STUDENT):
    total, hard, soft = losses.DistillationLoss(temperature, alpha).terms(LABELS, TEACHER, student)
    return float(total), float(hard), float(soft)


def test_alpha_one_is_plain_cross_entropy():
    # Row 1: -log(e^2 / (e^2 + e + 1)) = 0.407606; row 2: -log(e^3 / (e^0.5 + e^-1 + e^3)) = 0.095674.
    assert cross_entropy(STUDENT, LABELS) == pytest.approx((0.407606 + 0.095674) / 2, abs=1e-6)
    total, hard, _ = terms(temperature=4.0, alpha=1.0)
    assert total == pytest.approx(cross_entropy(STUDENT, LABELS), rel=1e-6)
    assert hard == pytest.approx(total, rel=1e-6)


def test_alpha_zero_is_the_scaled_kd_term_alone():
    total, _, soft = terms(temperature=2.0, alpha=0.0)
    assert total == pytest.approx(soft, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_soft_term_is_kl_at_temperature_times_t_squared(temperature):
    _, _, soft = terms(temperature, alpha=0.5)
    assert soft == pytest.approx(temperature**2 * kl(TEACHER, STUDENT, temperature), rel=1e-5)


def test_total_mixes_terms_with_alpha_on_the_labels():
    total, hard, soft = terms(temperature=4.0, alpha=0.1)
    expected = 0.1 * cross_entropy(STUDENT, LABELS) + 0.9 * 16 * kl(TEACHER, STUDENT, 4.0)
    assert total == pytest.approx(expected, rel=1e-5)
    assert total == pytest.approx(0.1 * hard + 0.9 * soft, rel=1e-6)


def test_soft_term_is_zero_when_student_matches_teacher():
    _, _, soft = terms(temperature=4.0, alpha=0.0, student=TEACHER)
    assert soft == pytest.approx(0.0, abs=1e-6)


def gradient(temperature, alpha):
    student = tf.Variable(STUDENT)
    with tf.GradientTape() as tape:
        total, _, _ = losses.DistillationLoss(temperature, alpha).terms(LABELS, TEACHER, student)
    return tape.gradient(total, student).numpy()


def test_gradient_at_t1_is_softmax_minus_targets():
    # d/dz of alpha*CE + (1-alpha)*KL at T=1 is alpha*(q - onehot) + (1-alpha)*(q - p), averaged over the batch.
    alpha = 0.3
    q, p = softmax(STUDENT), softmax(TEACHER)
    onehot = np.eye(3)[LABELS]
    expected = (alpha * (q - onehot) + (1 - alpha) * (q - p)) / len(LABELS)
    np.testing.assert_allclose(gradient(1.0, alpha), expected, atol=1e-6)


def test_t_squared_keeps_soft_gradients_at_scale():
    # d/dz of T^2 * KL(p_T || q_T) is T * (q_T - p_T): without the T^2 factor it would shrink as 1/T.
    temperature = 4.0
    expected = temperature * (softmax(STUDENT, temperature) - softmax(TEACHER, temperature)) / len(LABELS)
    np.testing.assert_allclose(gradient(temperature, 0.0), expected, atol=1e-6)


def test_distiller_trains_on_given_logits_and_logs_both_terms():
    training.make_deterministic(RECIPE, ENGINE)
    student = architectures.build(RECIPE, "student", fashion_mnist.DATASET)
    objective = losses.DistillationLoss(temperature=2.0, alpha=0.25)
    distiller = losses.TeacherLogitsDistiller(student, objective)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    targets = {"label": rng.integers(0, 10, 16), "teacher_logits": rng.normal(size=(16, 10)).astype(np.float32)}

    logged = distiller.evaluate(images, targets, batch_size=16, return_dict=True, verbose=0)

    student_logits = student.predict(images, verbose=0)
    total, hard, soft = objective.terms(targets["label"], targets["teacher_logits"], student_logits)
    assert logged["loss"] == pytest.approx(float(total), rel=1e-5)
    assert logged["hard_loss"] == pytest.approx(float(hard), rel=1e-5)
    assert logged["soft_loss"] == pytest.approx(float(soft), rel=1e-5)
    assert logged["accuracy"] == pytest.approx(np.mean(student_logits.argmax(1) == targets["label"]))


@pytest.mark.parametrize("temperature", [1e-3, 1e3])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_extreme_temperatures_and_alphas_train_with_finite_losses(temperature, alpha):
    """The schema allows any T > 0 and alpha in [0, 1]; the ends of that range must still train."""
    recipe = RECIPE
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8)
    targets = {"label": rng.integers(0, 10, 96), "teacher_logits": 5 * rng.normal(size=(96, 10)).astype(np.float32)}
    training.make_deterministic(recipe, ENGINE)
    student = architectures.build(recipe, "distilled", fashion_mnist.DATASET)
    before = [w.copy() for w in student.get_weights()]
    distiller = losses.TeacherLogitsDistiller(student, losses.DistillationLoss(temperature, alpha))

    summary = training.fit(distiller, recipe, ENGINE, images, targets, images, targets, stage="distill", recipe_name="student")

    assert all(np.isfinite(value) for value in summary.values()), summary
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    if alpha == 1.0:  # labels only: the KD term, whatever T, adds nothing
        assert summary["loss"] == pytest.approx(summary["hard_loss"], rel=1e-6)


def test_logged_terms_are_per_image_means_when_the_batch_size_does_not_divide_the_data():
    """Keras weights `loss` by batch size; the two terms must be weighted alike to add up to it."""
    training.make_deterministic(RECIPE, ENGINE)
    student = architectures.build(RECIPE, "student", fashion_mnist.DATASET)
    objective = losses.DistillationLoss(temperature=2.0, alpha=0.25)
    distiller = losses.TeacherLogitsDistiller(student, objective)
    distiller.compile(optimizer="adam")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    targets = {"label": rng.integers(0, 10, 20), "teacher_logits": rng.normal(size=(20, 10)).astype(np.float32)}

    logged = distiller.evaluate(images, targets, batch_size=16, return_dict=True, verbose=0)  # batches of 16 and 4

    total, hard, soft = objective.terms(targets["label"], targets["teacher_logits"], student.predict(images, verbose=0))
    assert logged["hard_loss"] == pytest.approx(float(hard), rel=1e-5)
    assert logged["soft_loss"] == pytest.approx(float(soft), rel=1e-5)
    assert logged["loss"] == pytest.approx(float(total), rel=1e-5)
    assert logged["loss"] == pytest.approx(0.25 * logged["hard_loss"] + 0.75 * logged["soft_loss"], rel=1e-6)


def test_with_every_image_as_transfer_set_each_term_is_the_mean_over_its_own_batch():
    """distill.transfer: all. Hard term on 4 labelled images, soft term on 12 other transfer images,
    checked against alpha * CE + (1 - alpha) * T^2 * KL computed with NumPy from the student's logits."""
    training.make_deterministic(RECIPE, ENGINE)
    student = architectures.build(RECIPE, "student", fashion_mnist.DATASET)
    temperature, alpha = 3.0, 0.3
    distiller = losses.TransferSetDistiller(student, losses.DistillationLoss(temperature, alpha))
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(2)
    labelled, transfer = (rng.integers(0, 256, (count, 28, 28), dtype=np.uint8) for count in (4, 12))
    labels, teacher = rng.integers(0, 10, 4), 3 * rng.normal(size=(12, 10)).astype(np.float32)

    # One batch of each stream, as feeding.two_stream_batches gives them.
    batch = tf.data.Dataset.from_tensors(({"labelled": labelled, "transfer": transfer}, {"label": labels, "teacher_logits": teacher}))
    logged = distiller.evaluate(batch, return_dict=True, verbose=0)

    labelled_logits, transfer_logits = student.predict(labelled, verbose=0), student.predict(transfer, verbose=0)
    hard = cross_entropy(labelled_logits, labels)
    soft = temperature**2 * kl(teacher, transfer_logits, temperature)
    assert logged["hard_loss"] == pytest.approx(hard, rel=1e-5)
    assert logged["soft_loss"] == pytest.approx(soft, rel=1e-5)
    assert logged["loss"] == pytest.approx(alpha * hard + (1 - alpha) * soft, rel=1e-5)
    assert logged["accuracy"] == pytest.approx(np.mean(labelled_logits.argmax(1) == labels))


def test_two_streams_cycle_the_labelled_images_through_a_pass_over_the_transfer_images():
    """3 labelled images (pixel values 100-102) and 10 transfer images (0-9), batches of 2, 5 steps: the
    transfer stream is one pass, the labelled one cycles its 3 images to fill 10 rows."""
    labelled = np.broadcast_to((100 + np.arange(3))[:, None, None], (3, 28, 28)).astype(np.uint8)
    transfer = np.broadcast_to(np.arange(10)[:, None, None], (10, 28, 28)).astype(np.uint8)
    x = {"labelled": labelled, "transfer": transfer}
    y = {"label": np.arange(3), "teacher_logits": np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)}
    tf.keras.utils.set_random_seed(0)
    seen = {"labelled": [], "transfer": []}
    for inputs, targets in feeding.two_stream_batches(x, y, batch_size=2, steps=5, seed=1):
        pixels = {stream: inputs[stream][:, 0, 0].numpy().astype(int).tolist() for stream in seen}
        assert targets["label"].numpy().tolist() == [value - 100 for value in pixels["labelled"]]
        assert targets["teacher_logits"].numpy()[:, 0].tolist() == pixels["transfer"]
        for stream in seen:
            seen[stream] += pixels[stream]
    assert sorted(seen["transfer"]) == list(range(10))
    assert sorted(seen["labelled"]) == sorted([100, 101, 102] * 3 + [100])


def test_every_image_as_transfer_set_trains_and_reports_both_counts():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 96)
    logits = 4 * rng.normal(size=(96, 10)).astype(np.float32)
    training.make_deterministic(RECIPE, ENGINE)
    student = architectures.build(RECIPE, "distilled", fashion_mnist.DATASET)
    distiller = losses.TransferSetDistiller(student, losses.DistillationLoss(2.0, 0.5))
    summary = training.fit(distiller, RECIPE, ENGINE, {"labelled": images[:10], "transfer": images},
                           {"label": labels[:10], "teacher_logits": logits},
                           {"labelled": images[:32], "transfer": images[:32]},
                           {"label": labels[:32], "teacher_logits": logits[:32]}, stage="distill", recipe_name="student")
    assert summary["train_examples"] == 96 and summary["labelled_examples"] == 10
    assert summary["steps_per_epoch"] == 3  # one pass over the 96 transfer images at batch 32
    assert all(np.isfinite(value) for value in summary.values())


def test_blended_images_blend_the_hard_term_per_image():
    """mix * CE(label) + (1 - mix) * CE(partner_label), averaged over the batch."""
    partners, mix = np.array([1, 0]), np.array([0.25, 0.9], dtype=np.float32)
    _, hard, _ = losses.DistillationLoss(1.0, 0.5).terms(LABELS, TEACHER, STUDENT, partner_labels=partners, mix=mix)
    log_probabilities = np.log(softmax(STUDENT))
    rows = np.arange(2)
    expected = np.mean(-(mix * log_probabilities[rows, LABELS] + (1 - mix) * log_probabilities[rows, partners]))
    assert float(hard) == pytest.approx(expected, rel=1e-6)


def test_with_consistent_views_the_teacher_labels_the_images_the_student_sees():
    """The teacher runs inside the step on the batch given: the logged soft term is T^2 KL between
    the teacher's and the student's logits for exactly those images, computed here with NumPy."""
    training.make_deterministic(RECIPE, ENGINE)
    student = architectures.build(RECIPE, "distilled", fashion_mnist.DATASET)
    teacher = architectures.build(RECIPE.model_copy(update={"hidden_units": [16], "seed": 1}), "teacher", fashion_mnist.DATASET)
    temperature, alpha = 2.0, 0.25
    distiller = losses.ConsistentViewsDistiller(student, losses.DistillationLoss(temperature, alpha), teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(4)
    images, labels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6)
    logged = distiller.evaluate(tf.data.Dataset.from_tensors((images, {"label": labels})), return_dict=True, verbose=0)
    student_logits, teacher_logits = student.predict(images, verbose=0), teacher.predict(images, verbose=0)
    soft = temperature**2 * kl(teacher_logits, student_logits, temperature)
    assert logged["soft_loss"] == pytest.approx(soft, rel=1e-5)
    assert logged["hard_loss"] == pytest.approx(cross_entropy(student_logits, labels), rel=1e-5)
    # A training step moves the student only.
    teacher_before = [weights.copy() for weights in teacher.get_weights()]
    distiller.fit(tf.data.Dataset.from_tensors((images, {"label": labels})), epochs=1, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights()))
    assert not np.array_equal(student_logits, student.predict(images, verbose=0))
