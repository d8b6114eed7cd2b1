"""Files written whole or not at all, readable by the team that shares the folder."""

from __future__ import annotations

import os
import stat

import pytest

from scn_annotator.io.atomic import atomic_copy, atomic_write_text


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_a_new_file_honours_the_umask(tmp_path, umask_002):
    path = tmp_path / "export.csv"
    atomic_write_text(path, "a,b\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o664  # group-writable, as the umask allows; not mkstemp's 0600
    copy = tmp_path / "copy.csv"
    atomic_copy(path, copy)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o664


def test_a_replaced_file_keeps_its_mode(tmp_path, umask_002):
    path = tmp_path / "project.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_text(path, '{"a": 1}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == '{"a": 1}'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from scn_annotator.io.atomic import atomic_open

    path = tmp_path / "m.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(path) as fh:
        fh.write(b"half")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_the_rename_is_made_durable(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.isdir(f"/proc/self/fd/{fd}")), real(fd)))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert synced == [False, True]  # the file's data, then the folder holding the rename
