"""Writing outputs: whole files or nothing."""

import glob
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PREFIX = ".partial-"


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a side file to write instead of `path`; it is renamed over `path` only if the block completes.

    The side file sits in the same folder, so the rename is atomic, and ends with `path`'s own name,
    so writers that insist on a suffix (Keras wants .weights.h5) accept it. A run killed while writing
    leaves a hidden side file that never looks complete; the next write of the same path clears it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{PARTIAL_PREFIX}*-{glob.escape(path.name)}"):
        stale.unlink(missing_ok=True)
    partial = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_json(path: str | Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2) + "\n")
