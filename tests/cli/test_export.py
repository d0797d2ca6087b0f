"""``ablate export`` through CliRunner on a store filled by hand (tests/report/fake_store.py)."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

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


def test_parquet_without_pyarrow_says_how_to_get_it(db, tmp_path):
    from tests.install.hiding import hidden

    with hidden("pyarrow"):
        result = export(db, "mnv3_mini", "--parquet", str(tmp_path / "t.parquet"))
    assert result.exit_code == 2
    assert result.output == "Error: --parquet needs pyarrow: pip install 'ablate[parquet]'\n"


@pytest.mark.parametrize("args,message", [
    (["mnv3_mini"], "Error: give at least one of --csv FILE, --parquet FILE, --markdown FILE"),
    (["nope", "--csv", "-"], "Error: no study 'nope' in the database; known: mnv3_mini, other"),
    (["mnv3_mini", "--where", "x=1", "--csv", "-"], "Error: --where: no column 'x'; columns: study"),
])
def test_errors(db, args, message):
    result = export(db, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
