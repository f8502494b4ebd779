"""Classifies image files with the exported distilled student and prints each class's probability.

    python -m tools.predict shoe.png [more.jpg ...] [--model models/export/distilled/int8.tflite]

Any PNG or JPEG (or WebP, BMP, GIF), of any size and colour, is made to look like the training data:
grayscale (common.images: 16-bit scaled, transparency laid over white), scaled so that its longer
side is 28 pixels, centred on a 28x28 square of its own background colour, and a light object on a
dark background. Fashion-MNIST images have a black background; a photo usually has a light one, so
when the image's border (its outermost pixels) is lighter on average than mid-grey, the image is
inverted: a cut-out on a transparent background, laid over white, is inverted too.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from common import cli, deploy, images
from common.data import CLASS_NAMES, IMAGE_SHAPE

DEFAULT_MODEL = deploy.export_path("distilled", deploy.FLOAT32)
MID_GREY = 127.5


def border_mean(pixels: np.ndarray) -> float:
    return float(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).mean())


def to_training_look(gray: Image.Image) -> np.ndarray:
    """uint8 (28, 28) from an 8-bit grayscale image: a light object on a dark background, the whole
    image fitted in. Fitting before padding keeps the work small whatever the aspect ratio."""
    background = round(border_mean(np.asarray(gray)))
    scale = IMAGE_SHAPE[0] / max(gray.size)
    fitted = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                         Image.Resampling.LANCZOS)
    square = Image.new("L", IMAGE_SHAPE[::-1], background)
    square.paste(fitted, ((square.width - fitted.width) // 2, (square.height - fitted.height) // 2))
    pixels = np.asarray(square, dtype=np.uint8)
    return 255 - pixels if background > MID_GREY else pixels


def load_image(path: Path) -> np.ndarray:
    return to_training_look(images.read_gray(path))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files (WebP, BMP, GIF: first frame)")
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
