"""Stage prepare: the images (Fashion-MNIST's verified IDX files, or a folder of class folders) ->
stratified train/val/test arrays and the dataset's description in data/prepared/."""

from pathlib import Path

import numpy as np

from common import cli, data, fashion_mnist, image_folders, params


def main() -> None:
    config = params.load()
    if config.data.source == "folder":
        settings = config.data
        dataset, train, test = image_folders.load(Path(settings.path), settings.layout, settings.image_size,
                                                  settings.channels, settings.test_fraction, config.seed)
        print(f"{settings.path}: {dataset.num_classes} classes, {dataset.describe_shape()}")
    else:
        source, directory, train, test = fashion_mnist.load_raw()
        dataset = fashion_mnist.DATASET
        print(f"Fashion-MNIST from {source} ({directory}), SHA-256 verified")
    splits = data.split_dataset(train, test, config.prepare.val_size, config.prepare.subset, config.seed,
                                dataset.num_classes)
    data.save_prepared(dataset, splits)
    for name, split in splits.items():
        print(f"{name}: {len(split)} images, per class {np.bincount(split.labels, minlength=dataset.num_classes).tolist()}")


if __name__ == "__main__":
    cli.run(main, end_process=True)
