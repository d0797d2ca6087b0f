"""A job array sbatch refuses is refused before anything is recorded: one line, exit 2, no
database created, no study, trial, estimate or run folder, an existing study's trials as
they were. sbatch is a script on PATH that refuses every job (no cluster needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.loader import load_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

REFUSAL = "sbatch: error: Batch job submission failed: Invalid partition name specified"


@pytest.fixture
def refusing_sbatch(tmp_path, monkeypatch) -> Path:
    """sbatch that logs its arguments and refuses; sinfo and scontrol that know nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch.calls"
    scripts = {
        "sbatch": f'echo "$@" >> {calls}\necho "{REFUSAL}" >&2\nexit 1\n',
        "sinfo": "exit 1\n",
        "scontrol": "exit 1\n",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def run(tmp_path, recipe, db, *extra):
    return CliRunner().invoke(main, [
        "run", str(recipe), "--db", str(db), "--runs-dir", str(tmp_path / "runs"),
        "--executor", "slurm", "--partition", "nosuch", *extra])


def refused_in_one_line(result, recipe) -> None:
    assert result.exit_code == 2, result.output
    assert result.output == (
        "Error: sbatch refused the job array: Batch job submission failed: Invalid partition "
        "name specified; nothing was recorded; check --partition, --mem, --time, "
        f"--cpus-per-trial, --gpus-per-trial or the [slurm] section of {recipe}\n")


def test_a_refused_submission_creates_no_database(tmp_path, tiny_recipe, refusing_sbatch):
    db = tmp_path / "new.db"
    refused_in_one_line(run(tmp_path, tiny_recipe, db), tiny_recipe)
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "sbatch.calls", "tiny.toml"]
    # asked once, to test the job array, never to submit it
    assert refusing_sbatch.read_text().splitlines() == ["--test-only"]


@pytest.mark.parametrize("extra", [(), ("--force",), ("--set", "seeds=[0,1]")])
def test_a_refused_submission_leaves_an_existing_study_as_it_was(tmp_path, tiny_recipe,
                                                                  refusing_sbatch, extra):
    db = tmp_path / "old.db"
    store = Store(str(db))
    recipe = load_recipe(str(tiny_recipe))
    done, failed = expand(recipe)
    store.upsert_study(recipe.name, recipe.description, str(tiny_recipe), recipe.text)
    store.register_trials(recipe.name, [done, failed])
    store.record(TrialResult(recipe.name, done.trial_id, TrialStatus.DONE,
                             final={"miou": 0.5}, environment={}))
    store.record(TrialResult.failure(recipe.name, failed.trial_id, "boom"))
    before = store.trials(recipe.name)
    store.close()
    db_bytes = db.read_bytes()

    refused_in_one_line(run(tmp_path, tiny_recipe, db, *extra), tiny_recipe)
    store = Store(str(db))
    assert store.trials(recipe.name) == before  # no trial added, reset or submitted
    assert store.estimates([recipe.name]) == []
    assert db.read_bytes() == db_bytes and not (tmp_path / "runs").exists()
    status = CliRunner().invoke(main, ["status", recipe.name, "--db", str(db)])
    assert status.exit_code == 0, status.output


@pytest.fixture
def accepting_sbatch(tmp_path, monkeypatch) -> Path:
    """sbatch that logs its arguments, accepts --test-only and submits job 77."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch.calls"
    path = bin_dir / "sbatch"
    path.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                    'case "$*" in *--test-only*) echo "sbatch: Job 1 to start" >&2; exit 0;; esac\n'
                    'echo "Submitted batch job 77"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_sbatch_tests_the_array_once_and_not_when_every_trial_is_done(tmp_path, tiny_recipe,
                                                                      accepting_sbatch):
    db = tmp_path / "new.db"
    first = CliRunner().invoke(main, [
        "run", str(tiny_recipe), "--db", str(db), "--runs-dir", str(tmp_path / "runs"),
        "--executor", "slurm", "--detach"])
    assert first.exit_code == 0, first.output
    # a new database is checked on a stand-in first: the same script is not asked twice;
    # then submitit submits its script file
    test_only, submitted = accepting_sbatch.read_text().splitlines()
    assert test_only == "--test-only" and submitted.endswith(".sh")
    store = Store(str(db))
    recipe = load_recipe(str(tiny_recipe))
    for trial in store.trials(recipe.name):
        store.record(TrialResult(recipe.name, trial.trial_id, TrialStatus.DONE,
                                 final={"miou": 0.5}, environment={}))
    accepting_sbatch.unlink()
    again = CliRunner().invoke(main, [
        "run", str(tiny_recipe), "--db", str(db), "--runs-dir", str(tmp_path / "runs"),
        "--executor", "slurm"])
    assert again.exit_code == 0, again.output
    assert not accepting_sbatch.exists()  # nothing to run: sbatch is not asked at all
    # detached, it said 'Submitted 0 trial(s) to Slurm. Follow them with ...'
    detached = CliRunner().invoke(main, [
        "run", str(tiny_recipe), "--db", str(db), "--runs-dir", str(tmp_path / "runs"),
        "--executor", "slurm", "--detach"])
    assert detached.exit_code == 0, detached.output
    assert "nothing left to take" in detached.output
    assert "Submitted" not in detached.output and not accepting_sbatch.exists()


def test_a_detached_run_draws_no_bars_and_says_where_its_logs_go(tmp_path, tiny_recipe,
                                                                  accepting_sbatch):
    """--detach returns once its jobs are queued: it left a 'trials 0/2' bar and one empty
    '0/?' bar per job on the screen, and named neither the jobs' logs nor 'ablate watch',
    and 'ablate status tiny' without this run's --db read another database."""
    db, runs = tmp_path / "my.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--executor", "slurm", "--detach"])
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("trials") or "[job 77_" in line
                   for line in result.output.splitlines())
    where = f"--db {db} --runs-dir {runs}"
    assert result.output.splitlines()[-1] == (
        f"Submitted 2 trial(s) to Slurm (job array 77); each job's log: {tmp_path}/slurm/"
        f"<job id>_0_log.out and .err. Follow them live with 'ablate watch tiny {where}', or "
        f"with 'ablate status tiny {where}' (it also records jobs that died); cancel with "
        f"'ablate cancel tiny {where}'.")


def test_ctrl_c_while_slurm_jobs_run_names_this_runs_database(tmp_path, tiny_recipe,
                                                              accepting_sbatch, monkeypatch):
    """Ctrl-C leaves the jobs running; 'ablate status tiny' without this run's --db read
    another database (the default one)."""
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ablate.dispatch.slurm.wait_for_results", interrupted)
    db, runs = tmp_path / "my.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--executor", "slurm"])
    assert result.exit_code == 130, result.output
    where = f"--db {db} --runs-dir {runs}"
    assert (f"Follow them with 'ablate status tiny {where}' (it records their results), or "
            f"stop them with 'ablate cancel tiny {where}'.") in result.output.splitlines()[-1]


UNREACHABLE = {
    "no controller configured": (
        "sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
        "sbatch: error: fetch_config: DNS SRV lookup failed\n"
        "sbatch: fatal: Could not establish a configuration source"),
    "controller down": ("sbatch: error: Batch job submission failed: Unable to contact slurm "
                        "controller (connect failure)"),
    "unreadable slurm.conf": (
        "sbatch: error: s_p_parse_file: unable to read \"/etc/slurm/slurm.conf\": "
        "Permission denied\nsbatch: error: ClusterName needs to be specified\n"
        "sbatch: fatal: Unable to process configuration file"),
}


@pytest.mark.parametrize("said", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_no_reachable_controller_is_named_as_such(tmp_path, tiny_recipe, monkeypatch, said):
    """It read "sbatch refused the job array: ...; check --partition, --mem, ...", options
    that were not the cause."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\ncat >&2 <<'END'\n{said}\nEND\nexit 1\n")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    conf = tmp_path / "slurm.conf"  # there, but sbatch finds no controller through it
    conf.write_text("ClusterName=elsewhere\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    db = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(tmp_path / "runs"), "--executor", "slurm"])
    assert result.exit_code == 2, result.output
    first = said.splitlines()[0].removeprefix("sbatch: error: ")
    assert result.output == (f"Error: sbatch cannot reach a Slurm controller: {first}; nothing "
                             f"was recorded; is slurmctld running here, and SLURM_CONF "
                             f"({conf}) this cluster's slurm.conf?\n")
    assert not db.exists()


def test_a_slurm_conf_that_is_not_there_is_named_at_once(tmp_path, tiny_recipe,
                                                          accepting_sbatch, monkeypatch):
    """sbatch retried a missing SLURM_CONF for 60 s, then ablate said "sbatch refused the
    job array: s_p_parse_file: cannot stat file ...; check --partition, --mem, ..."."""
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "nosuch.conf"))
    db = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(tmp_path / "runs"), "--executor", "slurm",
                                       "--detach"])
    assert result.exit_code == 2, result.output
    assert result.output == (f"Error: --executor slurm: SLURM_CONF ({tmp_path}/nosuch.conf) is "
                             "not a file; set it to this cluster's slurm.conf, or unset it "
                             "(nothing was recorded)\n")
    assert not db.exists() and not accepting_sbatch.exists()  # sbatch was not asked
