"""Atomic result files: all or nothing, with the permissions any other new file would get."""
import os

import pytest

from lowrank_bench.core.io import UserError, atomic_path, atomic_write, read_json, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("interrupted half-way")
    assert read_json(target) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "table.csv", "a,b\n")
    finally:
        os.umask(old)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o644


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    from lowrank_bench.core import io
    target = tmp_path / "r.json"
    io.write_json(target, {"old": 1})

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(io.Path, "write_bytes", full)
    with pytest.raises(io.UserError, match=r"r\.json: cannot write it \(No space left on device\); the disk is full: free disk space"):
        io.write_json(target, {"new": 2})
    assert target.read_text() == '{\n  "old": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_special_file_is_never_replaced(tmp_path):
    """A FIFO (or a device such as /dev/null, or a link to one) in place of a result: refused, left as it is."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    for target in (fifo, tmp_path / "link", tmp_path):
        with pytest.raises(UserError, match="is a (FIFO|folder), not a regular file; a result is written only"):
            write_json(target, {"v": 1})
    assert fifo.is_fifo() and (tmp_path / "link").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == \
        ["fifo", "link"]
    with pytest.raises(UserError, match=f"^{fifo} is a FIFO, not a JSON file"):  # read, it would block for ever
        read_json(fifo)
