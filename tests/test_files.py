"""files.py: atomic writes, JSON reading, relative paths."""

from __future__ import annotations

import json

import pytest

from sipmask_ref import files


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = files.write_json({"run": 1}, tmp_path / "sub" / "record.json", indent=1, end="\n")
    assert path.read_text() == '{\n "run": 1\n}\n'

    def crash(f):
        f.write(b'{"run": 2, "half')
        raise OSError("disk full")

    for durable in (False, True):
        with pytest.raises(OSError, match="disk full"):
            files.write_atomic(path, crash, durable=durable)
        assert json.loads(path.read_text()) == {"run": 1}
        assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_write_json_keeps_each_callers_layout(tmp_path):
    assert files.write_json([1, 2], tmp_path / "a.json", indent=None).read_text() == "[1, 2]"
    assert files.write_json({"a": 1}, tmp_path / "b.json").read_text() == '{\n  "a": 1\n}'


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"annotation file .*nothere\.json does not exist"):
        files.read_json(tmp_path / "nothere.json", "annotation")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"results file .*broken\.json is not valid JSON"):
        files.read_json(tmp_path / "broken.json", "results")
    assert files.read_json_or_none(tmp_path / "broken.json") is None
    assert files.read_json_or_none(tmp_path / "nothere.json") is None
    (tmp_path / "good.json").write_text('{"x": [1]}')
    good = tmp_path / "good.json"
    assert files.read_json(good) == files.read_json_or_none(good) == {"x": [1]}


def test_relative_path_inside_and_outside_a_folder(tmp_path):
    assert files.relative_path(tmp_path / "outputs" / "x.pt", tmp_path) == "outputs/x.pt"
    assert files.relative_path(tmp_path.parent / "elsewhere.json", tmp_path) is None
