"""ddsr.atomic: files and folders appear complete under their names, or not at all."""

import os
import stat

import pytest

from ddsr import atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_written_file_has_an_ordinary_files_mode_not_mkstemps_0600(tmp_path, umask_022):
    atomic.write_text_atomic(tmp_path / "a" / "b.txt", "x\n")
    assert (tmp_path / "a" / "b.txt").read_text() == "x\n"
    assert _mode(tmp_path / "a" / "b.txt") == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old\n")
    with pytest.raises(KeyError):
        with atomic.replacing(target) as tmp:
            tmp.write_text("half")
            raise KeyError("interrupted")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_json_is_indented_and_ends_with_a_newline(tmp_path):
    atomic.write_json_atomic(tmp_path / "s.json", {"b": 1, "a": [2]})
    assert (tmp_path / "s.json").read_text() == '{\n  "b": 1,\n  "a": [\n    2\n  ]\n}\n'


def test_a_folder_is_replaced_whole_only_on_success(tmp_path, umask_022):
    out = tmp_path / "set"
    with atomic.replacing_directory(out) as tmp:
        (tmp / "one.png").write_bytes(b"1")
    assert sorted(p.name for p in out.iterdir()) == ["one.png"] and _mode(out) == 0o755
    with pytest.raises(RuntimeError):
        with atomic.replacing_directory(out, sync=False) as tmp:
            (tmp / "two.png").write_bytes(b"2")
            raise RuntimeError("failed half-way")
    assert sorted(p.name for p in out.iterdir()) == ["one.png"]
    with atomic.replacing_directory(out, sync=False) as tmp:
        (tmp / "two.png").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == ["two.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
