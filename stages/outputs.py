"""Writing stage outputs: whole files or nothing."""

import json
import os
import tempfile
from pathlib import Path


def write_text(path: str | Path, text: str) -> None:
    """Writes to a side file in the same folder, then renames it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}-", delete=False
    )
    with partial:
        try:
            partial.write(text)
        except BaseException:
            partial.close()
            os.unlink(partial.name)
            raise
    os.chmod(partial.name, 0o644)
    os.replace(partial.name, path)


def write_json(path: str | Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2) + "\n")
