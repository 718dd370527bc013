"""Files written while others read them: whole or not at all, and JSON lines cut by a crash."""

import json

import numpy as np
import pytest

from node.files import (
    JsonlWriter,
    read_jsonl,
    save_npy_atomic,
    write_atomic,
    write_json_atomic,
)


def test_jsonl_reader_skips_a_line_cut_by_a_crash(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_the_jsonl_writer_appends_whole_lines_each_flushed_at_once(tmp_path):
    path = tmp_path / "nodes" / "000.jsonl"
    writer = JsonlWriter(path)
    writer.write({"round": 0})
    assert read_jsonl(path) == [{"round": 0}]  # readable before the writer is closed
    writer.write({"round": 1})
    writer.close()
    assert read_jsonl(path) == [{"round": 0}, {"round": 1}]


def test_json_and_npy_written_atomically_leave_no_temporary(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"x": 1})
    save_npy_atomic(tmp_path / "a.npy", np.arange(3, dtype=np.float32))
    assert json.loads((tmp_path / "s.json").read_text()) == {"x": 1}
    assert np.load(tmp_path / "a.npy").tolist() == [0.0, 1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "s.json"]


def test_a_writer_failing_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "s.json"
    write_json_atomic(path, {"x": 1})

    def half_then_fail(f):
        f.write(b'{"x": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
