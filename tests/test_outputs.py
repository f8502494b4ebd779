"""Outputs are whole files or nothing."""

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dvc_repo import ROOT
from filesystems import read_only, tiny_tmpfs, unwritable_folder

from common import outputs
from common.cli import UserError, storage_errno
from common.outputs import replacing, replacing_dir, write_json, write_text


def test_a_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "metrics" / "evaluate.json"
    write_json(target, {"accuracy": 0.5})
    write_json(target, {"accuracy": 0.75})

    assert json.loads(target.read_text()) == {"accuracy": 0.75}
    assert [p.name for p in target.parent.iterdir()] == ["evaluate.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, readable as one


def test_a_failed_write_keeps_the_old_file_and_removes_its_side_file(tmp_path):
    target = tmp_path / "summary.txt"
    write_text(target, "old\n")

    with pytest.raises(UnicodeEncodeError):
        write_text(target, "half \ud800 written")  # a lone surrogate cannot be encoded

    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.txt"]


def test_the_side_file_keeps_the_name_and_a_killed_runs_leftover_is_cleared(tmp_path):
    target = tmp_path / "teacher.weights.h5"
    (tmp_path / ".partial-12345-teacher.weights.h5").write_bytes(b"half a file")
    (tmp_path / ".partial-12345-student.weights.h5").write_bytes(b"another output's, left alone")

    with replacing(target) as partial:
        assert partial.parent == tmp_path and partial.name.endswith("-teacher.weights.h5")
        assert not target.exists()  # nothing under the real name until the block completes
        partial.write_bytes(b"weights")

    assert target.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-12345-student.weights.h5", "teacher.weights.h5"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_metrics_never_hold_nan_or_infinity(tmp_path, bad):
    target = tmp_path / "metrics.json"
    write_json(target, {"loss": 0.5})
    with pytest.raises(UserError, match=r"metrics.json: refusing to write a non-finite number"):
        write_json(target, {"model": {"loss": bad}})
    assert json.loads(target.read_text()) == {"loss": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "curves" / "student"
    with replacing_dir(target) as staging:
        (staging / "old.tsv").write_text("old")
    with pytest.raises(RuntimeError):
        with replacing_dir(target) as staging:
            (staging / "new.tsv").write_text("half")
            raise RuntimeError("killed halfway")
    assert [p.name for p in target.iterdir()] == ["old.tsv"]
    assert [p.name for p in target.parent.iterdir()] == ["student"]
    with replacing_dir(target) as staging:
        (staging / "new.tsv").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.tsv"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o755)


# A Ctrl-C whose handler runs inside a weakref callback, where Python prints and drops what it raises,
# as it did once while Keras traced a stage's graph; the stage then goes on to write an output.
DROPPED_CTRL_C = textwrap.dedent("""
    import os, signal, sys, time, weakref
    from common import cli, outputs

    class Held:
        pass

    def interrupt_inside_a_callback(ref):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs here, inside the callback

    def main():
        held = Held()
        ref = weakref.ref(held, interrupt_inside_a_callback)
        del held
        print("went on after the Ctrl-C", flush=True)
        outputs.write_text(sys.argv[1], "complete-looking")
        outputs.write_json(sys.argv[2], {"accuracy": 0.5})

    cli.run(main, report=False)
""")


def test_after_a_dropped_ctrl_c_no_output_is_renamed_into_place(tmp_path):
    root = Path(__file__).resolve().parents[1]
    # Ctrl-C's default action restored: a test run started in the background (`make test &`, a CI
    # runner) passes SIGINT on as ignored, and then no handler is installed and nothing is dropped.
    result = subprocess.run(
        [sys.executable, "-c", DROPPED_CTRL_C, str(tmp_path / "model.txt"), str(tmp_path / "metrics.json")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "went on after the Ctrl-C" in result.stdout  # Python dropped the KeyboardInterrupt
    assert "Exception ignored in" in result.stderr
    assert result.returncode in (-signal.SIGINT, 128 + signal.SIGINT), result.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ disks and permissions that say no

WRITER = """
import sys
from common import cli, outputs
cli.run(lambda: outputs.write_text(sys.argv[1], "x" * int(sys.argv[2])), report=False)
"""


def run_writer(target: Path, size: int, *prefix: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", WRITER, str(target), str(size)], cwd=ROOT,
                          capture_output=True, text=True, **options)


def assert_one_line(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    for part in parts:
        assert part in result.stderr


def test_a_full_disk_is_one_line_and_the_old_file_stays(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "evaluate.json").write_text("old\n")
    with tiny_tmpfs(folder, 64 * 1024):
        result = run_writer(folder / "evaluate.json", 1_000_000)
        assert_one_line(result, f"error: {folder / 'evaluate.json'}: cannot write (No space left on device)",
                        f"`df -h {folder}`")
        assert [path.name for path in folder.iterdir()] == ["evaluate.json"]
        assert (folder / "evaluate.json").read_text() == "old\n"


def test_a_read_only_folder_is_one_line_and_the_old_file_stays(tmp_path):
    (tmp_path / "evaluate.json").write_text("old\n")
    with read_only(tmp_path):
        result = run_writer(tmp_path / "evaluate.json", 10)
        assert_one_line(result, "cannot write (Read-only file system): the file system is read-only")
        assert (tmp_path / "evaluate.json").read_text() == "old\n"


def test_a_folder_this_user_may_not_write_is_one_line(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    prefix = unwritable_folder(folder)
    result = run_writer(folder / "evaluate.json", 10, *prefix)
    assert_one_line(result, "cannot write (Permission denied): this user may not write there", f"`ls -ld {folder}`")
    assert list(folder.iterdir()) == []


def test_a_file_size_limit_is_one_line_and_no_side_file_stays(tmp_path):
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = run_writer(tmp_path / "big.txt", 100_000, preexec_fn=limit_file_size)
    assert_one_line(result, "cannot write (File too large)", "`ulimit -f`")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "code"), [
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
    # h5py and TensorFlow raise types of their own and give the errno only in their text.
    (RuntimeError("Unable to synchronously create file (errno = 28, error message = 'No space left on device')"),
     errno.ENOSPC),
    (RuntimeError("PermissionDeniedError: models/export/x; Permission denied"), errno.EACCES),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
    (OSError(errno.ENOENT, "No such file or directory"), None),
    (ValueError("shapes do not match"), None),
])
def test_storage_errors_are_recognised_by_errno_or_by_their_text(error, code):
    assert storage_errno(error) == code


def test_a_failed_folder_write_keeps_the_old_folder_and_removes_the_new(tmp_path):
    target = tmp_path / "curves"
    target.mkdir()
    (target / "loss.tsv").write_text("old\n")
    with pytest.raises(UserError, match=r"curves: cannot write \(No space left on device\)"):
        with replacing_dir(target) as staging:
            (staging / "loss.tsv").write_text("new\n")
            raise OSError(errno.ENOSPC, "No space left on device")  # injected: as a write inside the folder meets it
    assert [path.name for path in tmp_path.iterdir()] == ["curves"]
    assert (target / "loss.tsv").read_text() == "old\n"


def test_a_folder_is_swapped_in_one_step_and_nothing_is_left_beside_it(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with replacing_dir(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [path.name for path in tmp_path.iterdir()] == ["export"]
    assert [path.name for path in target.iterdir()] == ["new.txt"]


def test_the_exchange_swaps_two_folders_whole(tmp_path):
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(name)
    assert outputs.exchange(tmp_path / "first", tmp_path / "second")  # Linux has it; elsewhere the two-step swap
    assert [path.name for path in (tmp_path / "first").iterdir()] == ["second.txt"]
    assert [path.name for path in (tmp_path / "second").iterdir()] == ["first.txt"]


def test_a_swap_stopped_between_its_two_renames_is_undone_by_the_next_write(tmp_path, monkeypatch):
    """Where no atomic exchange exists, the old folder waits beside under another name while the new one
    is renamed in. A crash just then (injected: the second rename raises) leaves no folder at the path;
    the next write of it puts the old one back first."""
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    monkeypatch.setattr(outputs, "exchange", lambda first, second: False)
    renames = []

    def crash_on_second_rename(source, destination):
        renames.append(destination)
        if len(renames) == 2:
            raise KeyboardInterrupt  # the process dies here
        os.rename(source, destination)

    monkeypatch.setattr(outputs.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt), replacing_dir(target) as staging:
        (staging / "new.txt").write_text("new")
    monkeypatch.undo()
    assert not target.exists() and [path.name for path in tmp_path.iterdir()] == [f".previous-{os.getpid()}-export"]

    with pytest.raises(RuntimeError), replacing_dir(target):
        assert (target / "old.txt").read_text() == "old"  # back before anything else happens
        raise RuntimeError("this write fails too")
    assert [path.name for path in tmp_path.iterdir()] == ["export"]
    assert (target / "old.txt").read_text() == "old"
