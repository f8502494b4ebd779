"""Architectures, parameter counts, the shared training loop and byte-stable weight files."""

import h5py
import keras
import numpy as np
import pytest

from common import architectures, cli, data, fashion_mnist, feeding, losses, params, training, weights
from common.cli import UserError

RECIPE = params.Training(
    arch="mlp", conv_filters=[8], conv_dense_units=8, dropout=0.0, norm_momentum=0.99,
    seed=0, hidden_units=[16], learning_rate=0.01, decay_steps=100, decay_alpha=0.1, batch_size=32, epochs=6, patience=1,
    min_steps=0,
)
ENGINE = params.Train(numerics="portable", strategy="default", jit_compile="auto", steps_per_execution=1)


@pytest.mark.parametrize(
    "hidden_units, expected_params",
    [
        # 784*512+512 + 512*256+256 + 256*128+128 + 128*10+10
        ([512, 256, 128], 401_920 + 131_328 + 32_896 + 1_290),
        # 784*128+128 + 128*10+10
        ([128], 100_480 + 1_290),
    ],
)
def test_mlp_shapes_and_parameter_counts(hidden_units, expected_params):
    model = architectures.build_mlp(hidden_units, "model", fashion_mnist.DATASET)
    assert model.count_params() == expected_params
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [*hidden_units, 10]
    assert model.input.dtype == "uint8"
    logits = model.predict(np.full((3, 28, 28), 255, np.uint8), verbose=0)
    assert logits.shape == (3, 10)
    assert model.layers[-1].activation.__name__ == "linear"  # logits out; losses use from_logits=True


TEACHER = params.Training(
    **{**RECIPE.model_dump(), "arch": "cnn", "conv_filters": [32, 64], "conv_dense_units": 256, "dropout": 0.3}
)


def test_cnn_shapes_parameter_count_and_engine():
    model = architectures.build(TEACHER, "teacher", fashion_mnist.DATASET)
    # conv 3*3*1*32 (no bias) + batch norm 4*32 + conv 3*3*32*64 + 4*64
    # + dense (7*7*64)*256+256 after two 2x2 poolings + logits 256*10+10
    assert model.count_params() == 288 + 128 + 18_432 + 256 + 803_072 + 2_570
    assert model.output.shape == (None, 10) and model.layers[-1].activation.__name__ == "linear"
    norms = [type(layer) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms == [architectures.BatchNormalization] * 2
    auto = params.Train(numerics="portable", strategy="default", jit_compile="auto", steps_per_execution=16)
    assert not training.use_xla(auto, TEACHER)  # measured 5x slower with XLA on CPU
    assert training.use_xla(auto, TEACHER.model_copy(update={"arch": "mlp"}))
    assert architectures.describe(TEACHER) == "cnn (conv_filters [32, 64], conv_dense_units 256)"


def test_batch_normalisation_divides_by_an_ieee_square_root():
    rng = np.random.default_rng(0)
    images = (rng.standard_normal((32, 5, 5, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]).astype(np.float32)
    layer = architectures.BatchNormalization(momentum=0.9)
    layer.build(images.shape)
    layer.gamma.assign([1.0, 2.0, 0.5])
    layer.beta.assign([0.0, 1.0, -1.0])
    mean, variance = images.mean(axis=(0, 1, 2), dtype=np.float64), images.var(axis=(0, 1, 2), dtype=np.float64)
    expected = (images - mean) / np.sqrt(variance + layer.epsilon) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    np.testing.assert_allclose(layer(images, training=True).numpy(), expected, rtol=0, atol=2e-6)
    # Keras's update of the moving statistics, from 0 and 1: 0.1 of the batch's.
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * variance, rtol=1e-6)
    # Inference normalises with the moving statistics.
    moving = (images - 0.1 * mean) / np.sqrt(0.9 + 0.1 * variance + layer.epsilon) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    np.testing.assert_allclose(layer(images, training=False).numpy(), moving, rtol=0, atol=2e-6)


@pytest.mark.parametrize(("layer_class", "exact"), [
    (architectures.BatchNormalization, True),
    # TensorFlow's rsqrt is the CPU's estimate refined once: over 64 channels some last bit differs
    # (on this project's Intel Xeon and AMD EPYC; another CPU may miss other bits, but it misses some).
    (keras.layers.BatchNormalization, False),
])
def test_batch_normalisation_is_bit_for_bit_ieee_float32(layer_class, exact):
    """Called eagerly, through Keras's predict (a graph that Grappler rewrites) and in the LiteRT
    file (whose converter rewrites and folds it): x / sqrt(y) must not become x * rsqrt(y) in any."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = (rng.standard_normal((16, 4, 4, 64)) * rng.uniform(0.1, 10, 64)).astype(np.float32)
    entry = keras.Input(images.shape[1:])
    layer = layer_class(momentum=0.0)  # the moving statistics become the batch's
    model = keras.Model(entry, layer(entry))
    layer(images, training=True)
    inverse = layer.gamma.numpy() / np.sqrt(layer.moving_variance.numpy() + np.float32(layer.epsilon))
    offset = layer.beta.numpy() - layer.moving_mean.numpy() * inverse
    expected = images * inverse + offset
    assert expected.dtype == np.float32
    assert np.array_equal(layer(images, training=False).numpy(), expected) == exact
    assert np.array_equal(model.predict(images, verbose=0), expected) == exact
    # The converter folds the layer into a multiplication and an addition by constant vectors.
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert (inverse.tobytes() in flatbuffer and offset.tobytes() in flatbuffer) == exact


def test_a_cnn_student_is_the_small_cnn_its_section_describes():
    student = params.Student(**{**RECIPE.model_dump(), "arch": "cnn", "conv_filters": [8, 16], "conv_dense_units": 32,
                                "dropout": 0.0, "train_fraction": 1.0})
    model = architectures.build(student, "student", fashion_mnist.DATASET)
    # conv 3*3*1*8 + batch norm 4*8 + conv 3*3*8*16 + 4*16 + dense (7*7*16)*32+32 + logits 32*10+10
    assert model.count_params() == 72 + 32 + 1_152 + 64 + 25_120 + 330 == 26_770
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [8, 16]
    assert architectures.describe(student) == "cnn (conv_filters [8, 16], conv_dense_units 32)"
    assert not training.use_xla(params.Train(numerics="portable", strategy="default", jit_compile="auto",
                                           steps_per_execution=16), student)


@pytest.mark.parametrize("examples, batch_size, epochs, min_steps, expected", [
    (55_000, 256, 30, 3000, 215),  # a full pass already has enough steps
    (550, 256, 30, 3000, 100),     # 1%: 3 steps a pass, so each epoch cycles through 100 steps
    (550, 256, 30, 0, 3),
    (10, 4, 7, 50, 8),             # ceil(50 / 7)
])
def test_steps_per_epoch(examples, batch_size, epochs, min_steps, expected):
    recipe = RECIPE.model_copy(update={"batch_size": batch_size, "epochs": epochs, "min_steps": min_steps})
    assert feeding.steps_per_epoch(examples, recipe) == expected


def test_repeat_cycles_arrays_and_target_dicts_row_by_row():
    images = np.arange(3)
    assert feeding.repeat_to(images, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    targets = feeding.repeat_to({"label": np.arange(3), "teacher_logits": np.eye(3)}, 4)
    assert targets["label"].tolist() == [0, 1, 2, 0]
    assert targets["teacher_logits"].tolist() == np.eye(3)[[0, 1, 2, 0]].tolist()


def test_each_epoch_is_one_pass_over_the_cycled_rows_in_an_order_of_its_own():
    # 10 images cycled to 3 batches of 4: rows 0-9 and then 0 and 1 again. The image holds its row
    # number in every pixel, so each target can be checked against the image it came with.
    rows = np.arange(10)
    images = np.broadcast_to(rows[:, None, None], (10, 28, 28)).astype(np.uint8)
    targets = {"label": rows, "teacher_logits": np.stack([rows, -rows], axis=1).astype(np.float32)}

    def epochs(count: int, seed: int) -> list[list[int]]:
        dataset = feeding.epoch_batches(images, targets, batch_size=4, steps=3, seed=seed)
        assert dataset.cardinality() == 3  # known, so Keras ends an epoch's last call at the pass's end
        orders = []
        for _ in range(count):  # Keras iterates the dataset afresh every epoch
            seen = []
            for batch_images, batch_targets in dataset:
                assert batch_images.shape == (4, 28, 28)
                first_pixels = batch_images[:, 0, 0].numpy().astype(int)
                assert (batch_images.numpy() == first_pixels[:, None, None]).all()
                assert batch_targets["label"].numpy().tolist() == first_pixels.tolist()
                assert batch_targets["teacher_logits"].numpy()[:, 1].tolist() == (-first_pixels).tolist()
                seen += first_pixels.tolist()
            orders.append(seen)
        return orders

    keras.utils.set_random_seed(0)
    first = epochs(3, seed=5)
    for order in first:
        assert sorted(order) == sorted([*range(10), 0, 1])
    assert len({tuple(order) for order in first}) == 3  # a new order every epoch
    keras.utils.set_random_seed(0)
    assert epochs(3, seed=5) == first  # the same run, the same orders
    keras.utils.set_random_seed(0)
    assert epochs(1, seed=6)[0] != first[0]


def test_gathering_a_pass_in_chunks_gives_the_same_batches(monkeypatch):
    """A large dataset is gathered CHUNK_BYTES at a time, not as a second copy of the pass: the chunk
    size must not change a single batch. 50 images of 784 bytes and their labels cycled to 9 batches of
    8; a 2,000-byte chunk holds no whole batch (6,280 bytes), 13,000 bytes hold two, 64 MiB the pass."""
    rows = np.arange(50)
    images = np.broadcast_to(rows[:, None, None], (50, 28, 28)).astype(np.uint8)
    labels = (rows % 10).astype(np.uint8)

    def two_epochs(chunk_bytes: int) -> list:
        monkeypatch.setattr(feeding, "CHUNK_BYTES", chunk_bytes)
        keras.utils.set_random_seed(0)
        dataset = feeding.epoch_batches(images, labels, batch_size=8, steps=9, seed=3)
        return [(x[:, 0, 0].numpy().tolist(), y.numpy().tolist()) for _ in range(2) for x, y in dataset]

    whole = two_epochs(64 * 1024**2)
    assert len(whole) == 18 and whole[:9] != whole[9:]
    assert two_epochs(2_000) == two_epochs(13_000) == whole


def test_small_sets_train_min_steps_and_the_schedule_spans_the_run():
    # 40 images in batches of 32 are 2 steps a pass; min_steps 30 over 3 epochs makes 10 steps an epoch.
    recipe = RECIPE.model_copy(update={"epochs": 3, "patience": 3, "min_steps": 30, "decay_steps": None})
    training.make_deterministic(recipe, ENGINE)
    model = architectures.build(recipe, "toy", fashion_mnist.DATASET)
    (images, labels), (x_val, y_val) = toy_data(1, 40), toy_data(2, 16)
    summary = training.fit(model, recipe, ENGINE, images, labels, x_val, y_val, stage="train@toy", recipe_name="toy",
                         loss=losses.label_loss())
    assert (summary["train_examples"], summary["steps_per_epoch"], summary["epochs_run"]) == (40, 10, 3)
    assert int(model.optimizer.iterations) == 30
    schedule = model.optimizer.learning_rate if callable(model.optimizer.learning_rate) else model.optimizer._learning_rate
    assert schedule.decay_steps == 30  # the cosine ends where the run ends
    assert float(schedule(30)) == pytest.approx(recipe.learning_rate * recipe.decay_alpha)


def toy_data(seed, count=256):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 64, (count, 28, 28), dtype=np.uint8)
    images[np.arange(count), labels, :] = 255  # a learnable cue: the bright row is the class
    return images, labels


def train_toy(seed=0, engine=ENGINE, curves_dir=None, **recipe_changes):
    """A toy model trained by the pipeline's own loop: (model, summary)."""
    recipe = RECIPE.model_copy(update={"seed": seed, **recipe_changes})
    training.make_deterministic(recipe, engine)
    model = architectures.build(recipe, "toy", fashion_mnist.DATASET)
    (x_train, y_train), (x_val, y_val) = toy_data(1), toy_data(2, 64)
    return model, training.fit(model, recipe, engine, x_train, y_train, x_val, y_val, stage="train@toy",
                             recipe_name="toy", loss=losses.label_loss(), curves_dir=curves_dir)


def test_fit_reports_the_best_validation_epoch_and_restores_it():
    model, summary = train_toy(seed=0)
    assert model.jit_compile is True  # auto means XLA for an MLP, and Keras did not turn it off
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= RECIPE.epochs
    x_val, y_val = toy_data(2, 64)
    restored = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
    assert restored["loss"] == pytest.approx(summary["val_loss"], abs=1e-6)  # the summary is rounded


def test_same_seed_same_weights_and_bytes(tmp_path):
    first, _ = train_toy(seed=7)
    second, _ = train_toy(seed=7)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    weights.save_weights(first, str(tmp_path / "first.weights.h5"))
    weights.save_weights(second, str(tmp_path / "second.weights.h5"))
    assert (tmp_path / "first.weights.h5").read_bytes() == (tmp_path / "second.weights.h5").read_bytes()


def test_saved_weights_hold_layers_only_and_reload(tmp_path):
    model, _ = train_toy(seed=0)
    path = str(tmp_path / "toy.weights.h5")
    weights.save_weights(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.weights.h5"]  # no partial file left
    with h5py.File(path) as saved:
        assert "optimizer" not in saved  # no training state: nothing downstream reads it
    reloaded = weights.load_model("toy", RECIPE, path, fashion_mnist.DATASET)
    for saved_weights, trained_weights in zip(reloaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(saved_weights, trained_weights)
    # The trained model predicts through XLA, the reloaded one without: the same logits to rounding.
    images, _ = toy_data(3, 8)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)


def test_loading_into_another_architecture_is_a_clear_error(tmp_path):
    model, _ = train_toy(seed=0)
    path = str(tmp_path / "toy.weights.h5")
    weights.save_weights(model, path)
    with pytest.raises(UserError, match=r"toy.weights.h5: does not match the architecture mlp \(hidden_units \[32\]\)"):
        weights.load_model("toy", RECIPE.model_copy(update={"hidden_units": [32]}), path, fashion_mnist.DATASET)
    with pytest.raises(UserError, match=r"missing.weights.h5: missing; run `dvc repro`"):
        weights.load_model("toy", RECIPE, str(tmp_path / "missing.weights.h5"), fashion_mnist.DATASET)


def test_saving_clears_side_files_left_by_a_killed_run(tmp_path):
    model, _ = train_toy(seed=0)
    (tmp_path / ".partial-12345-toy.weights.h5").write_bytes(b"half a file")
    weights.save_weights(model, str(tmp_path / "toy.weights.h5"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.weights.h5"]


def test_same_seed_same_initial_weights_whatever_the_name():
    # distill.py relies on this: the distilled student starts where the baseline student started.
    recipe = RECIPE.model_copy(update={"seed": 42, "hidden_units": [32]})
    training.make_deterministic(recipe, ENGINE)
    baseline = architectures.build(recipe, "student", fashion_mnist.DATASET).get_weights()
    training.make_deterministic(recipe, ENGINE)
    distilled = architectures.build(recipe, "distilled", fashion_mnist.DATASET).get_weights()
    for a, b in zip(baseline, distilled):
        np.testing.assert_array_equal(a, b)


def test_a_loss_that_becomes_nan_stops_training_with_one_line_and_no_curves(tmp_path):
    # Adam's steps are about the learning rate in size: at 1e20 the second step's logits overflow to inf - inf.
    with pytest.raises(UserError) as raised:
        train_toy(learning_rate=1e20, epochs=2, curves_dir=tmp_path / "curves" / "toy")
    assert str(raised.value) == (
        "train@toy diverged: loss became nan at epoch 1, step 2; lower toy.learning_rate (now 1e+20)"
    )
    assert list((tmp_path / "curves").iterdir()) == []  # dvclive's half-run folder is gone, not left behind


def test_with_several_steps_per_call_divergence_is_caught_at_the_end_of_the_call():
    with pytest.raises(UserError, match=r"^train@toy diverged: loss became nan at epoch 1, step 4; "):
        train_toy(learning_rate=1e20, epochs=2, engine=ENGINE.model_copy(update={"steps_per_execution": 4}))


def test_a_huge_but_finite_loss_is_an_ordinary_bad_result(tmp_path):
    _, summary = train_toy(learning_rate=1e6, epochs=2, curves_dir=tmp_path / "toy")
    assert summary["loss"] > 1e3 and np.isfinite(summary["loss"]) and np.isfinite(summary["val_loss"])
    assert (tmp_path / "toy" / "plots" / "metrics" / "eval" / "loss.tsv").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


def test_logits_that_are_not_finite_are_refused():
    model = architectures.build_mlp([4], "teacher", fashion_mnist.DATASET)
    values = model.get_weights()
    values[-2][0, 3] = np.nan  # one output weight: class 3's logit is NaN for every image
    model.set_weights(values)
    images, labels = toy_data(0, 5)
    with pytest.raises(UserError, match=r"^models/teacher.weights.h5: non-finite logits for 5 of 5 images; "):
        weights.predict_logits(model, data.Split(images, labels.astype(np.uint8)))


def test_training_gives_the_same_bits_in_every_process(same_bits):
    """What `dvc repro -f` relies on, for the MLP with XLA and the CNN without: two fresh processes
    (tests/same_bits.py), the same bits."""
    first, second = same_bits
    assert (first["mlp"]["xla"], first["cnn"]["xla"]) == (True, False)
    assert first["mlp"]["weights_changed"] and first["cnn"]["weights_changed"]
    for model in ("mlp", "cnn"):
        assert first[model]["digest"] == second[model]["digest"], model


def test_divergence_in_a_short_last_call_names_a_step_of_the_epoch():
    # 256 images in batches of 32 are 8 steps: a call of 16 steps ends at the epoch's 8th, not a 16th.
    with pytest.raises(UserError, match=r"^train@toy diverged: loss became nan at epoch 1, step 8; "):
        train_toy(learning_rate=1e20, epochs=2, engine=ENGINE.model_copy(update={"steps_per_execution": 16}))


def test_a_ctrl_c_that_python_dropped_still_stops_training():
    # cli's handler sets the flag before it raises; test_outputs drops a real one in a subprocess.
    recipe, engine = RECIPE.model_copy(update={"epochs": 2}), ENGINE.model_copy(update={"steps_per_execution": 4})
    training.make_deterministic(recipe, engine)
    model = architectures.build(recipe, "toy", fashion_mnist.DATASET)
    (x_train, y_train), (x_val, y_val) = toy_data(1), toy_data(2, 64)
    cli.interrupted.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            training.fit(model, recipe, engine, x_train, y_train, x_val, y_val, stage="train@toy", recipe_name="toy",
                       loss=losses.label_loss())
    finally:
        cli.interrupted.clear()
    assert int(model.optimizer.iterations) == 4  # its first call into TensorFlow, of the run's 16 steps


def test_steps_per_execution_changes_speed_not_weights():
    one_step, four_steps = (
        train_toy(epochs=2, engine=ENGINE.model_copy(update={"steps_per_execution": steps}))[0].get_weights()
        for steps in (1, 4)
    )
    for a, b in zip(one_step, four_steps):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_fires_and_restores_the_best_epoch():
    # Random labels hold nothing to learn: validation loss bottoms out early and then rises as the model memorises.
    recipe = RECIPE.model_copy(update={"hidden_units": [64], "learning_rate": 0.02, "epochs": 30, "patience": 2})
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    x_val = rng.integers(0, 256, (128, 28, 28), dtype=np.uint8)
    labels, y_val = rng.integers(0, 10, 256), rng.integers(0, 10, 128)
    training.make_deterministic(recipe, ENGINE)
    model = architectures.build(recipe, "toy", fashion_mnist.DATASET)
    history = keras.callbacks.History()

    summary = training.fit(model, recipe, ENGINE, images, labels, x_val, y_val, stage="train@toy", recipe_name="toy",
                         loss=losses.label_loss(), callbacks=[history])

    val_losses = history.history["val_loss"]
    assert summary["epochs_run"] == len(val_losses) < recipe.epochs  # it stopped early
    assert summary["best_epoch"] == 1 + int(np.argmin(val_losses)) == summary["epochs_run"] - recipe.patience
    restored = model.evaluate(x_val, y_val, verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(min(val_losses), rel=1e-5)
    assert restored < val_losses[-1]  # the weights are the best epoch's, not the last one's


def test_a_short_cnn_run_settles_its_batch_norm_statistics_on_the_training_images():
    """8 steps leave 0.99 ** 8 = 92% of the moving variance's starting 1.0 in place: the statistics are
    then set to the exact mean and variance of each layer's inputs over the training images, and the
    validation scores are those of the weights as saved."""
    recipe = RECIPE.model_copy(update={"arch": "cnn", "conv_filters": [4, 8], "epochs": 2, "patience": 2})
    images, labels = toy_data(0, count=128)
    training.make_deterministic(recipe, ENGINE)
    model = architectures.build(recipe, "toy", fashion_mnist.DATASET)
    summary = training.fit(model, recipe, ENGINE, images, labels, images[:64], labels[:64], stage="train@toy",
                           recipe_name="toy", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert summary["batch_norm_settled"] is True
    for block in (1, 2):
        inputs = keras.Model(model.inputs, model.get_layer(f"conv_{block}").output)
        values = inputs(images, training=False).numpy().astype(np.float64).reshape(-1, 4 * block)
        norm = model.get_layer(f"norm_{block}")
        np.testing.assert_allclose(norm.moving_mean.numpy(), values.mean(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(norm.moving_variance.numpy(), values.var(axis=0), rtol=1e-4, atol=1e-6)
    logits = model.predict(images[:64], verbose=0)
    assert summary["val_accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == labels[:64]))


def test_long_runs_and_mlps_keep_their_moving_statistics():
    cnn = architectures.build(RECIPE.model_copy(update={"arch": "cnn"}), "toy", fashion_mnist.DATASET)
    assert training.batch_norm_unsettled(cnn, 600) and not training.batch_norm_unsettled(cnn, 700)
    assert not training.batch_norm_unsettled(architectures.build(RECIPE, "toy", fashion_mnist.DATASET), 1)
