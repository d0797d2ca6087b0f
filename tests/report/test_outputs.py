"""ablate.report.outputs: report and export files written whole or not at all, and never
over the results database."""

from __future__ import annotations

import os

import pytest

from ablate.errors import UserInputError
from ablate.report import outputs


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old\n")

    def half(target):
        with open(target, "w") as handle:
            handle.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as caught:
        outputs.write_atomic(path, half)
    assert caught.value.filename == str(path) and outputs.reason(caught.value) == (
        "No space left on device")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_a_new_file_gets_the_usual_permissions_and_a_link_is_written_through(tmp_path):
    mask = os.umask(0o027)
    try:
        outputs.write_text(tmp_path / "new.md", "x\n")
    finally:
        os.umask(mask)
    assert (tmp_path / "new.md").stat().st_mode & 0o777 == 0o640
    (tmp_path / "real.md").write_text("old\n")
    (tmp_path / "link.md").symlink_to(tmp_path / "real.md")
    outputs.write_text(tmp_path / "link.md", "new\n")
    assert (tmp_path / "link.md").is_symlink() and (tmp_path / "real.md").read_text() == "new\n"


def test_a_device_is_written_in_place():
    outputs.write_text("/dev/null", "discarded\n")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_the_database_and_its_journals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.db").write_bytes(b"")
    database = outputs.database_files("sqlite:///r.db")
    assert database == [str(tmp_path / f"r.db{s}") for s in ("", "-wal", "-shm", "-journal")]
    assert outputs.database_files("postgresql+psycopg://u@h/db") == []
    for name in ("r.db", "./r.db-wal", f"{tmp_path}/r.db-journal"):
        with pytest.raises(UserInputError, match="that is the results database"):
            outputs.check_file("--csv", name, database)
    outputs.check_file("--csv", "r.csv", database)


def test_out_folder_removes_only_the_folders_it_made_and_left_empty(tmp_path):
    with outputs.out_folder("--out", tmp_path / "a" / "b") as folder:
        assert folder.is_dir()
    assert not (tmp_path / "a").exists()
    with outputs.out_folder("--out", tmp_path / "c" / "d") as folder:
        (folder / "f.png").write_bytes(b"")
    assert (tmp_path / "c" / "d" / "f.png").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserInputError, match=r"^--out .*/file/x: cannot create the folder: Not a "
                                             r"directory \(nothing was written\)$"):
        with outputs.out_folder("--out", tmp_path / "file" / "x"):
            pass


def test_an_existing_out_folder_that_cannot_be_written_is_not_said_to_be_created(
        tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)  # root may write anyway
    with pytest.raises(UserInputError, match=r"^--out .*: cannot write in it: Permission denied "
                                             r"\(nothing was written\)$"):
        with outputs.out_folder("--out", tmp_path):
            pass
    assert tmp_path.is_dir()
