"""``ablate.open(db)``: the frames behind ``report --json --effects`` and ``export``."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

import ablate
from ablate.cli import main
from ablate.errors import StoreError, UserInputError
from tests.report.fake_store import fill


@pytest.fixture
def db(tmp_path):
    return fill(f"sqlite:///{tmp_path / 'api.db'}").url


def test_import_ablate_stays_light():
    code = ("import sys, ablate; print(sorted(m for m in ('pandas', 'torch', 'sqlalchemy', "
            "'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_api_returns_the_numbers_of_report_json_effects(db):
    cli = json.loads(CliRunner().invoke(main, ["report", "--db", db, "--study", "mnv3_mini",
                                               "--effects", "--json"]).stdout)
    api = ablate.open(db)
    configs = api.configs("mnv3_mini")
    assert configs["config_name"].tolist() == [r["config_name"] for r in cli["configurations"]]
    for column in ("miou_mean", "miou_std", "n", "params", "gflops", "latency_ms"):
        assert configs[column].tolist() == pytest.approx([r[column] for r in
                                                          cli["configurations"]])
    assert configs["miou_mean"].tolist() == pytest.approx([61.0, 59.0, 58.0, 56.0])
    effects = api.effects("mnv3_mini")
    assert list(effects.columns) == list(cli["effects"][0])
    assert len(effects) == len(cli["effects"]) == 3
    for column in ("estimate", "ci_low", "ci_high", "p_adj", "n"):
        assert effects[column].tolist() == pytest.approx([e[column] for e in cli["effects"]])
    assert effects["verdict"].tolist() == [e["verdict"] for e in cli["effects"]]
    assert effects.loc[effects["axis"] == "variant", "estimate"].item() == pytest.approx(-2.0)


def test_trials_are_the_export_rows(db, tmp_path):
    out = tmp_path / "t.csv"
    assert CliRunner().invoke(main, ["export", "mnv3_mini", "--db", db, "--csv",
                                     str(out)]).exit_code == 0
    exported = pd.read_csv(out)
    trials = ablate.open(db).trials("mnv3_mini")
    assert list(trials.columns) == list(exported.columns)
    assert trials["trial_id"].tolist() == exported["trial_id"].tolist()
    assert trials["miou"].tolist() == pytest.approx(exported["miou"].tolist())
    assert sorted(trials["miou"].round(6)) == [55.0, 57.0, 58.0, 58.0, 58.5, 59.5, 60.0, 62.0]


def test_studies_counts_trials_by_state(db):
    studies = ablate.open(db).studies()
    assert studies[["study", "trials", "done", "pending", "running", "failed"]].to_dict(
        "records") == [
        {"study": "mnv3_mini", "trials": 8, "done": 8, "pending": 0, "running": 0, "failed": 0},
        {"study": "other", "trials": 2, "done": 1, "pending": 1, "running": 0, "failed": 0},
    ]


def test_read_only_never_creates_a_database(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises((StoreError, UserInputError)):
        ablate.open(str(missing))
    assert not missing.exists()


def test_unknown_study_names_the_known_ones(db):
    """In the same words from every method: configs and effects said '--study:', the
    command's option, to a notebook that has none."""
    api = ablate.open(db)
    for method in (api.trials, api.configs, api.effects):
        with pytest.raises(UserInputError) as err:
            method("nope")
        assert str(err.value) == f"no study 'nope' in {db}; known: mnv3_mini, other"
