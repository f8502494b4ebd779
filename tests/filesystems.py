"""Real file-system limits for failure tests: a tiny tmpfs, a read-only bind mount, a missing permission.

They need root (CI and the development machines run as root). Elsewhere the tests that use them are
skipped, and test_outputs's injected-error tests still cover the same code.
"""

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or 'not root'}): a real file-system limit needs root")


@contextmanager
def tiny_tmpfs(folder: Path, size_bytes: int, leave_out: tuple[str, ...] = ()):
    """`folder` on a tmpfs of `size_bytes`, holding a copy of what it held but the names in `leave_out`;
    the original, untouched, is back after."""
    saved = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*")
             if path.is_file() and path.name not in leave_out}
    _mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder))
    try:
        for name, content in saved.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def read_only(folder: Path):
    """`folder` as a read-only bind mount of itself."""
    _mount("--bind", str(folder), str(folder))
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def unwritable_folder(folder: Path) -> list[str]:
    """Makes `folder` belong to `nobody` (mode 755) and returns a command prefix under which root loses
    its power to write anyway (CAP_DAC_OVERRIDE dropped): a real EACCES, as for any other user. Running
    as `nobody` instead would fail earlier, since the interpreter lives under /root."""
    if os.geteuid() != 0:
        pytest.skip("taking write permission away from root needs root")
    os.chown(folder, 65534, 65534)
    folder.chmod(0o755)
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
