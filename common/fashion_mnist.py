"""Fashion-MNIST, the default dataset: find the four IDX files, verify them and parse them.

Numpy only: nothing here imports TensorFlow.
"""

import hashlib
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from common import outputs
from common.cli import UserError
from common.data import Dataset, Split

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SHAPE = (28, 28)
DATASET = Dataset("fashion-mnist", CLASS_NAMES, IMAGE_SHAPE)
NUM_CLASSES = DATASET.num_classes

# SHA-256 of the decompressed payloads; they hold for every source, so any copy is checked the same way.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
EXPECTED_COUNTS = {"train": 60_000, "t10k": 10_000}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path.home() / ".keras" / "datasets" / "fashion-mnist"
# Keras's mirror serves HTTPS; Zalando's serves HTTP only, which the SHA-256 check makes safe to use.
MIRRORS = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
GET_DATA_HINT = (
    "Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    "or point FASHION_MNIST_DIR at a folder holding the four .gz files"
)

IDX_UBYTE = 0x08



# ---------------------------------------------------------------- IDX format

def parse_idx(payload: bytes, name: str) -> np.ndarray:
    """Parses an unsigned-byte IDX file (magic 0x0000080N, N big-endian uint32 dimensions)."""
    if len(payload) < 4:
        raise UserError(f"{name}: too short for an IDX header ({len(payload)} bytes)")
    zero, zero_too, data_type, ndim = payload[:4]
    if zero or zero_too or data_type != IDX_UBYTE or ndim == 0:
        raise UserError(
            f"{name}: bad IDX magic number 0x{payload[:4].hex()}; expected 0x000008NN (unsigned bytes, NN dimensions)"
        )
    header_size = 4 + 4 * ndim
    if len(payload) < header_size:
        raise UserError(f"{name}: IDX header truncated; {ndim} dimensions need {header_size} bytes")
    shape = tuple(int(d) for d in np.frombuffer(payload, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(payload) != expected:
        raise UserError(f"{name}: IDX shape {shape} needs {expected} bytes, the file has {len(payload)}")
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(shape)


def check_idx_pair(images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    count = EXPECTED_COUNTS[prefix]
    if images.shape != (count, *IMAGE_SHAPE):
        raise UserError(f"{prefix}-images-idx3-ubyte: shape {images.shape}, expected {(count, *IMAGE_SHAPE)}")
    if labels.shape != (count,):
        raise UserError(f"{prefix}-labels-idx1-ubyte: shape {labels.shape}, expected {(count,)}")
    if labels.max() >= NUM_CLASSES:
        raise UserError(f"{prefix}-labels-idx1-ubyte: label {labels.max()} found; labels are 0..{NUM_CLASSES - 1}")


# ---------------------------------------------------------------- finding and verifying the files

def _candidate_dirs() -> list[tuple[str, Path]]:
    candidates = []
    if os.environ.get("FASHION_MNIST_DIR"):
        candidates.append(("FASHION_MNIST_DIR", Path(os.environ["FASHION_MNIST_DIR"])))
    candidates += [("Debian package", DEBIAN_DIR), ("Keras cache", KERAS_CACHE_DIR)]
    return candidates


def find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def download_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fashion-mnist"


def locate_source() -> tuple[str, Path]:
    """The first folder holding all four files, in the documented order; else downloads them."""
    for label, directory in _candidate_dirs():
        found = [find_file(directory, name) for name in SHA256]
        if all(found):
            return label, directory
        if label == "FASHION_MNIST_DIR":
            missing = [name for name, path in zip(SHA256, found) if path is None]
            raise UserError(f"FASHION_MNIST_DIR={directory}: missing {', '.join(missing)} (.gz or raw)")
    directory = download_dir()
    if not all(find_file(directory, name) for name in SHA256):
        download_all(directory)
    return "download cache", directory


def payload_size(name: str) -> int:
    """The exact size of IDX file `name`: its header (magic number and dimensions), then one byte per
    label or pixel."""
    count = EXPECTED_COUNTS[name.split("-")[0]]
    if "images" in name:
        return 16 + count * IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    return 8 + count


def decompress_at_most(path: Path, limit: int) -> bytes:
    """The gzip file at `path` decompressed, refused as soon as it yields more than `limit` bytes:
    a small hostile file cannot fill memory before the checksum is checked."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    payload = bytearray()
    with open(path, "rb") as compressed:
        while chunk := compressed.read(1 << 20):
            payload += inflater.decompress(chunk, limit + 1 - len(payload))
            if len(payload) > limit or inflater.unused_data:
                raise UserError(f"{path}: decompresses to more than the {limit:,} bytes its file holds; "
                                f"it is not Fashion-MNIST's. {GET_DATA_HINT}")
    if not inflater.eof:
        raise UserError(f"{path}: cannot decompress (the gzip stream ends early); the file is truncated or not gzip. {GET_DATA_HINT}")
    return bytes(payload)


def read_payload(path: Path, name: str) -> bytes:
    """The decompressed bytes of IDX file `name` stored at `path`, verified against its known SHA-256."""
    limit = payload_size(name)
    try:
        if path.suffix == ".gz":
            payload = decompress_at_most(path, limit)
        elif path.stat().st_size > limit:
            raise UserError(f"{path}: {path.stat().st_size:,} bytes, more than the {limit:,} its file holds; "
                            f"it is not Fashion-MNIST's. {GET_DATA_HINT}")
        else:
            payload = path.read_bytes()
    except (zlib.error, OSError) as error:
        raise UserError(f"{path}: cannot decompress ({error}); the file is truncated or not gzip. {GET_DATA_HINT}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != SHA256[name]:
        raise UserError(
            f"{path}: SHA-256 of the decompressed data is {digest}, expected {SHA256[name]}; "
            f"the file is corrupted. {GET_DATA_HINT}"
        )
    return payload


def _fetch(url: str, target: Path, name: str) -> None:
    """Downloads to a side file that takes the target's name only once its checksum holds. The download
    stops at the decompressed file's size, which its gzip is smaller than, so no mirror can fill the disk."""
    from tqdm import tqdm  # only a download needs a progress bar

    cap = payload_size(name)
    too_large = f"{url}: more than {cap:,} bytes, the size of {name} before compression; not Fashion-MNIST's file"
    with outputs.replacing(target) as partial:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > cap:
                raise UserError(too_large)
            received = 0
            with tqdm(total=announced or None, unit="B", unit_scale=True, desc=target.name) as progress:
                while chunk := response.read(1 << 16):
                    received += len(chunk)
                    if received > cap:
                        raise UserError(too_large)
                    out.write(chunk)
                    progress.update(len(chunk))
        read_payload(partial, name)


def download_all(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in SHA256:
        target = directory / f"{name}.gz"
        errors = []
        for mirror in MIRRORS:
            try:
                _fetch(mirror + target.name, target, name)
                break
            except (OSError, UserError) as error:
                errors.append(f"{mirror}: {error}")
        else:
            raise UserError(f"{target.name}: no local copy and no mirror answered ({'; '.join(errors)}). {GET_DATA_HINT}")


def load_raw() -> tuple[str, Path, Split, Split]:
    """Finds, verifies and parses the four files: (source label, folder, train, test)."""
    label, directory = locate_source()
    splits = []
    for prefix in ("train", "t10k"):
        images, labels = (
            parse_idx(read_payload(find_file(directory, name), name), name)
            for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        )
        check_idx_pair(images, labels, prefix)
        splits.append(Split(images, labels))
    return label, directory, splits[0], splits[1]
