"""common.images and tools.predict on files nobody vetted: each written here, each met by a picture or one line."""

import json
import resource
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from dvc_repo import ROOT
from PIL import Image

from common import data, fashion_mnist, images
from common.cli import UserError
from tools import predict


def png_header_only(path, width: int, height: int) -> None:
    """A valid PNG of a few hundred bytes whose header declares width x height."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000)))
                     + chunk(b"IEND", b""))


def garment_pixels(value: int = 200) -> np.ndarray:
    pixels = np.zeros((60, 40), dtype=np.uint8)
    pixels[10:50, 8:32] = value
    return pixels


def test_a_size_over_the_limit_is_refused_before_decoding(tmp_path):
    png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(UserError, match=r"bomb\.png: 20000x20000 is 400,000,000 pixels, over the limit of 50,000,000"):
        images.read_gray(tmp_path / "bomb.png")


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    Image.fromarray(garment_pixels().astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(garment_pixels()).save(tmp_path / "eight.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    deep, eight = images.read_gray(tmp_path / "deep.png"), images.read_gray(tmp_path / "eight.png")
    assert deep.mode == "L" and np.array_equal(np.asarray(deep), np.asarray(eight))


def test_transparency_is_laid_over_white_and_the_cut_out_then_inverted(tmp_path):
    rgba = np.zeros((60, 40, 4), dtype=np.uint8)  # fully transparent black...
    rgba[10:50, 8:32] = (40, 40, 40, 255)  # ...around an opaque dark garment
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    gray = np.asarray(images.read_gray(tmp_path / "cutout.png"))
    assert gray[0, 0] == 255 and gray[30, 20] == 40
    look = predict.load_image(tmp_path / "cutout.png", fashion_mnist.DATASET)
    assert look[0, 0] == 0 and look[14, 14] == 255 - 40  # as a garment photographed on a white page


def test_cmyk_jpeg_and_the_first_frame_of_an_animated_gif(tmp_path):
    Image.new("CMYK", (40, 60), (0, 0, 0, 255)).save(tmp_path / "cmyk.jpg")
    assert np.asarray(images.read_gray(tmp_path / "cmyk.jpg")).max() < 10  # full black ink reads as black
    frames = [Image.fromarray(garment_pixels()), Image.new("L", (40, 60), 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert np.array_equal(np.asarray(images.read_gray(tmp_path / "anim.gif")), garment_pixels())


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(garment_pixels()).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    assert images.read_gray(tmp_path / "turned.jpg").size == (60, 40)


def test_an_extreme_aspect_ratio_fits_without_a_giant_square(tmp_path):
    """1x100000 used to be padded to 100000x100000 (10 GB) before scaling: held here to 3 GiB of address
    space, that fails; fitting first needs a few MB."""
    Image.new("L", (1, 100_000), 255).save(tmp_path / "wide.png")
    limit = 3 * 1024**3
    result = subprocess.run(
        [sys.executable, "-c", "import json, sys; from pathlib import Path; from tools import predict; from common import fashion_mnist; "
         "print(json.dumps(predict.load_image(Path(sys.argv[1]), fashion_mnist.DATASET).tolist()))", str(tmp_path / "wide.png")],
        cwd=ROOT, capture_output=True, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    assert result.returncode == 0, result.stderr[-1000:]
    look = np.array(json.loads(result.stdout))
    # A white bar, one pixel wide after scaling, on the border's colour (white), inverted to black.
    assert look.shape == (28, 28) and look.max() == 0


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.png", None, "missing.png: no such file"),
    ("notes.png", b"not an image", "notes.png: not a readable image; PNG or JPEG expected"),
    ("truncated.png", "truncated", "truncated.png: not a readable PNG image (image file is truncated"),
    ("folder", "dir", "folder: is a folder, not an image file"),
    ("page.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
     "page.eps: EPS images are not read; save it as PNG or JPEG"),
    ("scan.tiff", "tiff", "scan.tiff: TIFF images are not read; save it as PNG or JPEG"),
    ("bomb.png", "bomb", "bomb.png: 20000x20000 is 400,000,000 pixels, over the limit of 50,000,000"),
])
def test_a_bad_file_is_one_line_and_exit_2(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:2000])
    elif content == "tiff":
        Image.new("L", (5, 5)).save(path)
    elif content == "bomb":
        png_header_only(path, 20_000, 20_000)
    elif content is not None:
        path.write_bytes(content)
    # A model folder whose model is never opened: the image is read, and refused, first.
    model = tmp_path / "export" / "model.tflite"
    model.parent.mkdir()
    model.touch()
    data.write_dataset(fashion_mnist.DATASET, model.parent / data.DATASET_FILE)
    result = subprocess.run([sys.executable, "-m", "tools.predict", str(path), "--model", str(model)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
