"""JSON lines and whole files written atomically, with the mode a plain open gives."""

import json
import os
import stat

import pytest

from lsuite.results.jsonl import append_record, read_records, write_atomic


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_write_atomic_honours_the_umask_like_open(tmp_path, umask, mode):
    """Issue 10 item 9: files written through a temporary name are 0644, not mkstemp's 0600."""
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "sub" / "summary.json", json.dumps({"a": 1}))
        plain = tmp_path / "plain.json"
        with plain.open("w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_write_atomic_replaces_and_leaves_nothing_on_error(tmp_path):
    path = write_atomic(tmp_path / "f.txt", "old")
    write_atomic(path, b"new")
    assert path.read_text() == "new"
    with pytest.raises(TypeError):
        write_atomic(path, 3)
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_line_cut_by_a_crash_is_skipped(tmp_path):
    path = tmp_path / "p.jsonl"
    append_record(path, {"a": 1})
    with path.open("a") as f:
        f.write('{"a": 2, "b"')
    assert read_records(path) == [{"a": 1}]
    assert read_records(tmp_path / "none.jsonl") == []
