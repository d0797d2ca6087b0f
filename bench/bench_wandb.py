"""Benchmark: what ``--tracking wandb`` (offline) costs a quick-start trial.

The once-per-process start (``import wandb`` and starting ``wandb-core``) is timed first,
in a fresh process; then the sink alone, fed a quick-start trial's events without
training: ``wandb.init`` at the first event, each event, ``finish``. Then each of the
first ``--trials`` quick-start trials (``--set`` overrides allowed) is trained
``--repeats`` times without a tracker and with W&B, alternately (the order flips each
repeat), in this process, as a local ``--jobs 1`` runner trains them
(``dispatch.entry.run_trial``), after a 4-step warm-up of both paths. Printed per pair:
wall and process CPU time (all threads) without and with the sink, the time spent inside
the sink's calls and the CPU time of wandb's service processes (``wandb-core``, which
writes the run file beside training). On a shared, oversubscribed machine the wall and
CPU times of a whole trial vary by far more than the sink costs (spinning OpenMP threads
inflate CPU time too); the time inside the sink and wandb-core's CPU are the figures
that hold.

    .venv/bin/python bench/bench_wandb.py [--trials 1] [--repeats 2] [--set train.epochs=1]
    .venv/bin/python bench/bench_wandb.py --sink-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe  # noqa: E402

from ablate.dispatch.entry import TrialJob, run_trial  # noqa: E402
from ablate.dispatch.prepare import load_trials  # noqa: E402
from ablate.track import wandb as wandb_sink  # noqa: E402
from ablate.trials.ids import spec_dict  # noqa: E402
from ablate.trials.lifecycle import TrialStatus  # noqa: E402

SERVICES = ("wandb-core", "wandb-symon")
COLD = """
import time
start = time.perf_counter()
import wandb
imported = time.perf_counter()
run = wandb.init(mode="offline", dir={dir!r}, project="bench", reinit="create_new",
                 settings=wandb.Settings(console="off", silent=True))
run.finish()
print(imported - start, time.perf_counter() - imported)
"""


def service_cpu_seconds() -> float:
    """User + system CPU of this process's wandb service processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            comm = (stat.parent / "comm").read_text().strip()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        if comm in SERVICES:
            seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    mine = os.getpid()

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == mine:
                return True
        return False

    return sum(s for pid, s in seconds.items() if descends(pid))


class SinkClock:
    """Seconds spent inside the W&B sink's calls (its own cost in the training process)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        sink = wandb_sink.WandbSink
        for name in ("__init__", "event", "finish"):
            setattr(sink, name, self._timed(getattr(sink, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def sink_alone(folder: Path, repeats: int = 3) -> None:
    """The sink fed a quick-start trial's events without training (144 steps, a Stepped
    event every 4, 3 epochs): its start, each event, its finish, on a warm process."""
    from ablate.track.trial import TrackedTrial
    from ablate.train.events import EpochEnded, Stepped

    for repeat in range(repeats):
        trial = TrackedTrial("bench", f"t{repeat}", "c/seed=0", str(folder / f"alone{repeat}"),
                             axes={"model.keep_last_expansion": True}, config_name="c",
                             options={"wandb": {"mode": "offline", "project": "bench"}})
        start = time.perf_counter()
        sink = wandb_sink.WandbSink(trial)
        sink.event(Stepped(4, 144, 1, 3, 1.0, 0.01))  # the run starts at the first event
        started = time.perf_counter()
        events = 1
        for step in range(8, 145, 4):
            sink.event(Stepped(step, 144, step // 48 + 1, 3, 1.0, 0.01))
            events += 1
            if step % 48 == 0:
                sink.event(EpochEnded(step // 48, 3, step, {"train_loss": 1.0, "val_miou": 0.3}))
                events += 1
        logged = time.perf_counter()
        sink.finish({"status": TrialStatus.DONE.value, "final": {"miou": 0.3, "latency_ms": 10.0}})
        done = time.perf_counter()
        print(f"sink alone: start (wandb.init) {1000 * (started - start):.0f} ms, "
              f"{events} events {1e6 * (logged - started) / (events - 1):.0f} us each, "
              f"finish {1000 * (done - logged):.0f} ms", flush=True)


def train(trial, folder: Path, tracking: tuple[str, ...], clock: SinkClock) -> dict[str, float]:
    job = TrialJob(trial.study, trial.trial_id, trial.name, spec_dict(trial.spec), str(folder),
                   tracking=tracking, track_info={
                       "axes": trial.axes, "seed": trial.seed, "variant": trial.variant,
                       "config_name": trial.config_name,
                       "options": {"wandb": {"mode": "offline", "project": "bench"}}})
    sink_before, cpu_before = clock.seconds, service_cpu_seconds()
    start, process_start = time.perf_counter(), time.process_time()
    result = run_trial(job)
    wall, cpu = time.perf_counter() - start, time.process_time() - process_start
    assert result.status is TrialStatus.DONE, result.error
    return {"wall": wall, "cpu": cpu, "sink": clock.seconds - sink_before,
            "service_cpu": service_cpu_seconds() - cpu_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=at_least(1), default=1)
    parser.add_argument("--repeats", type=at_least(1), default=2)
    parser.add_argument("--sink-only", action="store_true",
                        help="only the once-per-process start and the sink alone (seconds)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        help="a recipe override for the timed trials, as `ablate run --set`")
    args = parser.parse_args()
    os.environ["WANDB_MODE"] = "offline"
    import torch  # lazy: the machine line names its threads

    print(describe(f"torch {torch.__version__}, threads {torch.get_num_threads()}"))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", COLD.format(dir=f"{tmp}/cold")],
                             capture_output=True, text=True, check=True)
        imported, first_run = (float(v) for v in out.stdout.split())
        print(f"once per process: import wandb {imported:.2f} s, first offline run (starts "
              f"wandb-core) {first_run:.2f} s", flush=True)
        sink_alone(Path(tmp))
        if args.sink_only:
            return
        recipe = str(ROOT / "recipes/quickstart.toml")
        _recipe, trials = load_trials(recipe, tuple(args.assignments))
        print(f"quick-start{' with ' + ' '.join(args.assignments) if args.assignments else ''}")
        clock = SinkClock()
        # warm both paths (torch, data, the wandb service) so each pair compares like for like
        _recipe, (warm, *_) = load_trials(recipe, ("train.iterations=4",))
        train(warm, Path(tmp) / "warm-off", (), clock)
        train(warm, Path(tmp) / "warm-on", ("wandb",), clock)
        rows = []
        for repeat in range(args.repeats):
            for trial in trials[:args.trials]:
                order = [(), ("wandb",)] if repeat % 2 == 0 else [("wandb",), ()]
                got = {}
                for tracking in order:
                    folder = Path(tmp) / f"{trial.trial_id}-{repeat}-{'+'.join(tracking) or 'off'}"
                    got[tracking] = train(trial, folder, tracking, clock)
                off, on = got[()], got[("wandb",)]
                rows.append((off["wall"], on["wall"], off["cpu"], on["cpu"], on["sink"],
                             on["service_cpu"]))
                print(f"{trial.name}\n  wall: off {off['wall']:.2f} s, wandb {on['wall']:.2f} s "
                      f"({on['wall'] - off['wall']:+.2f} s); process CPU: off {off['cpu']:.2f} s, "
                      f"wandb {on['cpu']:.2f} s ({on['cpu'] - off['cpu']:+.2f} s); in the sink "
                      f"{on['sink']:.3f} s; wandb-core CPU {on['service_cpu']:.2f} s", flush=True)
    wall_off, wall_on, cpu_off, cpu_on, sink, service = (statistics.median(column)
                                                         for column in zip(*rows))
    print(f"median over {len(rows)} pairs: wall off {wall_off:.2f} s, wandb {wall_on:.2f} s "
          f"({wall_on / wall_off:.3f}x); process CPU off {cpu_off:.2f} s, wandb {cpu_on:.2f} s "
          f"({cpu_on / cpu_off:.3f}x, {cpu_on - cpu_off:+.2f} s); in the sink {sink:.3f} s and "
          f"wandb-core {service:.2f} s CPU per trial")


if __name__ == "__main__":
    main()
