"""Benchmark: many runners on one study, and what a claim costs.

(a) Wall time of a 12-trial study (tiny trials: 32x32 shapes, MobileNetV3-Small,
    24 steps) with 1, 2 and 3 local ``ablate run`` processes started together against one
    SQLite file, side by side; each runner trains with one torch thread (on a shared,
    busy machine more threads than free cores make torch's thread pool spin: ten times
    slower here), so one runner uses one core. Trainings are counted from the run folders' ``claims.log``: the study is
    trained exactly 12 times whatever the number of runners.
(b) Claim overhead per trial on SQLite and PostgreSQL: the claim transaction, one
    heartbeat renewal, and claim + renewal + recording a minimal result (what a worker's
    store does per trial; the store is opened once per worker process). Target: under
    50 ms.

    .venv/bin/python bench/bench_claims.py [--trials 12] [--steps 24] [--repeats 1] [--pg-url URL]

PostgreSQL: ``--pg-url`` (a server URL; a scratch database is created and dropped), else
``ABLATE_TEST_PG_URL`` from tests/services/.env when the test services run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe  # noqa: E402

RECIPE = """
name = "bench_claims"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3plus"
aspp_channels = 32

[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 16
val_images = 8
workers = 0

[base.train]
optimizer = "adamw"
iterations = {steps}
batch_size = 8
log_every = 4
device = "cpu"

[base.eval]
batch_size = 8
latency = false
flops = false

[grid]
"train.lr" = [{lrs}]
"""


def write_recipe(folder: Path, trials: int, steps: int) -> Path:
    path = folder / "bench_claims.toml"
    path.write_text(RECIPE.format(steps=steps, lrs=", ".join(
        f"{0.001 * (i + 1):.3f}" for i in range(trials))))
    return path


def run_runners(recipe: Path, folder: Path, runners: int
                ) -> tuple[float, int, list[str], float]:
    """Start ``runners`` processes together: wall time, trainings, each one's closing
    lines, and the CPU seconds they used together."""
    folder.mkdir(parents=True, exist_ok=True)
    db, runs = folder / f"r{runners}.db", folder / f"runs{runners}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = str(Path(sys.executable).parent / "ablate")
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [subprocess.Popen([exe, "run", str(recipe), "--db", str(db), "--runs-dir", str(runs)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(runners)]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if any(p.returncode for p in procs):
        raise SystemExit(f"a runner failed:\n{outputs}")
    trainings = sum(len(log.read_text().splitlines())
                    for log in runs.glob("bench_claims/*/claims.log"))
    closing = re.compile(r"^(this runner took|nothing left|left \d+ to other|study )")
    tails = [" | ".join(ln.strip() for ln in out.splitlines() if closing.match(ln))
             for out in outputs]
    return wall, trainings, tails, cpu


def claim_overhead(url: str, claims: int) -> tuple[float, float, float]:
    """Median ms of the claim, of a renewal, and of claim + renewal + record."""
    from ablate.dispatch.claiming import holder_identity
    from ablate.recipes.loader import parse_recipe
    from ablate.store import Store
    from ablate.trials.expand import expand
    from ablate.trials.lifecycle import TrialResult, TrialStatus

    trials = expand(parse_recipe(RECIPE.format(steps=2, lrs=", ".join(
        f"{0.0001 * (i + 1):.4f}" for i in range(claims))), "bench.toml"))
    store = Store(url)
    store.upsert_study("bench_claims")
    store.register_trials("bench_claims", trials)
    who = holder_identity("local")
    whole, alone, renew = [], [], []
    for t in trials:
        start = time.perf_counter()
        claim = store.claim("bench_claims", t.trial_id, who, 120)
        claimed = time.perf_counter()
        store.renew(claim)
        renewed = time.perf_counter()
        store.record(TrialResult("bench_claims", t.trial_id, TrialStatus.DONE,
                                 final={"miou": 0.5}, claim_epoch=claim.epoch))
        whole.append(time.perf_counter() - start)
        alone.append(claimed - start)
        renew.append(renewed - claimed)
    store.close()
    return tuple(1000 * statistics.median(x) for x in (alone, renew, whole))


def pg_scratch(server_url: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ablate_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server_url).set(database=name).render_as_string(hide_password=False), drop


def pg_server(given: str | None) -> str | None:
    if given:
        return given
    env = ROOT / "tests" / "services" / ".env"
    if env.is_file():
        for line in env.read_text().splitlines():
            if line.startswith("ABLATE_TEST_PG_URL="):
                return line.split("=", 1)[1].strip()
    return os.environ.get("ABLATE_TEST_PG_URL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=at_least(1), default=12)
    parser.add_argument("--steps", type=at_least(1), default=24, help="training steps per trial")
    parser.add_argument("--repeats", type=at_least(1), default=1, help="rounds of 1, 2, 3 runners "
                        "(the median round is shown)")
    parser.add_argument("--claims", type=at_least(1), default=100, help="trials claimed in (b)")
    parser.add_argument("--pg-url", default=None)
    args = parser.parse_args()
    print(describe())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = write_recipe(folder, args.trials, args.steps)
        runs: dict[int, list] = {1: [], 2: [], 3: []}
        for r in range(args.repeats):  # 1, 2, 3, 1, 2, 3: drifting load hits all alike
            for n in runs:
                runs[n].append(run_runners(recipe, folder / f"rep{r}", n))
        rows = []
        for n, results in runs.items():  # the median wall time's run
            results.sort(key=lambda x: x[0])
            rows.append((n, *results[len(results) // 2]))
    cores = os.cpu_count() or 1
    print(f"(a) {args.trials}-trial study ({args.steps} steps a trial), N local runners "
          f"started together, one SQLite file; median of {args.repeats} round(s)")
    print(f"{'runners':>7} {'threads each':>12} {'wall s':>8} {'speed-up':>8} {'CPU s':>7} "
          f"{'trainings':>9}")
    for n, wall, trainings, _tails, cpu in rows:
        print(f"{n:>7} {1:>12} {wall:>8.1f} {rows[0][1] / wall:>8.2f} {cpu:>7.1f} "
              f"{trainings:>9}")
    print("each runner's closing lines, 3 runners:")
    for tail in rows[2][3]:
        print(f"  {tail}")
    print(f"speed-up is bounded by {cores} core(s) (one thread per runner: a third runner "
          "shares a core), by every runner's own start-up (Python, torch, the recipe's "
          "validation) before its first claim, and by whatever else loads the machine "
          f"(load average now {os.getloadavg()[0]:.1f}).\n")

    print(f"(b) claim overhead per trial, median of {args.claims} trials")
    print(f"{'database':>10} {'claim ms':>9} {'renew ms':>9} {'claim+renew+record ms':>22}")
    with tempfile.TemporaryDirectory() as tmp:
        figures = claim_overhead(f"sqlite:///{Path(tmp) / 'c.db'}", args.claims)
        print(f"{'SQLite':>10} {figures[0]:>9.2f} {figures[1]:>9.2f} {figures[2]:>22.2f}")
    server = pg_server(args.pg_url)
    if server:
        url, drop = pg_scratch(server)
        try:
            figures = claim_overhead(url, args.claims)
        finally:
            drop()
        print(f"{'PostgreSQL':>10} {figures[0]:>9.2f} {figures[1]:>9.2f} {figures[2]:>22.2f}")
    else:
        print(f"{'PostgreSQL':>10} (no server: --pg-url)")
    print("target: under 50 ms per trial")


if __name__ == "__main__":
    main()
