"""ablate.atomic: files written whole or not at all, by any number of writers at once.

Two writers of one path are interleaved deterministically: the first writer's ``write``
callback runs the whole second write half-way through its own.
"""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from ablate import atomic
from ablate.dispatch.slurm import JOB_INFO_NAME, JobInfo, read_job_info, write_job_info
from ablate.trials.lifecycle import RESULT_NAME, TrialResult, TrialStatus


def test_a_second_writer_half_way_through_the_first_mixes_nothing(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    first, second = "A" * 1000, "B" * 10
    seen = {}

    def write_first(tmp):
        seen["first"] = tmp
        with open(tmp, "w") as handle:
            handle.write(first[:500])
            handle.flush()

            def write_second(tmp2):
                seen["second"] = tmp2
                tmp2.write_text(second)

            atomic.write_file(path, write_second)  # the whole second write, in between
            seen["between"] = path.read_text()
            handle.write(first[500:])

    atomic.write_file(path, write_first)
    assert seen["between"] == second  # the second writer's whole file, none of the first's
    assert path.read_text() == first  # then the first writer's whole file
    assert seen["first"] != seen["second"] and seen["first"].parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("old\n")

    def half(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic.write_file(path, half, durable=True)
    with pytest.raises(TypeError):  # not only OSError: any error cleans up
        atomic.write_file(path, lambda tmp: json.dump(object(), tmp.open("w")))
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_permissions_links_and_leftovers(tmp_path):
    mask = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "new", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640  # as open() makes it
    (tmp_path / "new").chmod(0o604)
    atomic.write_bytes(tmp_path / "new", b"y")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o604  # an existing file's own
    (tmp_path / "link").symlink_to(tmp_path / "new")
    atomic.write_text(tmp_path / "link", "z")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "new").read_text() == "z"
    # a writer killed half-way leaves its temporary file; temporaries() finds it, and no
    # other file's
    left = atomic.temporary_name(tmp_path / "a[1].pt")
    left.write_bytes(b"half")
    atomic.temporary_name(tmp_path / "a[1].pt.other").write_bytes(b"")
    assert left.name.startswith(".a[1].pt.") and left.name.endswith(".tmp")
    assert atomic.temporaries(tmp_path / "a[1].pt") == [left]


def test_durable_syncs_the_file_then_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        info = os.fstat(fd)
        synced.append(("folder" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic.write_text(tmp_path / "r.json", "{}")
    assert synced == []
    atomic.write_text(tmp_path / "r.json", "{}", durable=True)
    assert synced == [("file", (tmp_path / "r.json").stat().st_ino),
                      ("folder", tmp_path.stat().st_ino)]


@pytest.mark.parametrize("writer", ["result", "job info"])
def test_writers_leave_another_writer_s_temporary_file_alone(tmp_path, writer):
    """Before ablate.atomic each of these wrote through one fixed name (``result.json.tmp``,
    ``slurm.json.tmp``): a second writer truncated the first's file and renamed it away."""
    name = RESULT_NAME if writer == "result" else JOB_INFO_NAME
    other = tmp_path / f"{name}.tmp"  # another process's half-written file, old-style
    other.write_text("another writer's half")
    if writer == "result":
        TrialResult("s", "t1", TrialStatus.DONE, final={"miou": 0.5}).write(tmp_path)
        assert TrialResult.read(tmp_path / name).final == {"miou": 0.5}
    else:
        write_job_info(tmp_path, JobInfo("42_0", "/slurm"))
        assert read_job_info(tmp_path) == JobInfo("42_0", "/slurm")
    assert other.read_text() == "another writer's half"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, other.name])
