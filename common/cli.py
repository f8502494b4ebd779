"""How every stage reports a mistake the user can fix: one line on stderr, non-zero exit."""

import errno
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable

from common import IMPORTS_STARTED

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A bad param, a missing or corrupted file: something the user fixes, not a bug."""


# Write failures the user can fix, and what to do about each: "{folder}" is the folder written to.
STORAGE_ERRORS = {
    errno.ENOSPC: "the disk is full: free space on it (`df -h {folder}`) and run again",
    errno.EDQUOT: "the disk quota is used up: free space or raise the quota, and run again",
    errno.EROFS: "the file system is read-only: remount it read-write, or work in a writable copy",
    errno.EACCES: "this user may not write there: make {folder} writable (`ls -ld {folder}`) or run as its owner",
    errno.EPERM: "this user may not write there: make {folder} writable (`ls -ld {folder}`) or run as its owner",
    errno.EFBIG: "the file is larger than this process may write: raise the limit (`ulimit -f`)",
}


def storage_errno(error: BaseException) -> int | None:
    """The errno of a write failure the user can fix, or None. h5py and TensorFlow raise their own
    exception types and give the errno only as its text, so the text is read too."""
    code = getattr(error, "errno", None)
    if code in STORAGE_ERRORS:
        return code
    text = str(error)
    return next((code for code in STORAGE_ERRORS if os.strerror(code) in text), None)


def storage_error(path, error: BaseException) -> UserError | None:
    """One line for a write to `path` that failed for a reason the user can fix; None for any other failure."""
    code = storage_errno(error)
    if code is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    return UserError(f"{path}: cannot write ({os.strerror(code)}): {STORAGE_ERRORS[code].format(folder=folder)}")


# Set by the Ctrl-C handler that run() installs, and never cleared: outputs.replacing reads it.
interrupted = threading.Event()


def _on_interrupt(signum, frame) -> None:
    # Python drops an exception raised inside a weakref callback or a __del__, and a signal's handler
    # can run there (seen while Keras traced a graph: the stage trained on and wrote its outputs). The
    # flag outlives a dropped KeyboardInterrupt, so no output is renamed into place after a Ctrl-C.
    interrupted.set()
    raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    if interrupted.is_set():
        raise KeyboardInterrupt


def _end(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(main: Callable[[], None], *, end_process: bool = False, report: bool = True) -> None:
    """Runs a stage's main(), turning a UserError into one line and exit code 2, and a Ctrl-C into no
    more outputs (`interrupted`).

    With `end_process`, as a stage's entry point, the process ends as soon as main() has succeeded or
    has reported its error: tearing TensorFlow's runtime down takes about a second, a fifth of a short
    stage, and every output has been written, renamed into place and closed, or left as it was.

    Set KD_DEBUG=1 to see the full traceback instead. On success it reports the time, the time its
    imports took before, and peak memory, which tells how many `dvc queue` workers a machine can hold
    (the benchmark reads them); `report=False` leaves that out of a tool's output.
    """
    started = time.perf_counter()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored
        signal.signal(signal.SIGINT, _on_interrupt)
    try:
        try:
            main()
        except OSError as error:
            # Writes through common.outputs name their output; this names the file of any other.
            if problem := storage_error(error.filename or "a file", error):
                raise problem from error
            raise
    except UserError as error:
        if os.environ.get("KD_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        if end_process:
            # Tearing the interpreter down would free what the failure left half-done: an HDF5 file
            # whose last write met a full disk flushes again as it is freed, prints tracebacks, and
            # can crash the process. Every output is as it was, so nothing needs tearing down.
            _end(EXIT_USER_ERROR)
        sys.exit(EXIT_USER_ERROR)
    if not report:
        return
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux reports KiB
    print(
        f"finished in {time.perf_counter() - started:.1f} s after {started - IMPORTS_STARTED:.1f} s of imports, "
        f"peak memory {peak_mib} MiB"
    )
    if end_process:
        _end(0)
