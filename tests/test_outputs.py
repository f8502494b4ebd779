"""Stage outputs are whole files or nothing."""

import json

import pytest

from stages.outputs import write_json, write_text


def test_a_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "metrics" / "evaluate.json"
    write_json(target, {"accuracy": 0.5})
    write_json(target, {"accuracy": 0.75})

    assert json.loads(target.read_text()) == {"accuracy": 0.75}
    assert [p.name for p in target.parent.iterdir()] == ["evaluate.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_its_side_file(tmp_path):
    target = tmp_path / "summary.txt"
    write_text(target, "old\n")

    with pytest.raises(UnicodeEncodeError):
        write_text(target, "half \ud800 written")  # a lone surrogate cannot be encoded

    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.txt"]
