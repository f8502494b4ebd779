"""Reading image files nobody vetted, as one 8-bit grayscale picture, or one line that says why not.

- Formats: PNG, JPEG, WebP, BMP and GIF (its first frame). Any other format Pillow knows is refused
  by name before it is decoded: some of Pillow's plugins run external programs (EPS runs Ghostscript).
- Size: the header's width and height are checked against MAX_PIXELS before any pixel is decoded, so
  a small file that declares a huge image costs nothing.
- 16-bit grayscale is scaled to 8 bits (65535 becomes 255), not clipped as Pillow's own conversion does.
- Transparent pixels are laid over white, as a product cut-out would sit on a white page.
- EXIF orientation is applied.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.cli import UserError

# Pillow's names, and how the messages spell them.
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF"}
READ_TOO = "WebP, BMP and GIF are read too"
# 50 megapixels, a large camera's full resolution: decoded as RGBA it takes 200 MB.
MAX_PIXELS = 50_000_000
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
WHITE = (255, 255, 255, 255)


def _open_header(path: Path, formats) -> Image.Image:
    """Image.open reads the header only. Its own bomb check raises before we can name the size and
    our limit, so it is off here: read_gray checks the size itself before anything is decoded."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        return Image.open(path, formats=formats)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _format_of(path: Path) -> str | None:
    """The format Pillow recognises in a file we refuse, read from its header alone."""
    try:
        with _open_header(path, None) as image:
            return image.format
    except (OSError, ValueError):
        return None


def to_8bit_gray(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8))
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        cut_out = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", cut_out.size, WHITE), cut_out).convert("L")
    return image.convert("L")


def read_gray(path: Path) -> Image.Image:
    """The image at `path` as 8-bit grayscale ("L"), upright; a UserError names the path and the problem."""
    try:
        image = _open_header(path, list(FORMATS))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        found = _format_of(path)
        if found:
            raise UserError(f"{path}: {found} images are not read; save it as PNG or JPEG ({READ_TOO})") from None
        raise UserError(f"{path}: not a readable image; PNG or JPEG expected ({READ_TOO})") from None
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from None
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UserError(f"{path}: {width}x{height} is {width * height:,} pixels, over the limit of "
                            f"{MAX_PIXELS:,}; scale it down first")
        try:
            return to_8bit_gray(ImageOps.exif_transpose(image))
        except (OSError, ValueError, SyntaxError) as error:
            raise UserError(f"{path}: not a readable {FORMATS[image.format]} image ({error})") from None
