"""Stage prepare: verified Fashion-MNIST IDX files -> stratified train/val/test arrays in data/prepared/."""

import numpy as np

from common import cli, data, params


def main() -> None:
    config = params.load()
    source, directory, train, test = data.load_raw()
    print(f"Fashion-MNIST from {source} ({directory}), SHA-256 verified")
    splits = data.split_dataset(train, test, config.prepare.val_size, config.prepare.subset, config.seed)
    data.save_prepared(splits)
    for name, split in splits.items():
        print(f"{name}: {len(split)} images, per class {np.bincount(split.labels, minlength=data.NUM_CLASSES).tolist()}")


if __name__ == "__main__":
    cli.run(main, end_process=True)
