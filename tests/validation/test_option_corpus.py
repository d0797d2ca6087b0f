"""Misused command lines: exit 2, one line on stderr, nothing written."""

from __future__ import annotations

import pytest

from tests.validation.harness import VALID, assert_refused, invoke, make_database, snapshot


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("opts")
    make_database(path)
    (path / "valid.toml").write_text(VALID)
    return path


# (case id, arguments with {db} and {recipe} filled in, text the one line must contain)
CASES = [
    ("set-without-equals", ["plan", "{recipe}", "--set", "train.lr"], "expected KEY=VALUE"),
    ("set-empty-key", ["plan", "{recipe}", "--set", "=3"], "expected KEY=VALUE"),
    # it said "--set train.lr.: should be a number ... (got a table)"
    # a table where one value belongs: its rule, as in a recipe (it was "unknown key
    # 'eval.latency.x'" with the section's keys)
    ("set-table-for-a-value", ["plan", "{recipe}", "--set", "eval.latency={{x=1}}"],
     "--set eval.latency: should be a boolean (got a table)"),
    ("set-trailing-dot", ["plan", "{recipe}", "--set", "train.lr.=1"],
     "--set train.lr.: an empty part in a dotted key; write it as section.key"),
    ("set-lr-inf", ["plan", "{recipe}", "--set", "train.lr=inf"],
     "--set train.lr: must be a finite number"),
    ("set-lr-huge", ["run", "{recipe}", "--set", "train.lr=1e308"], "--set train.lr"),
    ("set-seed", ["plan", "{recipe}", "--set", "seed=5"], "--set seeds=[0,1]"),
    ("set-seed-run", ["run", "{recipe}", "--set", "seed=5"], "not a key of a trial"),
    ("set-train-seed", ["plan", "{recipe}", "--set", "train.seed=5"],
     "weight_decay; a trial's seed comes from the recipe's top-level seeds = [0, 1] "
     "(command line: --set seeds=[0,1])"),
    ("set-seeds-empty", ["plan", "{recipe}", "--set", "seeds=[]"], "non-empty list"),
    ("set-seeds-negative", ["plan", "{recipe}", "--set", "seeds=[-1]"], "{recipe}: --set seeds: "),
    ("set-seeds-too-big", ["run", "{recipe}", "--set", "seeds=[4294967296]"], "4294967295"),
    ("set-seeds-repeated", ["plan", "{recipe}", "--set", "seeds=[2,2]"], "repeated: 2"),
    ("set-seeds-word", ["plan", "{recipe}", "--set", "seeds=many"], "{recipe}: --set seeds: "),
    ("set-unknown-key", ["plan", "{recipe}", "--set", "data.wrkers=1"],
     "{recipe}: --set data.wrkers: unknown key 'data.wrkers' (did you mean 'workers'?); "
     "allowed here: "),
    ("set-unknown-section", ["run", "{recipe}", "--set", "optim.lr=1"], "unknown key"),
    ("set-wrong-type", ["plan", "{recipe}", "--set", "train.epochs=two"], "--set train.epochs"),
    ("set-table-not-a-table", ["plan", "{recipe}", "--set", "model=3"],
     "--set model: must be a table (got 3)"),
    ("set-list-item", ["plan", "{recipe}", "--set", "eval.resolution=[64,64.5]"],
     "--set eval.resolution[1]: should be an integer in (0, 8192] (got 64.5)"),
    ("set-inline-table", ["plan", "{recipe}", "--set", "train={{lr=inf}}"],
     "--set train.lr: must be a finite number"),
    ("set-name-not-a-key", ["plan", "{recipe}", "--set", "name=x"], "unknown key"),
    ("set-fcn8s-no-cost", ["plan", "{recipe}", "--no-cost", "--set", "model.head=fcn8s"],
     "model.head"),
    ("set-expansion-99-no-cost", ["plan", "{recipe}", "--no-cost", "--set",
                                  "model.expansion=[99]"], "block 99 out of range"),
    ("max-trials-zero", ["plan", "{recipe}", "--max-trials", "0"], "--max-trials"),
    ("max-trials-word", ["run", "{recipe}", "--max-trials", "many"], "--max-trials"),
    ("max-trials-below-size", ["plan", "{recipe}", "--max-trials", "1"],
     "2 trials (variants 1 x grid.\"model.keep_last_expansion\" 2 x seeds 1) is more than "
     "--max-trials 1"),
    ("max-trials-below-size-run", ["run", "{recipe}", "--max-trials", "1"], "--max-trials 1"),
    ("max-trials-below-size-cost", ["cost", "{recipe}", "--max-trials", "1"], "--max-trials 1"),
    ("plan-format-xml", ["plan", "{recipe}", "--format", "xml"], "--format"),
    ("plan-json-and-csv", ["plan", "{recipe}", "--json", "--format", "csv"], "contradict"),
    ("run-jobs-zero", ["run", "{recipe}", "--jobs", "0"], "--jobs"),
    ("run-unknown-variant", ["run", "{recipe}", "--variant", "nope"], "no variant 'nope'"),
    ("run-unknown-trial", ["run", "{recipe}", "--trial", "ffffffffffff"],
     "{recipe}: --trial: no trial has the id, id prefix or name 'ffffffffffff'; "
     "`ablate plan {recipe}` lists the ids and names"),
    ("run-empty-trial", ["run", "{recipe}", "--trial", ""],  # would match every trial
     "{recipe}: --trial: empty; give a trial's id, id prefix or name"),
    ("run-slurm-flag-locally", ["run", "{recipe}", "--partition", "gpu"], "--partition"),
    ("run-slurm-mem-word", ["run", "{recipe}", "--executor", "slurm", "--mem", "lots"],
     "--mem: must be a memory size as sbatch --mem takes it"),
    ("run-slurm-mem-spaced", ["run", "{recipe}", "--executor", "slurm", "--mem", "16 GB"],
     "e.g. 16G (got '16 GB')"),
    ("run-executor-typo", ["run", "{recipe}", "--executor", "slrum"], "--executor"),
    ("report-format-typo", ["report", "--format", "xlsx"], "--format"),
    ("report-desc-without-sort", ["report", "--desc"], "--desc needs --sort"),
    ("report-unknown-study", ["report", "--study", "nope"], "no study 'nope'"),
    ("status-unknown-study", ["status", "nope"], "no study 'nope'"),
    ("run-keep-typo", ["run", "{recipe}", "--keep", "all"], "--keep"),
    ("prune-unknown-study", ["prune", "nope"], "no study 'nope'"),
    ("prune-keep-checkpoint", ["prune", "existing", "--keep", "checkpoint"], "--keep"),
    ("export-without-output", ["export", "existing"], "at least one of --csv"),
    ("unknown-option", ["plan", "{recipe}", "--bogus"], "No such option '--bogus'"),
    ("unknown-command", ["plna"], "No such command 'plna'"),
    ("missing-recipe-argument", ["plan"], "Missing argument 'RECIPE'"),
    ("db-unknown-subcommand", ["db", "infoo"], "No such command 'infoo'"),
]
DB_COMMANDS = ("report", "status", "export", "db", "prune")


@pytest.mark.parametrize("args,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misused_command_line_is_refused(folder, args, needle):
    args = [a.format(recipe=folder / "valid.toml") for a in args]
    if args[0] in ("plan", "run", *DB_COMMANDS) and args[:2] != ["db", "infoo"]:
        args += ["--db", str(folder / "keep.db")]
    before = snapshot(folder)
    assert_refused(invoke(args), needle.format(recipe=folder / "valid.toml"))
    assert snapshot(folder) == before
