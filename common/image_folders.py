"""A dataset of your own: a folder of class folders, as Keras's `image_dataset_from_directory` reads it.

    data/images/             data.layout: classes      data/images/train/<class>/...  data.layout: train_test
        boot/ 001.png ...    (test images are drawn    data/images/test/<class>/...   (the test folder is the
        sandal/ ...           from it: data.test_fraction)                             test set as it is)

- Classes are the sub-folders' names, sorted (as Keras sorts them); hidden entries and files beside
  the class folders are ignored. Images are the files, at any depth inside a class folder, whose
  suffix is an image format's (.png, .jpg, .jpeg, .webp, .bmp, .gif; any case); other files are ignored.
- Every image is read by common.images (its checks and conversions), as grayscale (data.channels 1)
  or RGB (3). An image that cannot be read stops prepare with its path: skipping it would change the
  split without a word.
- Size: with data.image_size [height, width], each image is scaled, aspect ratio kept, until it fits,
  then padded to the size with its own border colour (images.fit_and_pad): nothing is cropped. With
  image_size null every image must already have one size.
- Memory: the images go straight into one preallocated uint8 array, so prepare holds the dataset once
  (height x width x channels bytes an image), plus the split it writes.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.cli import UserError
from common.data import MAX_CLASSES, Dataset, Split, stratified_indices
from common.images import fit_and_pad, read_image

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


@dataclass(frozen=True)
class Listing:
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    labels: np.ndarray

    def count_line(self) -> str:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return ", ".join(f"{name} {count}" for name, count in zip(self.class_names, counts))


def visible(path: Path) -> bool:
    return not path.name.startswith(".")


def check_folder(path: Path, key: str) -> None:
    if not path.exists():
        raise UserError(f"params.yaml: {key} = {str(path)!r}: no such folder; it must hold one folder per class")
    if not path.is_dir():
        raise UserError(f"params.yaml: {key} = {str(path)!r} is a file; it must be a folder holding one folder per class")


def image_files(class_folder: Path) -> list[Path]:
    """The images inside a class folder, at any depth, in a fixed (sorted) order."""
    return sorted(
        file for file in class_folder.rglob("*")
        if file.suffix.lower() in SUFFIXES and file.is_file()
        and all(visible(part) for part in file.relative_to(class_folder).parents if part != Path("."))
        and visible(file)
    )


def list_classes(root: Path, key: str) -> Listing:
    """The class folders under `root` and their image files; one line for each way it can be wrong."""
    check_folder(root, key)
    try:
        class_folders = sorted(entry for entry in root.iterdir() if entry.is_dir() and visible(entry))
    except PermissionError as error:
        raise UserError(f"{root}: cannot be read ({error.strerror})") from None
    if not class_folders:
        raise UserError(f"{root}: no class folders; put each class's images in a folder named after the class")
    if len(class_folders) == 1:
        raise UserError(f"{root}: one class only ({class_folders[0].name}); distillation needs at least two class folders")
    if len(class_folders) > MAX_CLASSES:
        raise UserError(f"{root}: {len(class_folders)} class folders; allowed up to {MAX_CLASSES}")
    files, labels = [], []
    for label, folder in enumerate(class_folders):
        found = image_files(folder)
        if not found:
            raise UserError(f"{folder}: an empty class: no images ({', '.join(SUFFIXES)}); add some or remove the folder")
        files += found
        labels += [label] * len(found)
    return Listing(tuple(folder.name for folder in class_folders), tuple(files), np.array(labels))


def read_images(listing: Listing, size: tuple[int, int] | None, channels: int, dtype) -> Split:
    """Every listed image in one uint8 array (n, height, width) for grayscale or (n, height, width, 3)."""
    mode = "L" if channels == 1 else "RGB"
    images = None
    for index, path in enumerate(listing.files):
        picture = read_image(path, mode)
        if size is not None:
            picture = fit_and_pad(picture, *size)
        if images is None:
            shape = (picture.height, picture.width) + ((3,) if channels == 3 else ())
            images = np.empty((len(listing.files), *shape), dtype=np.uint8)
            first = path
        elif (picture.height, picture.width) != images.shape[1:3]:
            raise UserError(
                f"{path}: {picture.width}x{picture.height} pixels, but {first} is {images.shape[2]}x{images.shape[1]}; "
                f"images of mixed sizes need data.image_size: [height, width] in params.yaml"
            )
        images[index] = np.asarray(picture, dtype=np.uint8)
    return Split(images, listing.labels.astype(dtype))


def load(root: Path, layout: str, image_size: list[int] | None, channels: int, test_fraction: float,
         seed: int) -> tuple[Dataset, Split, Split]:
    """(dataset, train, test) from the folder at `root`; see the module's text for the rules."""
    size = tuple(image_size) if image_size else None
    if layout == "train_test":
        train_listing = list_classes(root / "train", "data.path (its train folder)")
        test_listing = list_classes(root / "test", "data.path (its test folder)")
        if train_listing.class_names != test_listing.class_names:
            only_train = sorted(set(train_listing.class_names) - set(test_listing.class_names))
            only_test = sorted(set(test_listing.class_names) - set(train_listing.class_names))
            raise UserError(f"{root}: train and test hold different classes (only in train: {only_train or 'none'}; "
                            f"only in test: {only_test or 'none'}); both need the same class folders")
        listing = train_listing
        print(f"{root / 'train'}: {len(train_listing.files)} images ({train_listing.count_line()})")
        print(f"{root / 'test'}: {len(test_listing.files)} images ({test_listing.count_line()})")
    else:
        listing = list_classes(root, "data.path")
        print(f"{root}: {len(listing.files)} images ({listing.count_line()})")
    classes = len(listing.class_names)
    dtype = np.uint8 if classes <= 256 else np.uint16
    if layout == "train_test":
        train = read_images(listing, size, channels, dtype)
        test = read_images(test_listing, size, channels, dtype)
        if test.images.shape[1:] != train.images.shape[1:]:
            raise UserError(
                f"{root / 'test'}: {test.images.shape[2]}x{test.images.shape[1]} images, but train's are "
                f"{train.images.shape[2]}x{train.images.shape[1]}; images of mixed sizes need data.image_size: [height, width]"
            )
    else:
        everything = read_images(listing, size, channels, dtype)
        test_count = max(classes, round(test_fraction * len(everything)))
        if test_count > len(everything) - 2 * classes:
            raise UserError(f"{root}: {len(everything)} images are too few for data.test_fraction = {test_fraction} "
                            f"in {classes} classes; add images or lower it")
        held_out = np.zeros(len(everything), dtype=bool)
        held_out[stratified_indices(everything.labels, test_count, np.random.default_rng(seed))] = True
        train, test = everything.take(np.flatnonzero(~held_out)), everything.take(np.flatnonzero(held_out))
        for label, name in enumerate(listing.class_names):
            if not np.any(train.labels == label) or not np.any(test.labels == label):
                raise UserError(f"{root / name}: too few images to put one in both the training and the test split")
    return Dataset("folder", listing.class_names, train.images.shape[1:]), train, test

