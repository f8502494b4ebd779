"""Classifies image files with an exported model and prints each class's probability.

    python -m tools.predict shoe.png [more.jpg ...] [--model models/export/distilled/int8.tflite]

The class names and image shape come from the dataset.json that export writes beside the model. Any
PNG or JPEG (or WebP, BMP, GIF), of any size and colour, is made to look like the training data:

- Fashion-MNIST: grayscale (common.images: 16-bit scaled, transparency laid over white), scaled so that
  its longer side is 28 pixels, centred on a 28x28 square of its own background colour, and a light
  object on a dark background. Fashion-MNIST images have a black background; a photo usually has a
  light one, so when the image's border (its outermost pixels) is lighter on average than mid-grey,
  the image is inverted: a cut-out on a transparent background, laid over white, is inverted too.
- A folder dataset: exactly what prepare did to its images (common/image_folders.py): grayscale or
  RGB as the data are, fitted to the image size with the aspect ratio kept and padded.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from common import cli, data, deploy, images

DEFAULT_MODEL = deploy.export_path("distilled", deploy.FLOAT32)
MID_GREY = 127.5


def to_training_look(gray: Image.Image, side: int = 28) -> np.ndarray:
    """uint8 (side, side) from an 8-bit grayscale image: the whole image fitted in (images.fit_and_pad),
    then a light object on a dark background."""
    background = images.border_colour(np.asarray(gray))[0]
    pixels = np.asarray(images.fit_and_pad(gray, side, side), dtype=np.uint8)
    return 255 - pixels if background > MID_GREY else pixels


def load_image(path: Path, dataset: data.Dataset) -> np.ndarray:
    """The image at `path` as prepare made the dataset's images."""
    if dataset.source == "fashion-mnist":
        return to_training_look(images.read_gray(path), dataset.image_shape[0])
    picture = images.read_image(path, "L" if dataset.channels == 1 else "RGB")
    return np.asarray(images.fit_and_pad(picture, *dataset.image_shape[:2]), dtype=np.uint8)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files (WebP, BMP, GIF: first frame)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a .tflite export (default {DEFAULT_MODEL})")
    parser.add_argument("--top", type=int, default=None, help="how many classes to print per image (default: all)")
    args = parser.parse_args()

    deploy.require_export(args.model)
    dataset = data.read_dataset(args.model.parent / data.DATASET_FILE, "run `dvc repro export`")
    batch = np.stack([load_image(path, dataset) for path in args.images])
    probabilities = softmax(deploy.run_tflite(deploy.tflite_interpreter(args.model), batch))
    width = max(len(name) for name in dataset.class_names) + 1
    for path, row in zip(args.images, probabilities):
        print(f"{path}:")
        for index in np.argsort(-row, kind="stable")[: args.top]:
            print(f"  {dataset.class_names[index]:<{width}} {row[index]:.4f}")


if __name__ == "__main__":
    cli.run(main, report=False)
