"""The dataset in the pipeline's own terms: what it is (class names, image shape), its splits,
stratified and seeded sampling, and the prepared arrays on disk that every stage after prepare reads.

Where the images come from is another module's job: common/fashion_mnist.py (the default) and
common/image_folders.py (a folder of class folders). Numpy only: nothing here imports TensorFlow.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import outputs
from common.cli import UserError

# A class is chosen by a label of this type in prepared arrays: 65,536 classes are enough for any
# dataset a CPU pipeline distils.
MAX_CLASSES = 65_536


@dataclass(frozen=True)
class Dataset:
    """What the prepared arrays hold: `image_shape` is (height, width) for one channel, as Fashion-MNIST
    stores it, and (height, width, 3) for colour."""

    source: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.image_shape[2] if len(self.image_shape) == 3 else 1

    def describe_shape(self) -> str:
        height, width = self.image_shape[:2]
        return f"{height}x{width}, {'RGB' if self.channels == 3 else 'grayscale'}"

    def label_dtype(self):
        return np.uint8 if self.num_classes <= 256 else np.uint16


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (n, *Dataset.image_shape); scaled inside the model, so data stays small
    labels: np.ndarray  # (n,), class indices into Dataset.class_names

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> "Split":
        return Split(self.images[indices], self.labels[indices])


# ---------------------------------------------------------------- stratified sampling

def class_quotas(labels: np.ndarray, count: int) -> np.ndarray:
    """How many of `count` draws each class gets, proportional to its size (largest remainder)."""
    sizes = np.bincount(labels).astype(np.int64)
    # Integer arithmetic: float shares would break remainder ties by rounding noise.
    quotas, remainders = np.divmod(count * sizes, sizes.sum())
    order = np.lexsort((np.arange(len(sizes)), -remainders))  # ties go to the lower class index
    quotas[order[: count - quotas.sum()]] += 1
    return quotas


def stratified_indices(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a class-stratified random sample of `count` items."""
    quotas = class_quotas(labels, count)
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:quota]
        for label, quota in enumerate(quotas)
    ]
    return np.sort(np.concatenate(chosen))


def size_problem(key: str, value: int, pool: int, pool_name: str, num_classes: int) -> str | None:
    """A split size must leave at least one image of every class on both sides."""
    if num_classes <= value <= pool - num_classes:
        return None
    return (f"params.yaml: {key} = {value} is invalid: allowed {num_classes}..{pool - num_classes} "
            f"for {pool} {pool_name} in {num_classes} classes")


def split_dataset(train: Split, test: Split, val_size: int, subset: int | None, seed: int,
                  num_classes: int) -> dict[str, Split]:
    """train/val/test; with `subset`, a stratified subset of training and a proportional one of test.

    For Fashion-MNIST the params schema checks the sizes before any stage starts; a folder's size is
    known only here, so they are checked again.
    """
    if subset is not None and not num_classes <= subset <= len(train):
        raise UserError(f"params.yaml: prepare.subset = {subset} is invalid: allowed {num_classes}..{len(train)}, "
                        f"the training images in {num_classes} classes")
    rng = np.random.default_rng(seed)
    if subset is not None:
        test_count = max(num_classes, round(len(test) * subset / len(train)))
        train = train.take(stratified_indices(train.labels, subset, rng))
        test = test.take(stratified_indices(test.labels, test_count, rng))
    if problem := size_problem("prepare.val_size", val_size, len(train), "training images", num_classes):
        raise UserError(problem)
    val_indices = stratified_indices(train.labels, val_size, rng)
    keep = np.ones(len(train), dtype=bool)
    keep[val_indices] = False
    return {"train": train.take(np.flatnonzero(keep)), "val": train.take(val_indices), "test": test}


def transfer_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the student's transfer set: `fraction` of each class, at least one image.

    Each class is shuffled once by `seed`, and the set takes the front of each shuffled class, so for
    one seed a smaller fraction is always inside a larger one: points on a data-efficiency curve
    differ only in how many images they see.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(int(labels.max()) + 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members):
            chosen.append(members[: max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(chosen))


def transfer_set(train: Split, fraction: float, seed: int) -> Split:
    return train if fraction == 1 else train.take(transfer_indices(train.labels, fraction, seed))


# ---------------------------------------------------------------- prepared arrays on disk

PREPARED_DIR = Path("data/prepared")
DATASET_FILE = "dataset.json"


def save_prepared(dataset: Dataset, splits: dict[str, Split], directory: Path = PREPARED_DIR) -> None:
    """Writes .npy files (byte-stable, unlike npz's timestamped zip entries) and the dataset's
    description into a new folder, then renames it into place."""
    with outputs.replacing_dir(directory) as staging:
        for name, split in splits.items():
            np.save(staging / f"{name}_images.npy", split.images)
            np.save(staging / f"{name}_labels.npy", split.labels)
        write_dataset(dataset, staging / DATASET_FILE)


def write_dataset(dataset: Dataset, path: Path) -> None:
    description = {"source": dataset.source, "class_names": list(dataset.class_names),
                   "image_shape": list(dataset.image_shape)}
    path.write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_dataset(path: Path, remedy: str) -> Dataset:
    """The dataset description at `path`; `remedy` says how to make a good one."""
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
        dataset = Dataset(str(described["source"]), tuple(str(name) for name in described["class_names"]),
                          tuple(int(side) for side in described["image_shape"]))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {remedy}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: unreadable ({type(error).__name__}: {error}); {remedy}") from None
    valid_shape = len(dataset.image_shape) in (2, 3) and min(dataset.image_shape) > 0 and dataset.channels in (1, 3)
    if not valid_shape or not 2 <= dataset.num_classes <= MAX_CLASSES:
        raise UserError(f"{path}: image_shape {list(dataset.image_shape)} with {dataset.num_classes} classes is not "
                        f"a dataset (allowed: [h, w] or [h, w, 3], 2..{MAX_CLASSES} classes); {remedy}")
    return dataset


def load_dataset(directory: Path = PREPARED_DIR) -> Dataset:
    return read_dataset(directory / DATASET_FILE, "run `dvc repro prepare`")


def load_split(name: str, dataset: Dataset, directory: Path = PREPARED_DIR) -> Split:
    arrays = []
    for kind in ("images", "labels"):
        path = directory / f"{name}_{kind}.npy"
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except FileNotFoundError:
            raise UserError(f"{path}: missing; run `dvc repro prepare`") from None
        except ValueError as error:
            raise UserError(f"{path}: unreadable ({error}); run `dvc repro -f prepare`") from None
    images, labels = arrays
    if (images.dtype != np.uint8 or images.shape[1:] != dataset.image_shape or labels.shape != images.shape[:1]
            or labels.dtype != dataset.label_dtype() or (len(labels) and labels.max() >= dataset.num_classes)):
        raise UserError(
            f"{directory}/{name}_*.npy: images {images.dtype}{images.shape} and labels {labels.dtype}{labels.shape} "
            f"do not match uint8 (n, {', '.join(map(str, dataset.image_shape))}) and {np.dtype(dataset.label_dtype())} "
            f"(n,) below {dataset.num_classes}; run `dvc repro -f prepare`"
        )
    return Split(images, labels)
