"""Writing outputs: whole files or nothing, and one line when the disk or a permission says no."""

import ctypes
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.cli import UserError, stop_if_interrupted, storage_error

PARTIAL_PREFIX = ".partial-"
# Where a folder swap that cannot be atomic keeps the old folder between its two renames.
PREVIOUS_PREFIX = ".previous-"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@contextmanager
def _naming_storage_errors(path: Path) -> Iterator[None]:
    """A full disk, a read-only file system or a missing permission, met while writing `path`, as one line."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        if problem := storage_error(path, error):
            raise problem from error
        raise


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a side file to write instead of `path`; it is renamed over `path` only if the block completes.

    The side file sits in the same folder, so the rename is atomic, and ends with `path`'s own name,
    so writers that insist on a suffix (Keras wants .weights.h5) accept it. A run killed while writing
    leaves a hidden side file that never looks complete; the next write of the same path clears it.
    After a Ctrl-C (common.cli.interrupted) nothing is renamed into place, even where Python dropped
    the KeyboardInterrupt and the run went on.
    """
    path = Path(path)
    partial = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    with _naming_storage_errors(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for stale in path.parent.glob(f"{PARTIAL_PREFIX}*-{glob.escape(path.name)}"):
                stale.unlink(missing_ok=True)
            yield partial
            stop_if_interrupted()
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)


def exchange(first: Path, second: Path) -> bool:
    """Swaps two paths in one atomic step (Linux's renameat2 with RENAME_EXCHANGE); False where the
    system or the file system cannot, having changed nothing."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _previous_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{PREVIOUS_PREFIX}*-{glob.escape(path.name)}"))


def recover_dir(path: Path) -> None:
    """Puts back the old folder that a swap without atomic exchange had moved aside, if it stopped
    before the new one took its place; otherwise removes what such a swap left."""
    for previous in _previous_copies(path):
        if path.exists():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(previous, path)


def _swap_in(staging: Path, path: Path) -> None:
    """`staging` becomes `path`: at every moment `path` is the old folder or the new one, never neither."""
    if not path.exists():
        os.replace(staging, path)
    elif exchange(staging, path):
        shutil.rmtree(staging)  # now the old folder
    else:
        previous = path.with_name(f"{PREVIOUS_PREFIX}{os.getpid()}-{path.name}")
        os.replace(path, previous)
        # A crash here leaves the old folder at `previous`, which the next write of `path` puts back.
        os.replace(staging, path)
        shutil.rmtree(previous)


@contextmanager
def replacing_dir(path: str | Path) -> Iterator[Path]:
    """Like `replacing`, for a folder: a new hidden folder beside `path` takes its place when the block
    completes, in one atomic exchange where the system has one."""
    path = Path(path)
    with _naming_storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(path)
        for stale in path.parent.glob(f"{PARTIAL_PREFIX}*-{glob.escape(path.name)}"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", suffix=f"-{path.name}",
                                        dir=path.parent))
        try:
            staging.chmod(0o755)  # mkdtemp's private 0700 would outlive the rename
            yield staging
            stop_if_interrupted()
            _swap_in(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_json(path: str | Path, payload: dict) -> None:
    """JSON as DVC and every other reader accept it: a NaN or infinity is refused, never written."""
    try:
        text = json.dumps(payload, indent=2, allow_nan=False)
    except ValueError:
        raise UserError(f"{path}: refusing to write a non-finite number (NaN or infinity) into a metrics file") from None
    write_text(path, text + "\n")
