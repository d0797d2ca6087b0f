"""--until-decided through the real single-node Slurm test cluster: one job array per round."""

from __future__ import annotations

import json

import pytest

from ablate.store import Store
from tests.dispatch.test_slurm import run_cli, write_recipe


@pytest.mark.slow
def test_the_seed_loop_runs_round_by_round_on_slurm(cancel_after, tmp_path):
    cancel_after("grown")
    recipe = write_recipe(tmp_path, "grown", """
        [grid]
        "train.lr" = [0.01, 0.02]
        """, changes={"seeds = [0]": "seeds = [0, 1]"})
    db, runs = str(tmp_path / "grown.db"), str(tmp_path / "runs")
    out = run_cli("run", str(recipe), "--db", db, "--runs-dir", runs, "--executor", "slurm",
                  "--cpus-per-trial", "1", "--time", "10", "--until-decided", "--max-seeds", "3")
    assert out.exit_code == 0, out.output
    # three seeds cannot decide anything at alpha 0.05 under O'Brien-Fleming spending
    assert "seed 2 for 2 configuration(s)" in out.output
    assert "stopped: --max-seeds 3 reached" in out.output
    records = Store(db).trials("grown")
    assert sorted((r.seed, r.status) for r in records) == [
        (0, "done"), (0, "done"), (1, "done"), (1, "done"), (2, "done"), (2, "done")]
    arrays = {r.seed: r.job_id.split("_")[0] for r in records}
    assert arrays[2] != arrays[0]  # the added seed was a submission of its own
    report = run_cli("report", "--db", db, "--study", "grown", "--effects", "--json")
    effect = json.loads(report.output)["effects"][0]
    assert effect["method"] == "group-sequential (obrien-fleming)" and effect["n"] == 3
    assert effect["verdict"].startswith("inconclusive")
