"""Writing outputs: whole files or nothing."""

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.cli import UserError, stop_if_interrupted

PARTIAL_PREFIX = ".partial-"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{PARTIAL_PREFIX}*-{glob.escape(path.name)}"):
        stale.unlink(missing_ok=True)
    partial = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield partial
        stop_if_interrupted()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def replacing_dir(path: str | Path) -> Iterator[Path]:
    """Like `replacing`, for a folder: a new hidden folder beside `path` takes its place when the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{PARTIAL_PREFIX}*-{glob.escape(path.name)}"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", suffix=f"-{path.name}", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp's private 0700 would outlive the rename
    try:
        yield staging
        stop_if_interrupted()
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
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
