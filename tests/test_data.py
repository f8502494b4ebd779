"""IDX parsing, checksums, source lookup and the stratified split, on bytes built by hand."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from common import data, fashion_mnist
from common.cli import UserError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_reads_shape_and_values():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = fashion_mnist.parse_idx(idx_bytes(images), "images")
    assert parsed.shape == (2, 3, 4)
    np.testing.assert_array_equal(parsed, images)
    labels = fashion_mnist.parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]), "labels")
    assert labels.tolist() == [7, 8, 9]


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "bad IDX magic number 0x00000d01"),  # float data type
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "bad IDX magic number 0x01000801"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "IDX header truncated; 3 dimensions need 16 bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "IDX shape (5,) needs 13 bytes, the file has 10"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "IDX shape (1,) needs 9 bytes, the file has 10"),
    ],
)
def test_parse_idx_rejects_bad_bytes(payload, message):
    with pytest.raises(UserError, match=f"^labels: {message}".replace("(", r"\(").replace(")", r"\)")):
        fashion_mnist.parse_idx(payload, "labels")


def test_check_idx_pair_rejects_wrong_counts_and_labels():
    images = np.zeros((10_000, 28, 28), np.uint8)
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte: shape \(9999,\), expected \(10000,\)"):
        fashion_mnist.check_idx_pair(images, np.zeros(9_999, np.uint8), "t10k")
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte: shape \(10000, 28, 27\)"):
        fashion_mnist.check_idx_pair(np.zeros((10_000, 28, 27), np.uint8), np.zeros(10_000, np.uint8), "t10k")
    labels = np.zeros(10_000, np.uint8)
    labels[5] = 10
    with pytest.raises(UserError, match="label 10 found; labels are 0..9"):
        fashion_mnist.check_idx_pair(images, labels, "t10k")


def write_fake_source(directory, payload=b"not fashion-mnist"):
    directory.mkdir(exist_ok=True)
    for name in fashion_mnist.SHA256:
        (directory / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=0))


def test_checksum_mismatch_names_file_and_both_digests(tmp_path, monkeypatch):
    write_fake_source(tmp_path / "copy")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "copy"))
    with pytest.raises(UserError) as raised:
        fashion_mnist.load_raw()
    message = str(raised.value)
    assert message.startswith(f"{tmp_path}/copy/train-images-idx3-ubyte.gz: SHA-256 of the decompressed data is ")
    assert hashlib.sha256(b"not fashion-mnist").hexdigest() in message
    assert fashion_mnist.SHA256["train-images-idx3-ubyte"] in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"x" * 1000, mtime=0)[:-12])
    with pytest.raises(UserError, match=f"^{path}: cannot decompress .*truncated or not gzip"):
        fashion_mnist.read_payload(path, "train-labels-idx1-ubyte")


def test_env_dir_comes_first_and_must_be_complete(tmp_path, monkeypatch):
    write_fake_source(tmp_path / "mine")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "mine"))
    assert fashion_mnist.locate_source() == ("FASHION_MNIST_DIR", tmp_path / "mine")

    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte").write_bytes(b"raw files count too")
    assert fashion_mnist.locate_source() == ("FASHION_MNIST_DIR", tmp_path / "mine")

    (tmp_path / "mine" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match=r"FASHION_MNIST_DIR=.*/mine: missing t10k-labels-idx1-ubyte \(.gz or raw\)"):
        fashion_mnist.locate_source()


def test_later_sources_are_searched_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "KERAS_CACHE_DIR", tmp_path / "keras")
    write_fake_source(tmp_path / "keras")
    assert fashion_mnist.locate_source() == ("Keras cache", tmp_path / "keras")
    write_fake_source(tmp_path / "debian")
    assert fashion_mnist.locate_source() == ("Debian package", tmp_path / "debian")


def test_class_quotas_use_largest_remainder():
    # Class sizes 1..10 (55 items); 11 draws give exact shares size/5 = 0.2, 0.4, ..., 2.0.
    # The floors [0,0,0,0,1,1,1,1,1,2] sum to 7; the 4 left go to the largest remainders,
    # 0.8 (classes 3 and 8) and 0.6 (classes 2 and 7).
    labels = np.repeat(np.arange(10), np.arange(1, 11))
    assert data.class_quotas(labels, 11).tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2]
    # Equal classes, 15 draws: 1.5 each, so 5 tied remainders; the lower class indices win.
    assert data.class_quotas(np.repeat(np.arange(10), 6), 15).tolist() == [2] * 5 + [1] * 5


def toy_splits(per_class_train=60, per_class_test=10):
    train_labels = np.tile(np.arange(10, dtype=np.uint8), per_class_train)
    test_labels = np.tile(np.arange(10, dtype=np.uint8), per_class_test)
    return data.Split(numbered_images(len(train_labels)), train_labels), data.Split(numbered_images(len(test_labels)), test_labels)


def numbered_images(count):
    """Images whose first two pixels spell their index, so a split's provenance can be read back."""
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.divmod(np.arange(count), 256)
    return images


def image_ids(split):
    return set((split.images[:, 0, 0].astype(int) * 256 + split.images[:, 0, 1]).tolist())


def test_split_is_stratified_disjoint_and_seeded():
    train, test = toy_splits()
    splits = data.split_dataset(train, test, val_size=100, subset=None, seed=3, num_classes=10)
    assert np.bincount(splits["val"].labels).tolist() == [10] * 10
    assert np.bincount(splits["train"].labels).tolist() == [50] * 10
    assert len(splits["test"]) == 100
    # images encode their original index, so overlap between train and val would show
    assert not image_ids(splits["train"]) & image_ids(splits["val"])
    assert len(image_ids(splits["train"]) | image_ids(splits["val"])) == 600

    again = data.split_dataset(train, test, val_size=100, subset=None, seed=3, num_classes=10)
    np.testing.assert_array_equal(again["val"].images, splits["val"].images)
    other = data.split_dataset(train, test, val_size=100, subset=None, seed=4, num_classes=10)
    assert not np.array_equal(other["val"].images, splits["val"].images)


def test_subset_keeps_stratified_train_and_proportional_test():
    train, test = toy_splits()
    splits = data.split_dataset(train, test, val_size=20, subset=300, seed=0, num_classes=10)
    assert len(splits["train"]) + len(splits["val"]) == 300
    assert np.bincount(splits["val"].labels).tolist() == [2] * 10
    assert np.bincount(splits["test"].labels).tolist() == [5] * 10  # 100 * 300 / 600


def test_transfer_set_is_stratified_seeded_and_nested():
    # Unequal classes (100, 200, ..., 1000 images), shuffled, so proportional means per class.
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), np.arange(1, 11) * 100))
    sets = {fraction: data.transfer_indices(labels, fraction, seed=7) for fraction in (0.01, 0.03, 0.1, 0.3)}

    for fraction, indices in sets.items():
        counts = np.bincount(labels[indices], minlength=10)
        # round(fraction * class size), never below one image
        assert counts.tolist() == [max(1, round(fraction * size)) for size in range(100, 1001, 100)]
        assert np.array_equal(indices, np.unique(indices))  # sorted, no repeats
    fractions = sorted(sets)
    for smaller, larger in zip(fractions, fractions[1:]):
        assert set(sets[smaller]) < set(sets[larger])  # the 1% set lies inside the 3% set, and so on
    assert np.array_equal(data.transfer_indices(labels, 0.1, seed=7), sets[0.1])
    assert not np.array_equal(data.transfer_indices(labels, 0.1, seed=8), sets[0.1])


def test_the_whole_transfer_set_is_the_training_split_itself():
    train = data.Split(np.zeros((30, 28, 28), np.uint8), np.arange(30, dtype=np.uint8) % 10)
    assert data.transfer_set(train, 1.0, seed=3) is train
    assert len(data.transfer_set(train, 0.5, seed=3)) == 20  # 3 per class: round(1.5) = 2


def test_prepared_arrays_round_trip_byte_identically(tmp_path):
    train, test = toy_splits()
    splits = data.split_dataset(train, test, val_size=100, subset=None, seed=0, num_classes=10)
    first, second = tmp_path / "a" / "prepared", tmp_path / "b" / "prepared"
    data.save_prepared(fashion_mnist.DATASET, splits, first)
    data.save_prepared(fashion_mnist.DATASET, splits, second)
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["prepared"]  # no staging folder left
    loaded = data.load_split("val", fashion_mnist.DATASET, first)
    np.testing.assert_array_equal(loaded.labels, splits["val"].labels)


def test_load_split_names_a_missing_file(tmp_path):
    with pytest.raises(UserError, match=f"^{tmp_path}/test_images.npy: missing; run `dvc repro prepare`"):
        data.load_split("test", fashion_mnist.DATASET, tmp_path)
