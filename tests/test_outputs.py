"""Outputs are whole files or nothing."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.cli import UserError
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
    import os, signal, sys, weakref
    from common import cli, outputs

    class Held:
        pass

    def interrupt_inside_a_callback(ref):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs during this loop
            pass

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
    result = subprocess.run(
        [sys.executable, "-c", DROPPED_CTRL_C, str(tmp_path / "model.txt"), str(tmp_path / "metrics.json")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
    )
    assert "went on after the Ctrl-C" in result.stdout  # Python dropped the KeyboardInterrupt
    assert "Exception ignored in" in result.stderr
    assert result.returncode in (-signal.SIGINT, 128 + signal.SIGINT), result.stderr
    assert list(tmp_path.iterdir()) == []
