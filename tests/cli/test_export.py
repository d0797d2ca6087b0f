"""``ablate export`` through CliRunner on a store filled by hand (tests/report/fake_store.py)."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

from ablate import extras
from ablate.cli import main
from tests.report.fake_store import fill

COLUMNS = [
    "study", "trial_id", "name", "config_name", "variant", "seed", "status", "preemptions", "params",
    "gflops", "flops_convention", "resolution", "latency_ms", "miou", "pixel_acc", "steps", "train_loss",
    "axis:model.head", "published_params", "published_miou", "published_source",
    "iou/background", "iou/circle", "iou/square",
]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.db"
    fill(f"sqlite:///{path}")
    return str(path)


def export(db, *args):
    return CliRunner().invoke(main, ["export", *args, "--db", db])


def test_csv_file_has_every_trial_and_figure(db, tmp_path):
    out = tmp_path / "t.csv"
    result = export(db, "mnv3_mini", "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out} (8 trials)\n"
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == COLUMNS and len(rows) == 8
    first = rows[0]
    assert first["name"] == "conventional[head=deeplabv3plus]/seed=0"
    assert (first["params"], first["gflops"], first["latency_ms"]) == ("11727653", "4.0", "10.0")
    assert float(first["miou"]) == pytest.approx(62.0)
    assert float(first["iou/background"]) == pytest.approx(82.0)
    assert (first["published_params"], first["published_source"]) == ("11745643", "Kim et al. 2025, Table 1")


def test_csv_to_stdout_with_where(db):
    result = export(db, "mnv3_mini", "--where", "model.head=deeplabv3", "--where", "seed=1",
                    "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["name"] for r in rows] == ["conventional[head=deeplabv3]/seed=1",
                                         "proposed[head=deeplabv3]/seed=1"]


def test_one_trial_is_counted_in_the_singular(db, tmp_path):
    out = tmp_path / "one.csv"
    result = export(db, "mnv3_mini", "--where", "model.head=deeplabv3", "--where", "seed=1",
                    "--where", "variant=proposed", "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out} (1 trial)\n"  # was "(1 trials)"


def test_markdown(db, tmp_path):
    out = tmp_path / "t.md"
    result = export(db, "other", "--markdown", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "# other" and len(lines) == 6
    assert lines[2].startswith("| study | trial_id | name | config_name | variant | seed | status |")
    done, pending = lines[4], lines[5]
    assert "| base/seed=0 | base | base | 0 | done | 0 | 1000 | 0.001 | fvcore-mac | 64x64 | 1 |" \
           " 50 |" in done
    # the pending trial has its architecture's cost but no figures yet
    assert pending.endswith("| 1 | pending | 0 | 1000 | 0.001 | fvcore-mac | 64x64 | - | - | - |"
                            " - | - | - | - | - |")


def test_parquet(db, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "t.parquet"
    result = export(db, "mnv3_mini", "--parquet", str(out))
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns) == COLUMNS and len(frame) == 8
    assert frame["params"].tolist()[:2] == [11_727_653, 11_727_653]


def test_a_boolean_axis_is_true_false_text_and_a_bool_parquet_column(tmp_path):
    from ablate.store import Store
    from tests.report.fake_store import FLAGS, FLAGS_FIGURES, add_study

    db = str(tmp_path / "flags.db")
    add_study(Store(f"sqlite:///{db}"), FLAGS, "flags", FLAGS_FIGURES)
    result = export(db, "flags", "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["axis:train.channels_last"], r["seed"], r["miou"]) for r in rows] == [
        ("true", "0", "50.0"), ("false", "0", "60.0")]  # other columns as they were
    markdown = export(db, "flags", "--markdown", "-").stdout.splitlines()
    assert [line.split(" | ")[17] for line in markdown[4:]] == ["true", "false"]
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    assert export(db, "flags", "--parquet", str(tmp_path / "t.parquet")).exit_code == 0
    frame = pd.read_parquet(tmp_path / "t.parquet")
    assert frame["axis:train.channels_last"].dtype == bool  # typed, not text
    assert frame["axis:train.channels_last"].tolist() == [True, False]


def test_parquet_writes_a_boolean_among_other_types_as_recipes_spell_it():
    pd = pytest.importorskip("pandas")
    from ablate.report.export import arrow_safe

    frame = pd.DataFrame({"axis:x": [True, 3, None], "axis:y": [False, None, True]})
    safe = arrow_safe(frame)
    assert safe["axis:x"].tolist()[:2] == ["true", "3"]  # mixed: text, as the CSV has it
    assert pd.isna(safe["axis:x"][2])
    assert safe["axis:y"].tolist() == [False, None, True]  # booleans alone stay booleans


def test_parquet_without_pyarrow_says_how_to_get_it(db, tmp_path):
    from tests.install.hiding import hidden

    with hidden("pyarrow"):
        result = export(db, "mnv3_mini", "--parquet", str(tmp_path / "t.parquet"))
    assert result.exit_code == 2
    assert result.output == f"Error: --parquet needs pyarrow: {extras.install_command('parquet')}\n"


@pytest.mark.parametrize("args,message", [
    (["mnv3_mini"], "Error: give at least one of --csv FILE, --parquet FILE, --markdown FILE"),
    (["nope", "--csv", "-"], "Error: STUDY: no study 'nope' in sqlite:///{db}; known: mnv3_mini, "
                             "other"),
    (["mnv3_mini", "--where", "x=1", "--csv", "-"], "Error: --where: no column 'x'; columns: study"),
])
def test_errors(db, args, message):
    result = export(db, *args)
    assert result.exit_code == 2, result.output
    assert message.replace("{db}", db) in result.output and "Traceback" not in result.output


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _files(folder) -> list[str]:
    """The folder's files but the database's own (r.db, r.db-wal, r.db-shm)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("r.db"))


def _refused(db, tmp_path, *args, message):
    """Exit 2, the one line ``message``, no traceback, the database's bytes and the
    folder's files as they were."""
    before, files = _digest(db), _files(tmp_path)
    result = export(db, *args)
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {message}\n"
    assert "Traceback" not in result.output
    assert _digest(db) == before
    assert _files(tmp_path) == files
    return result


@pytest.mark.parametrize("option", ["--csv", "--markdown", "--parquet"])
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_the_database_is_never_an_export_target(db, tmp_path, monkeypatch, option, suffix):
    monkeypatch.chdir(tmp_path)  # a relative path to the same file counts too
    _refused(db, tmp_path, "mnv3_mini", option, f"./r.db{suffix}",
             message=f"{option} ./r.db{suffix}: that is the results database (or its journal); "
                     "give another file (nothing was written)")


def test_a_link_to_the_database_is_refused(db, tmp_path):
    import os

    os.symlink(db, tmp_path / "soft.csv")
    os.link(db, tmp_path / "hard.csv")
    for name in ("soft.csv", "hard.csv"):
        _refused(db, tmp_path, "mnv3_mini", "--csv", str(tmp_path / name),
                 message=f"--csv {tmp_path / name}: that is the results database (or its "
                         "journal); give another file (nothing was written)")


def test_one_target_for_two_formats_is_refused(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(db, tmp_path, "mnv3_mini", "--csv", "t.out", "--markdown", f"{tmp_path}/t.out",
             message=f"--csv and --markdown both write to {tmp_path}/t.out; give each its own "
                     "FILE (nothing was written)")
    _refused(db, tmp_path, "mnv3_mini", "--csv", "-", "--markdown", "-",
             message="--csv and --markdown both write to standard output; give one of them a "
                     "FILE (nothing was written)")


def test_parquet_never_goes_to_standard_output(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(db, tmp_path, "mnv3_mini", "--parquet", "-",
             message="--parquet -: Parquet is binary and never goes to standard output; give "
                     "a FILE (--csv - and --markdown - print text)")


def test_markdown_to_stdout_beside_a_csv_file(db, tmp_path):
    out = tmp_path / "t.csv"
    result = export(db, "mnv3_mini", "--markdown", "-", "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# mnv3_mini\n") and len(result.stdout.splitlines()) == 12
    assert result.stderr == f"wrote {out} (8 trials)\n"
    assert len(out.read_text().splitlines()) == 9


@pytest.mark.parametrize("option", ["--csv", "--markdown", "--parquet"])
@pytest.mark.parametrize("where,reason", [("afile/x.out", "Not a directory"),
                                          ("nowhere/x.out", "No such file or directory")])
def test_an_output_that_cannot_be_created_is_one_line(db, tmp_path, monkeypatch, option, where,
                                                      reason):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("hi\n")
    # checked before the work: the other target is not written either
    _refused(db, tmp_path, "mnv3_mini", "--markdown" if option == "--csv" else "--csv", "ok.out",
             option, where,
             message=f"{option} {where}: cannot write: {reason} (nothing was written)")


def test_an_existing_file_is_replaced_whole(db, tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("old\n" * 10_000)
    out.chmod(0o640)
    result = export(db, "mnv3_mini", "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("study,trial_id,") and len(out.read_text().splitlines()) == 9
    assert out.stat().st_mode & 0o777 == 0o640  # its permissions kept
    assert _files(tmp_path) == ["t.csv"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(db, tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "t.parquet"
    out.write_bytes(b"old")

    def half(frame, path, **kwargs):  # the disk fills up half-way through
        with open(path, "wb") as handle:
            handle.write(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half)
    result = export(db, "mnv3_mini", "--parquet", str(out))
    assert result.exit_code == 2
    assert result.output == (f"Error: --parquet {out}: cannot write: No space left on device "
                             f"({out} left as it was)\n")
    assert out.read_bytes() == b"old"
    assert _files(tmp_path) == ["t.parquet"]
