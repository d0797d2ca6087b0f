"""Benchmark: `ablate plan` of a 20,000-trial recipe (costs cached) and refusing a huge grid.

Each figure is a fresh process (`python -m ablate plan ...`), as a user would run it,
stdout to a pipe. With ``--before REV`` the same commands also run against the code of
git revision REV (extracted to a temporary folder), so old and new print side by side.

    .venv/bin/python bench/bench_plan.py [--before REV] [--repeats 3]

Figures (wall seconds; "CPU s": user + system seconds of the process, which a busy
shared machine inflates far less than the wall time):
  plan 20k (cached)   wall time of `plan` on 20,000 trials (one architecture) once the
                      architecture's cost is in the database (goal: within 3 s on 2 cores)
  plan 20k --json     the same with every row printed as JSON
  plan 20k configs    `plan` of 20,000 distinct configurations of one seed (a 10,000-value
                      train.lr axis x 2 weight decays), costs cached: every configuration is
                      validated and hashed (goal: within 3 s)
  refuse 10M          wall time until `plan` of a 10,000,000-trial grid exits 2
  quick-start ...     `plan recipes/quickstart.toml` (12 trials, 4 architectures)
  20k x 4 arch ...    `plan` of 20,000 trials over 4 architectures (--max-trials 20000)
                      each "no db" (no database: plan creates none) or "db" (a new empty
                      database), "1st" with an empty cost cache ($ABLATE_CACHE_DIR) and
                      "later" the median of the next calls (goals from the second call
                      on: quick-start within 1 s, 20k x 4 within 3 s)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe, extract  # noqa: E402

BASE = """
name = "{name}"
seeds = [{seeds}]

[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"

[base.data]
name = "shapes"
classes = 3
image_size = 32

[base.train]
epochs = 1
batch_size = 4
"""


def recipe_20k() -> str:
    """100 learning rates x 50 weight decays x 4 seeds = 20,000 trials, one architecture."""
    lrs = ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(100))
    wds = ", ".join(f"{1e-5 * (i + 1):.5f}" for i in range(50))
    return BASE.format(name="plan20k", seeds="0, 1, 2, 3") + (
        f'\n[grid]\n"train.lr" = [{lrs}]\n"train.weight_decay" = [{wds}]\n')


def recipe_20k_configs() -> str:
    """10,000 learning rates x 2 weight decays x 1 seed = 20,000 distinct configurations."""
    lrs = ", ".join(f"{0.0001 * (i + 1):.4f}" for i in range(10_000))
    return BASE.format(name="plan20kc", seeds="0") + (
        f'\n[grid]\n"train.lr" = [{lrs}]\n"train.weight_decay" = [0.0001, 0.0002]\n')


def recipe_20k_4arch() -> str:
    """2 heads x 2 last-expansion settings (4 architectures) x 50 learning rates x
    25 weight decays x 4 seeds = 20,000 trials."""
    lrs = ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(50))
    wds = ", ".join(f"{1e-5 * (i + 1):.5f}" for i in range(25))
    return BASE.format(name="plan20k4", seeds="0, 1, 2, 3") + (
        '\n[grid]\n"model.head" = ["lraspp", "deeplabv3plus"]\n'
        '"model.keep_last_expansion" = [true, false]\n'
        f'"train.lr" = [{lrs}]\n"train.weight_decay" = [{wds}]\n')


def recipe_10m() -> str:
    """1,000 x 1,000 x 10 = 10,000,000 trials."""
    lrs = ", ".join(f"{0.0001 * (i + 1):.4f}" for i in range(1000))
    wds = ", ".join(f"{1e-6 * (i + 1):.6f}" for i in range(1000))
    return BASE.format(name="plan10m", seeds=", ".join(str(s) for s in range(10))) + (
        f'\n[grid]\n"train.lr" = [{lrs}]\n"train.weight_decay" = [{wds}]\n')


CPU_TIMES: dict[str, float] = {}  # figure -> CPU seconds (user + sys) of its last run


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], src: Path, limit: float,
          cache: Path) -> tuple[float | None, int, str]:
    """Wall seconds (None past ``limit``), exit code and the last stderr line; the CPU
    seconds the process used go to ``CPU_TIMES["last"]`` (robust on a shared machine).
    ``cache``: the per-user cost cache the command sees (never the real one)."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1",
               ABLATE_CACHE_DIR=str(cache))
    start, cpu = time.perf_counter(), _child_cpu()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit,
                              cwd=src)
    except subprocess.TimeoutExpired:
        CPU_TIMES["last"] = float("nan")
        return None, -1, f"killed after {limit:.0f} s"
    wall = time.perf_counter() - start
    CPU_TIMES["last"] = _child_cpu() - cpu
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return wall, proc.returncode, tail


def measure(label: str, src: Path, tmp: Path, repeats: int, limit_10m: float) -> dict:
    py = sys.executable
    db = str(tmp / f"{label}.db")
    r20k, r10m = tmp / "plan20k.toml", tmp / "plan10m.toml"
    cache = tmp / f"{label}-cache"  # the cost cache these commands see: empty at first
    # fill the cost cache: `plan` writes costs into an existing database
    subprocess.run([py, "-m", "ablate", "db", "upgrade", "--db", db], check=True,
                   capture_output=True, env=dict(os.environ, PYTHONPATH=str(src)), cwd=src)
    helptext = subprocess.run([py, "-m", "ablate", "plan", "--help"], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=str(src)), cwd=src).stdout
    limit = ["--max-trials", "20000"] if "--max-trials" in helptext else []  # older code: none
    plan = [py, "-m", "ablate", "plan", str(r20k), "--db", db, *limit]
    wall, rc, tail = timed(plan, src, 600, cache)
    if rc != 0:
        raise SystemExit(f"{label}: plan failed: {tail}")
    out: dict = {"plan 20k (cold, 1 arch costed)": wall,
                 "plan 20k (cold) CPU s": CPU_TIMES["last"]}
    configs = [py, "-m", "ablate", "plan", str(tmp / "plan20kc.toml"), "--db", db, *limit]
    if timed(configs, src, 600, cache)[1] != 0:  # its architecture is costed by now
        raise SystemExit(f"{label}: plan of 20k configurations failed")
    for name, cmd in (("plan 20k (cached)", plan), ("plan 20k --json", [*plan, "--json"]),
                      ("plan 20k configs (cached)", configs)):
        runs, cpus = [], []
        for _ in range(repeats):
            runs.append(timed(cmd, src, 600, cache)[0])
            cpus.append(CPU_TIMES["last"])
        out[name] = statistics.median(r for r in runs if r is not None)
        out[f"{name} CPU s"] = statistics.median(cpus)
    wall, rc, tail = timed([py, "-m", "ablate", "plan", str(r10m), "--db", db], src, limit_10m,
                         cache)
    out["refuse 10M"] = wall
    out["refuse 10M CPU s"] = CPU_TIMES["last"]
    out["refuse 10M exit"] = f"exit {rc}: {tail[:110]}"
    out.update(first_and_later(label, src, tmp, repeats))
    return out


def first_and_later(label: str, src: Path, tmp: Path, repeats: int) -> dict:
    """`plan` of the quick-start and of 20k trials over 4 architectures, without and with
    a database: the first call on an empty cost cache, then the median of later calls."""
    py, out = sys.executable, {}
    cases = (("quick-start", ROOT / "recipes" / "quickstart.toml", []),
             ("20k x 4 arch", tmp / "plan20k4.toml", ["--max-trials", "20000"]))
    for name, recipe, extra in cases:
        for where in ("no db", "db"):
            case = tmp / f"{label}-{name.replace(' ', '')}-{where.replace(' ', '')}"
            case.mkdir()
            db = case / "plan.db"  # "no db": never created, plan creates none
            if where == "db":
                subprocess.run([py, "-m", "ablate", "db", "upgrade", "--db", str(db)],
                               check=True, capture_output=True, cwd=src,
                               env=dict(os.environ, PYTHONPATH=str(src)))
            plan = [py, "-m", "ablate", "plan", str(recipe), "--db", str(db), *extra]
            wall, rc, tail = timed(plan, src, 600, case / "cache")
            if rc != 0:
                raise SystemExit(f"{label}: {name} ({where}) failed: {tail}")
            out[f"{name}, {where}: 1st"] = wall
            out[f"{name}, {where}: 1st CPU s"] = CPU_TIMES["last"]
            runs, cpus = [], []
            for _ in range(repeats):
                runs.append(timed(plan, src, 600, case / "cache")[0])
                cpus.append(CPU_TIMES["last"])
            out[f"{name}, {where}: later"] = statistics.median(r for r in runs if r is not None)
            out[f"{name}, {where}: later CPU s"] = statistics.median(cpus)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--limit-10m", type=float, default=20.0,
                        help="seconds before the 10M-trial plan is killed (old code hangs)")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "plan20k.toml").write_text(recipe_20k())
        (tmp / "plan10m.toml").write_text(recipe_10m())
        (tmp / "plan20k4.toml").write_text(recipe_20k_4arch())
        (tmp / "plan20kc.toml").write_text(recipe_20k_configs())
        columns = {"now": measure("now", ROOT, tmp, args.repeats, args.limit_10m)}
        if args.before:
            old = extract(args.before, tmp / "before")
            columns = {f"before ({args.before[:10]})": measure("before", old, tmp, args.repeats,
                                                               args.limit_10m), **columns}
    rows = list(next(iter(columns.values())))
    print(f"{'figure':<32}" + "".join(f"{c:>24}" for c in columns))
    for row in rows:
        cells = []
        for col in columns.values():
            value = col[row]
            cells.append(f"{value:>23.2f}s" if isinstance(value, float) and value == value
                         else f"{'> limit' if value is None or value != value else value:>24}")
        if row.endswith("exit"):
            for col_name, col in columns.items():
                print(f"  {col_name}: {col[row]}")
            continue
        print(f"{row:<32}" + "".join(cells))


if __name__ == "__main__":
    main()
