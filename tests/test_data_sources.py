"""Where the IDX files come from, on the real Fashion-MNIST: local copies, a download over loopback, and faults."""

import functools
import gzip
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest

from common import data, fashion_mnist
from common.cli import UserError

REAL_SOURCE = next(
    (d for d in (fashion_mnist.DEBIAN_DIR, fashion_mnist.KERAS_CACHE_DIR) if all(fashion_mnist.find_file(d, n) for n in fashion_mnist.SHA256)), None
)
needs_real_data = pytest.mark.skipif(
    REAL_SOURCE is None, reason="needs Fashion-MNIST: apt-get install dataset-fashion-mnist (.ci/run does)"
)


@pytest.fixture
def no_local_copies(tmp_path, monkeypatch):
    """Every local source empty, and the download cache in tmp_path."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fashion_mnist, "KERAS_CACHE_DIR", tmp_path / "no-keras")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def mirror(tmp_path):
    """A real HTTP server on loopback serving a folder; yields (folder, base URL)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def copy_real_files(destination):
    destination.mkdir(exist_ok=True)
    for name in fashion_mnist.SHA256:
        source = fashion_mnist.find_file(REAL_SOURCE, name)
        shutil.copy(source, destination / source.name)
    return destination


def test_offline_with_no_local_copy_names_the_file_and_the_fix(no_local_copies, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ("http://127.0.0.1:9/",))  # the discard port: refused at once
    with pytest.raises(UserError) as raised:
        fashion_mnist.load_raw()
    message = str(raised.value)
    assert message.startswith("train-images-idx3-ubyte.gz: no local copy and no mirror answered (http://127.0.0.1:9/: ")
    assert message.endswith(fashion_mnist.GET_DATA_HINT)
    assert not list((no_local_copies / "cache" / "fashion-mnist").iterdir())  # nothing half-downloaded


@needs_real_data
def test_download_falls_back_to_the_next_mirror_and_verifies(no_local_copies, mirror, monkeypatch, capsys):
    folder, url = mirror
    copy_real_files(folder)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ("http://127.0.0.1:9/", url))

    label, directory, train, test = fashion_mnist.load_raw()

    assert (label, directory) == ("download cache", no_local_copies / "cache" / "fashion-mnist")
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{name}.gz" for name in fashion_mnist.SHA256)
    assert train.images.shape == (60_000, 28, 28) and test.labels.shape == (10_000,)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # the progress bar


@needs_real_data
def test_a_corrupt_download_is_never_kept(no_local_copies, mirror, monkeypatch):
    folder, url = mirror
    for name in fashion_mnist.SHA256:
        (folder / f"{name}.gz").write_bytes(gzip.compress(b"an error page", mtime=0))
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (url,))
    with pytest.raises(UserError, match=r"^train-images-idx3-ubyte.gz: no local copy and no mirror answered .*SHA-256"):
        fashion_mnist.load_raw()
    assert not list((no_local_copies / "cache" / "fashion-mnist").iterdir())


@needs_real_data
def test_one_flipped_byte_is_caught(tmp_path, monkeypatch):
    copy = copy_real_files(tmp_path / "copy")
    labels = copy / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(labels.read_bytes()))
    payload[5000] ^= 0x01  # one label changes class
    labels.write_bytes(gzip.compress(bytes(payload), mtime=0))
    monkeypatch.setenv("FASHION_MNIST_DIR", str(copy))

    with pytest.raises(UserError) as raised:
        fashion_mnist.load_raw()
    assert str(raised.value).startswith(
        f"{labels}: SHA-256 of the decompressed data is {hashlib.sha256(payload).hexdigest()}, "
        f"expected {fashion_mnist.SHA256['t10k-labels-idx1-ubyte']}; the file is corrupted."
    )


@needs_real_data
def test_a_truncated_real_file_is_caught(tmp_path, monkeypatch):
    copy = copy_real_files(tmp_path / "copy")
    images = copy / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    monkeypatch.setenv("FASHION_MNIST_DIR", str(copy))
    with pytest.raises(UserError, match=f"^{images}: cannot decompress .*the file is truncated or not gzip"):
        fashion_mnist.load_raw()


def test_altered_prepared_files_are_named(tmp_path):
    np.save(tmp_path / "val_images.npy", np.zeros((3, 28, 28), np.float32))
    np.save(tmp_path / "val_labels.npy", np.zeros(3, np.uint8))
    with pytest.raises(UserError, match=r"val_\*.npy: images float32\(3, 28, 28\) and labels uint8\(3,\) do not match"):
        data.load_split("val", fashion_mnist.DATASET, tmp_path)
    np.save(tmp_path / "val_images.npy", np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "val_labels.npy").write_bytes((tmp_path / "val_labels.npy").read_bytes()[:-2])
    with pytest.raises(UserError, match=r"val_labels.npy: unreadable .*run `dvc repro -f prepare`"):
        data.load_split("val", fashion_mnist.DATASET, tmp_path)


# ------------------------------------------------------------------ sizes fixed by the IDX header

def test_payload_sizes_are_those_of_the_idx_headers():
    assert fashion_mnist.payload_size("train-images-idx3-ubyte") == 16 + 60_000 * 28 * 28
    assert fashion_mnist.payload_size("t10k-labels-idx1-ubyte") == 8 + 10_000


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path):
    """100 MB of zeros compress to about 100 KB; the labels file holds 60,008 bytes. Decompression stops
    one byte past that, so the 100 MB never exist in memory."""
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(100_000_000), mtime=0))
    with pytest.raises(UserError, match=rf"^{path}: decompresses to more than the 60,008 bytes its file holds"):
        fashion_mnist.read_payload(path, "train-labels-idx1-ubyte")


def test_a_second_gzip_member_behind_the_first_is_refused(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"x" * 100, mtime=0) + gzip.compress(b"more", mtime=0))
    with pytest.raises(UserError, match=r"decompresses to more than the 10,008 bytes"):
        fashion_mnist.read_payload(path, "t10k-labels-idx1-ubyte")


def test_an_uncompressed_file_larger_than_its_header_allows_is_refused_unread(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes(10_009))
    with pytest.raises(UserError, match=rf"^{path}: 10,009 bytes, more than the 10,008 its file holds"):
        fashion_mnist.read_payload(path, "t10k-labels-idx1-ubyte")


def end_headers_without_length(handler):
    """The mirror's headers without Content-Length, as a streaming mirror sends them."""
    handler._headers_buffer = [line for line in handler._headers_buffer if not line.startswith(b"Content-Length")]
    http.server.SimpleHTTPRequestHandler.end_headers(handler)


@pytest.mark.parametrize("announced", [True, False])
def test_a_download_stops_at_the_size_cap(tmp_path, mirror, monkeypatch, announced):
    folder, url = mirror
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(200_000))  # far more than 10,008
    if not announced:
        monkeypatch.setattr(QuietHandler, "end_headers", end_headers_without_length)
    target = tmp_path / "cache" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(UserError, match=r"more than 10,008 bytes, the size of t10k-labels-idx1-ubyte before compression"):
        fashion_mnist._fetch(url + target.name, target, "t10k-labels-idx1-ubyte")
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
