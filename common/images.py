"""Reading image files nobody vetted, as one 8-bit grayscale or RGB picture, or one line that says why
not; and the one rule that brings a picture to a dataset's image size.

- Formats: PNG, JPEG, WebP, BMP and GIF (its first frame). Any other format Pillow knows is refused
  by name before it is decoded: some of Pillow's plugins run external programs (EPS runs Ghostscript).
- Size: the header's width and height are checked against MAX_PIXELS before any pixel is decoded, so
  a small file that declares a huge image costs nothing.
- 16-bit grayscale is scaled to 8 bits (65535 becomes 255), not clipped as Pillow's own conversion does.
- RGB pictures read as grayscale take Pillow's luma (ITU-R 601-2); grayscale read as RGB repeats it.
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


def to_8bit(image: Image.Image, mode: str) -> Image.Image:
    """`image` in Pillow's `mode`, "L" (8-bit grayscale) or "RGB"."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8)).convert(mode)
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        cut_out = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", cut_out.size, WHITE), cut_out).convert(mode)
    return image.convert(mode)


def read_gray(path: Path) -> Image.Image:
    """The image at `path` as 8-bit grayscale ("L"), upright; a UserError names the path and the problem."""
    return read_image(path, "L")


def read_image(path: Path, mode: str) -> Image.Image:
    """The image at `path` in `mode` ("L" or "RGB"), upright; a UserError names the path and the problem."""
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
            return to_8bit(ImageOps.exif_transpose(image), mode)
        except (OSError, ValueError, SyntaxError) as error:
            raise UserError(f"{path}: not a readable {FORMATS[image.format]} image ({error})") from None


def border_colour(pixels: np.ndarray) -> tuple[int, ...]:
    """The mean of the picture's outermost pixels, per channel: the colour it is padded with."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return tuple(int(round(value)) for value in np.atleast_1d(border.mean(axis=0)))


def fit_and_pad(image: Image.Image, height: int, width: int) -> Image.Image:
    """`image` at `height` x `width`, nothing cropped and nothing stretched: scaled (Lanczos) until its
    longer side fits, then centred on a canvas of its own border colour. A picture that already has
    the size is returned as it is."""
    if image.size == (width, height):
        return image
    scale = min(width / image.width, height / image.height)
    fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.Resampling.LANCZOS)
    colour = border_colour(np.asarray(image))
    canvas = Image.new(image.mode, (width, height), colour[0] if image.mode == "L" else colour)
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas
