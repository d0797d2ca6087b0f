"""Cluster-scale figures: Slurm submission overhead, job end -> result in the database, and
the store's write throughput with concurrent writers (SQLite and PostgreSQL).

    bash tests/services/start-all.sh          # the local Slurm cluster and PostgreSQL
    .venv/bin/python bench/bench_cluster.py   # --help for the knobs

Needs the services of tests/services/.env (or SLURM_CONF / ABLATE_TEST_PG_URL); a part
whose service is missing is skipped with the reason.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, counts, describe  # noqa: E402

from ablate.dispatch.entry import TrialJob  # noqa: E402
from ablate.recipes.loader import parse_recipe  # noqa: E402
from ablate.store import Store  # noqa: E402
from ablate.trials.expand import expand  # noqa: E402
from ablate.trials.ids import spec_dict  # noqa: E402
from ablate.trials.lifecycle import TrialResult, TrialStatus  # noqa: E402
from tests.services.env import read_env  # noqa: E402

TINY = """
name = "{name}"
seeds = {seeds}
[base.model]
backbone = "mobilenet_v3_small"
aspp_channels = 32
bn_momentum = 0.1
[base.data]
classes = 3
image_size = 32
train_images = 16
val_images = 8
workers = 0
[base.train]
optimizer = "sgd"
epochs = 1
batch_size = 8
device = "cpu"
[base.eval]
latency = false
"""


def setting(key: str) -> str | None:
    return os.environ.get(key) or read_env().get(key)


# -- Slurm ------------------------------------------------------------------------------

def bench_submission(folder: Path, sizes: list[int]) -> None:
    """Seconds per trial to pickle and sbatch an array of N trials (jobs cancelled at once)."""
    from ablate.dispatch.slurm import SlurmExecutor, scancel

    trials = expand(parse_recipe(TINY.format(name="submit", seeds=list(range(max(sizes)))), "b"))
    print("\nSlurm submission overhead (submitit pickling + one sbatch per array)")
    print(f"{'trials':>8} {'total s':>9} {'ms/trial':>9}")
    for n in sizes:
        jobs = [TrialJob("submit", t.trial_id, t.name, spec_dict(t.spec),
                         str(folder / "runs" / t.trial_id)) for t in trials[:n]]
        executor = SlurmExecutor(cpus_per_trial=1, time=5, folder=folder / f"slurm{n}",
                                 detach=True)
        ids: list[str] = []
        t0 = time.perf_counter()
        executor.submit(jobs, lambda job, event, ids=ids: ids.append(event.job_id))
        elapsed = time.perf_counter() - t0
        scancel(sorted({i.split("_")[0] for i in ids}))
        print(f"{n:>8} {elapsed:>9.3f} {1000 * elapsed / n:>9.1f}")


def bench_result_latency(folder: Path, trials_n: int) -> None:
    """A real array of tiny trials, waited on like ``ablate run``: result file -> database."""
    from ablate.dispatch.slurm import SlurmExecutor, job_states
    from ablate.dispatch.study import RunOptions, StudyRunner
    from ablate.train.events import Ended

    text = TINY.format(name="latency", seeds=list(range(trials_n)))
    path = folder / "latency.toml"
    path.write_text(textwrap.dedent(text))
    from ablate.recipes.loader import load_recipe

    recipe = load_recipe(str(path))
    trials = expand(recipe)
    store = Store(f"sqlite:///{folder / 'latency.db'}")
    lags: dict[str, float] = {}
    seen_at: dict[str, float] = {}

    def on_event(update):
        job = getattr(update, "job", None)  # TrialUpdate: a trial's event
        if job is not None and isinstance(update.event, Ended):  # the runner has ingested the result by now
            now = time.time()
            seen_at[job.trial_id] = now
            lags[job.trial_id] = now - (Path(job.run_dir) / "result.json").stat().st_mtime

    executor = SlurmExecutor(cpus_per_trial=1, time=10, folder=folder / "slurm-latency")
    t0 = time.perf_counter()
    StudyRunner(store, executor, RunOptions(folder / "runs"), emit=on_event).run(recipe, trials)
    wall = time.perf_counter() - t0
    records = {r.trial_id: r for r in store.trials("latency")}
    ends = _sacct_end([r.job_id for r in records.values()])
    end_lags = [seen_at[t] - ends[r.job_id] for t, r in records.items() if r.job_id in ends]
    assert set(job_states([r.job_id for r in records.values()]).values()) <= {
        "COMPLETED", "COMPLETING", "RUNNING"}
    print(f"\nJob end -> result in the database ({trials_n} tiny trials, one array, "
          f"{wall:.1f} s wall)")
    print(f"  result.json written -> ingested: median {statistics.median(lags.values()):.3f} s, "
          f"max {max(lags.values()):.3f} s")
    if end_lags:
        print(f"  sacct End (1 s resolution) -> ingested: median "
              f"{statistics.median(end_lags):.2f} s, max {max(end_lags):.2f} s "
              "(negative: ingested before Slurm saw the job end)")


def _sacct_end(job_ids: list[str]) -> dict[str, float]:
    from datetime import datetime

    time.sleep(2)  # let the jobs end
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,End", "-j",
                          ",".join(sorted({j.split("_")[0] for j in job_ids}))],
                         capture_output=True, text=True, timeout=60).stdout
    ends = {}
    for line in out.splitlines():
        jid, _, end = line.partition("|")
        if end and end != "Unknown":
            ends[jid] = datetime.fromisoformat(end).timestamp()
    return ends


# -- store throughput -------------------------------------------------------------------

def _result(trial_id: str) -> TrialResult:
    return TrialResult(
        "tp", trial_id, TrialStatus.DONE,
        final={f"iou/class{i}": 0.5 for i in range(8)} | {"miou": 0.5},
        epochs=[{"epoch": e, "step": 10 * e, "metrics": {"train_loss": 1.0, "val_miou": 0.4,
                                                         "epoch_seconds": 3.0}}
                for e in range(1, 4)],
        environment={"torch": "x"}, started_at="2026-01-01T00:00:00",
        finished_at="2026-01-01T00:01:00")


def _writer(url: str, ids: list[str], barrier, out) -> None:
    store = Store(url)
    barrier.wait()
    latencies = []
    for tid in ids:
        t0 = time.perf_counter()
        store.submitted("tp", tid, f"/runs/{tid}", "1_0")
        store.record(_result(tid))
        latencies.append(time.perf_counter() - t0)
    out.put((time.perf_counter(), latencies))
    store.close()


def bench_store(new_database, label: str, writers_list: list[int], total: int) -> None:
    """``new_database()`` gives an empty database URL for each round."""
    trials = expand(parse_recipe(TINY.format(name="tp", seeds=list(range(total))), "tp.toml"))
    print(f"\nStore write throughput, {label}: {total} trials finished (submitted + "
          "record: 9 final figures, 3 epochs x 3 metrics)")
    print(f"{'writers':>8} {'results/s':>10} {'p50 ms':>8} {'p95 ms':>8}")
    ctx = mp.get_context("fork")  # writers only use the store
    for writers in writers_list:
        url = new_database()
        store = Store(url)
        store.upsert_study("tp")
        store.register_trials("tp", trials)
        ids = [t.trial_id for t in trials]
        barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(url, ids[w::writers], barrier, out))
                 for w in range(writers)]
        for p in procs:
            p.start()
        barrier.wait()
        t0 = time.perf_counter()
        ends, latencies = [], []
        for _ in procs:
            end, lat = out.get(timeout=600)
            ends.append(end)
            latencies += lat
        for p in procs:
            p.join()
        wall = max(ends) - t0
        done = sum(1 for r in store.trials("tp", with_metrics=False) if r.status == "done")
        assert done == total, f"only {done} of {total} recorded"
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"{writers:>8} {total / wall:>10.1f} {1000 * statistics.median(latencies):>8.1f} "
              f"{1000 * p95:>8.1f}")
        store.close()


class PostgresDatabases:
    """Throw-away databases on the test server (never the shared ``ablate_test``)."""

    def __init__(self, server_url: str) -> None:
        from sqlalchemy import create_engine

        self.server_url = server_url
        self.admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def __call__(self) -> str:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = f"ablate_bench_{len(self.names)}_{os.getpid()}"
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=counts, default="1,8,32",
                        help="concurrent store writers per round, comma-separated")
    parser.add_argument("--results", type=at_least(1), default=640, help="trials finished per round")
    parser.add_argument("--submit-sizes", type=counts, default="1,16,128",
                        help="Slurm array sizes timed, comma-separated")
    parser.add_argument("--latency-trials", type=at_least(1), default=4,
                        help="trials of the real Slurm array (result latency)")
    parser.add_argument("--skip-slurm", action="store_true", help="the store part only")
    args = parser.parse_args()
    writers = args.writers
    print(f"machine: {describe()}")

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        conf = setting("SLURM_CONF")
        if args.skip_slurm:
            pass
        elif conf:
            os.environ["SLURM_CONF"] = conf
            bench_submission(folder, args.submit_sizes)
            bench_result_latency(folder, args.latency_trials)
        else:
            print(f"\nSlurm skipped: {read_env().get('ABLATE_SLURM_ERROR', 'no SLURM_CONF')}")

        rounds = iter(range(len(writers)))
        bench_store(lambda: f"sqlite:///{folder / f'tp{next(rounds)}.db'}",
                    "SQLite (WAL, local disk)", writers, args.results)
        pg = setting("ABLATE_TEST_PG_URL")
        if pg:
            databases = PostgresDatabases(pg)
            try:
                bench_store(databases, "PostgreSQL (local, fsync off)", writers, args.results)
            finally:
                databases.drop_all()
        else:
            print(f"\nPostgreSQL skipped: {read_env().get('ABLATE_PG_ERROR', 'no URL')}")


if __name__ == "__main__":
    main()
