"""Classifies image files with the exported distilled student and prints each class's probability.

    python -m tools.predict shoe.png [more.jpg ...] [--model models/export/distilled/int8.tflite]

Any PNG or JPEG, of any size and colour, is made to look like the training data: grayscale, padded
to a square with its own background colour, scaled to 28x28, and a light object on a dark
background. Fashion-MNIST images have a black background; a photo usually has a light one, so when
the image's border (its outermost pixels) is lighter on average than mid-grey, the image is inverted.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common import cli, deploy
from common.data import CLASS_NAMES, IMAGE_SHAPE

DEFAULT_MODEL = deploy.export_path("distilled", deploy.FLOAT32)
MID_GREY = 127.5


def border_mean(pixels: np.ndarray) -> float:
    return float(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).mean())


def to_training_look(image: Image.Image) -> np.ndarray:
    """uint8 (28, 28): grayscale, light object on a dark background, the whole image fitted in."""
    gray = ImageOps.exif_transpose(image).convert("L")
    background = round(border_mean(np.asarray(gray)))
    side = max(gray.size)
    square = Image.new("L", (side, side), background)
    square.paste(gray, ((side - gray.width) // 2, (side - gray.height) // 2))
    pixels = np.asarray(square.resize(IMAGE_SHAPE[::-1], Image.Resampling.LANCZOS), dtype=np.uint8)
    return 255 - pixels if background > MID_GREY else pixels


def load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return to_training_look(image)
    except FileNotFoundError:
        raise cli.UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise cli.UserError(f"{path}: is a folder, not an image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise cli.UserError(f"{path}: not a readable image (PNG or JPEG expected): {error}") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a .tflite export (default {DEFAULT_MODEL})")
    parser.add_argument("--top", type=int, default=len(CLASS_NAMES), help="how many classes to print per image")
    args = parser.parse_args()

    batch = np.stack([load_image(path) for path in args.images])
    probabilities = softmax(deploy.run_tflite(deploy.tflite_interpreter(args.model), batch))
    for path, row in zip(args.images, probabilities):
        print(f"{path}:")
        for index in np.argsort(-row, kind="stable")[: args.top]:
            print(f"  {CLASS_NAMES[index]:<12} {row[index]:.4f}")


if __name__ == "__main__":
    cli.run(main, report=False)
