"""A folder of class folders as a dataset: listing, reading, resizing, the test split, and one line for
each way a folder can be wrong. Images are written here with known pixels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import data, image_folders, images
from common.cli import UserError


def write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def solid(height: int, width: int, value, channels: int = 1) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.full(shape, value, dtype=np.uint8)


def three_classes(root: Path, per_class: int = 10, size=(6, 8)) -> None:
    """Classes named out of order, each image one grey level: class index times 100."""
    for label, name in enumerate(("ankle boot", "bag", "coat")):
        for index in range(per_class):
            write(root / name / f"{index:03d}.png", solid(*size, 100 * label))


def load(root: Path, layout="classes", image_size=None, channels=1, test_fraction=0.2, seed=0):
    return image_folders.load(root, layout, image_size, channels, test_fraction, seed)


def test_classes_are_the_sorted_folder_names_and_labels_follow_them(tmp_path):
    three_classes(tmp_path, per_class=10)
    (tmp_path / "README.txt").write_text("beside the classes: ignored")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "bag" / "notes.txt").write_text("not an image: ignored")
    dataset, train, test = load(tmp_path, test_fraction=0.2)
    assert dataset == data.Dataset("folder", ("ankle boot", "bag", "coat"), (6, 8))
    # 30 images, 6 held out: two of each class, stratified.
    assert len(train) == 24 and len(test) == 6
    assert np.bincount(test.labels).tolist() == [2, 2, 2]
    for split in (train, test):
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.uint8
        assert np.array_equal(split.images[:, 0, 0], 100 * split.labels.astype(int))


def test_the_test_split_is_seeded(tmp_path):
    for label, name in enumerate(("a", "b")):
        for index in range(20):
            write(tmp_path / name / f"{index:02d}.png", solid(4, 4, index + 50 * label))
    first, again, other = (load(tmp_path, seed=seed)[2].images[:, 0, 0].tolist() for seed in (1, 1, 2))
    assert first == again and first != other


def test_images_of_any_size_and_colour_go_to_one_size(tmp_path):
    write(tmp_path / "wide" / "a.png", solid(10, 40, 200))
    write(tmp_path / "tall" / "b.png", solid(30, 6, 90, channels=3))
    for index in range(2):
        write(tmp_path / "tall" / f"c{index}.png", solid(12, 12, 30))
        write(tmp_path / "wide" / f"d{index}.png", solid(12, 12, 30))
    dataset, train, test = load(tmp_path, image_size=[12, 12], channels=3, test_fraction=0.3)
    assert dataset.image_shape == (12, 12, 3) and dataset.class_names == ("tall", "wide")
    assert train.images.shape[1:] == test.images.shape[1:] == (12, 12, 3)


def test_fit_and_pad_keeps_the_aspect_ratio_and_pads_with_the_border_colour():
    # 8 wide, 2 high: a black frame around a white middle; fitted into 4x4 it becomes 4x1 and sits in
    # row 1 or 2 of 4, the rest filled with the border's mean.
    pixels = np.zeros((2, 8), dtype=np.uint8)
    pixels[:, 2:6] = 255
    border = images.border_colour(pixels)
    # Both rows (8 white of 16) and both end columns (4 black), corners counted twice: 255 * 8 / 20.
    assert border == (102,)
    fitted = np.asarray(images.fit_and_pad(Image.fromarray(pixels), 4, 4))
    assert fitted.shape == (4, 4)
    assert (fitted[0] == border[0]).all() and (fitted[2:] == border[0]).all()
    assert fitted[1, 0] < fitted[1, 1] and fitted[1, 3] < fitted[1, 2]  # the white middle stays in the middle
    same = Image.fromarray(pixels)
    assert images.fit_and_pad(same, 2, 8) is same  # already the size: untouched


def test_train_test_layout_takes_the_test_folder_as_it_is(tmp_path):
    three_classes(tmp_path / "train", per_class=5)
    three_classes(tmp_path / "test", per_class=2)
    dataset, train, test = load(tmp_path, layout="train_test")
    assert dataset.class_names == ("ankle boot", "bag", "coat")
    assert len(train) == 15 and len(test) == 6


def images_folder(root: Path) -> Path:
    root.mkdir()
    return root


@pytest.mark.parametrize(
    "make, layout, message",
    [
        (lambda root: None, "classes", "params.yaml: data.path = '{root}': no such folder; it must hold one folder per class"),
        (lambda root: root.write_text("x"), "classes", "params.yaml: data.path = '{root}' is a file; it must be a folder holding one folder per class"),
        (lambda root: three_classes(root, 3) or (root / "empty").mkdir(), "classes",
         "{root}/empty: an empty class: no images (.png, .jpg, .jpeg, .webp, .bmp, .gif); add some or remove the folder"),
        (lambda root: write(root / "only" / "a.png", solid(4, 4, 0)), "classes",
         "{root}: one class only (only); distillation needs at least two class folders"),
        (lambda root: images_folder(root).joinpath("a.png").write_bytes(b"x"), "classes",
         "{root}: no class folders; put each class's images in a folder named after the class"),
        (lambda root: three_classes(root, 3) or (root / "bag" / "broken.png").write_bytes(b"not a png"), "classes",
         "{root}/bag/broken.png: not a readable image; PNG or JPEG expected"),
        (lambda root: three_classes(root, 3) or write(root / "coat" / "big.png", solid(9, 9, 0)), "classes",
         "{root}/coat/big.png: 9x9 pixels, but {root}/ankle boot/000.png is 8x6; images of mixed sizes need "
         "data.image_size: [height, width] in params.yaml"),
        (lambda root: three_classes(root / "train", 3) or write(root / "test" / "bag" / "a.png", solid(6, 8, 0))
         or write(root / "test" / "dress" / "a.png", solid(6, 8, 0)), "train_test",
         "{root}: train and test hold different classes (only in train: ['ankle boot', 'coat']; only in test: "
         "['dress']); both need the same class folders"),
        (lambda root: write(root / "a" / "1.png", solid(4, 4, 0)) or write(root / "b" / "1.png", solid(4, 4, 0)), "classes",
         "{root}: 2 images are too few for data.test_fraction = 0.2 in 2 classes; add images or lower it"),
    ],
    ids=["missing", "a-file", "empty-class", "one-class", "no-class-folders", "unreadable-image", "mixed-sizes",
         "train-test-classes-differ", "too-few"],
)
def test_a_bad_folder_is_one_line(tmp_path, make, layout, message):
    root = tmp_path / "images"
    make(root)
    with pytest.raises(UserError) as raised:
        load(root, layout=layout)
    assert str(raised.value).startswith(message.format(root=root))
    assert "\n" not in str(raised.value)


def test_an_unreadable_image_is_fatal_and_says_so(tmp_path):
    """Skipping it would change the split without a word: the line names the file and stops prepare."""
    three_classes(tmp_path, 3)
    (tmp_path / "bag" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(UserError, match=r"/bag/001\.png: "):
        load(tmp_path)


def test_prepared_folder_data_round_trips_with_its_class_list(tmp_path):
    three_classes(tmp_path / "images", per_class=10)
    dataset, train, test = load(tmp_path / "images", channels=3)
    splits = data.split_dataset(train, test, val_size=6, subset=None, seed=0, num_classes=dataset.num_classes)
    data.save_prepared(dataset, splits, tmp_path / "prepared")
    assert data.load_dataset(tmp_path / "prepared") == dataset
    loaded = data.load_split("val", dataset, tmp_path / "prepared")
    assert loaded.images.shape == (6, 6, 8, 3) and np.bincount(loaded.labels).tolist() == [2, 2, 2]
    with pytest.raises(UserError, match=r"val_\*\.npy: images uint8\(6, 6, 8, 3\) .* do not match uint8 \(n, 28, 28\)"):
        data.load_split("val", data.Dataset("fashion-mnist", tuple("abcdefghij"), (28, 28)), tmp_path / "prepared")
