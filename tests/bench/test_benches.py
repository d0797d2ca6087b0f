"""The CPU versions of the training and input-pipeline benchmarks: they measure what
they say (images per second, side by side, from the same data), so that the GPU run of
the same code (bench/gpu_check.py) cannot rot."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # their `from machine import describe`
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_trainer_and_plain_loop_run_side_by_side_on_the_same_data(one_thread, capsys):
    bench = _load("bench_train_gpu")
    spec = bench.spec_for("quickstart", size=32, batch=2, steps=4, warmup=2, device="cpu")
    pair = bench.compare("quickstart cpu", spec, repeats=1)
    order = [i for b in bench.loop.EpochBatches(8, 2, spec.seed) for i in b]
    for run in pair.plain + pair.trainer:
        assert run.seen == order  # 4 steps x 2 images, the trainer's shuffled order
        assert math.isfinite(run.images_per_second) and run.images_per_second > 0
        assert math.isfinite(run.images_per_cpu_second) and run.images_per_cpu_second > 0
    assert pair.same_data() and math.isfinite(pair.ratio) and pair.ratio > 0
    bench.print_table([pair])
    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith("quickstart cpu") and " yes " in row
    [result] = bench.result_rows([pair])
    assert result["ratio"] == round(pair.ratio, 4) and result["first_step_s"] == []
    assert result["cpu_ratio"] == round(pair.cpu_ratio, 4)


@pytest.mark.slow
def test_the_pipeline_bench_times_the_trainers_loader_on_voc_files(tmp_path, one_thread):
    bench = _load("bench_pipeline")
    root = tmp_path / "voc"
    bench.write_voc(root, distinct=3, images=24)
    jpeg = root / "VOCdevkit/VOC2012/JPEGImages/2008_000000.jpg"
    from PIL import Image

    with Image.open(jpeg) as image:
        assert image.size == (500, 375) and image.format == "JPEG"
    for workers in (0, 1):
        rate = bench.pipeline_rate(root, workers, batches=3, batch=2, crop=64)
        assert rate["workers"] == workers and rate["images"] == 6
        assert rate["batch_shapes"] == [((2, 3, 64, 64), "torch.float32", (2, 64, 64))]
        assert math.isfinite(rate["images_per_second"]) and rate["images_per_second"] > 0
        assert rate["pin_memory"] is False  # pinned only on CUDA
        # a CPU-time rate only where this process did all the work
        assert (rate["images_per_cpu_second"] > 0) if workers == 0 else (
            rate["images_per_cpu_second"] is None)
    decode = bench.decode_ms(root, repeats=2)
    assert {"PIL jpeg", "PIL png"} <= set(decode) and min(decode.values()) > 0


def _imported_names(path: Path):
    """(line, module, name) of every ``from ablate... import name`` in a script, at any
    depth (checks import inside their functions)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.split(".")[0] == "ablate"):
            for alias in node.names:
                yield node.lineno, node.module, alias.name


def test_every_ablate_name_a_bench_script_imports_exists():
    import importlib

    # a renamed event once broke gpu_check's ddp check on the GPU only: caught here instead
    missing = []
    for path in sorted(BENCH.glob("*.py")):
        for line, module, name in _imported_names(path):
            found = importlib.import_module(module)
            if not hasattr(found, name) and importlib.util.find_spec(
                    f"{module}.{name}") is None:
                missing.append(f"{path.name}:{line}: {module}.{name}")
    assert missing == []
    nested = {(m, n) for _, m, n in _imported_names(BENCH / "gpu_check.py")}
    assert ("ablate.trials.lifecycle", "Trained") in nested  # inside check_ddp


@pytest.mark.slow
def test_the_throughput_checks_dry_run_on_the_cpu(tmp_path):
    import json
    import subprocess

    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py"), "--cpu", "--out", str(out), "--only",
         "train_throughput", "data_pipeline", "train_compile", "trials_per_gpu"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["check"]: r for r in json.loads(out.read_text())["checks"]}
    assert {n: r["status"] for n, r in rows.items()} == {
        "train_throughput": "PASS", "data_pipeline": "PASS", "train_compile": "SKIP",
        "trials_per_gpu": "PASS"}, rows
    [row] = rows["train_throughput"]["figures"]["rows"]
    assert row["same_data"] is True and row["ratio"] > 0
    [run] = rows["trials_per_gpu"]["figures"]["runs"]
    assert run["k"] == 2 and run["trials"] == 2 and run["most_neighbours"] == 1
    assert run["latency"] == ["timed alone"] and run["published_latency"] == 2


@pytest.mark.slow
def test_the_selective_bench_prints_every_case_with_its_flops_bound():
    import re
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_selective.py"), "--cpu-only", "--threads", "1",
         "--resolution", "64x128", "--densities", "0,0.5,1", "--rounds", "1",
         "--layouts", "blobs"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # density, layout, kernels, ms, x ref, range, flops bound, x unfolded, target verdict
    case = re.compile(r"^\s+(\d\.\d\d)\s+blobs\s+auto \S+\s+([\d.]+)\s+([\d.]+)\s+"
                      r"([\d.]+)-([\d.]+)\s+([\d.]+)\s+[\d.]+\s*(.*)$")
    rows = [m.groups() for m in map(case.match, proc.stdout.splitlines()) if m]
    assert [r[0] for r in rows] == ["0.00", "0.50", "1.00"], proc.stdout
    for _, ms, ratio, low, high, _, _ in rows:
        assert float(ms) > 0 and float(low) <= float(ratio) <= float(high)
    flops = [float(r[5]) for r in rows]
    assert flops[0] > 1.0 > flops[1] > flops[2] > 0.2  # the mask net on top; low path ~1/4
    assert rows[0][6] == "" and rows[1][6].startswith("<= 0.75: ")  # a verdict per target
    assert "dense folded" in proc.stdout
    # the output says what its ratios are against (a dense row of 1.26 read as a bug)
    assert "x ref: against each round's fastest dense model" in proc.stdout


def test_the_claims_bench_times_a_claim_a_renewal_and_a_recorded_result(tmp_path):
    """Part (b) of bench/bench_claims.py on SQLite (it called a store method that was gone)."""
    bench = _load("bench_claims")
    claim, renew, whole = bench.claim_overhead(f"sqlite:///{tmp_path / 'c.db'}", 3)
    assert 0 < claim <= whole and 0 < renew <= whole
    from ablate.store import Store

    assert set(Store(f"sqlite:///{tmp_path / 'c.db'}").statuses("bench_claims").values()) \
        == {"done"}


def test_the_cluster_bench_s_store_writer_records_its_results(tmp_path):
    """bench/bench_cluster.py's store-throughput writer, in-process (it called two store
    methods that were gone)."""
    import queue
    import threading

    from ablate.recipes.loader import parse_recipe
    from ablate.store import Store
    from ablate.trials.expand import expand

    bench = _load("bench_cluster")
    url = f"sqlite:///{tmp_path / 'tp.db'}"
    trials = expand(parse_recipe(bench.TINY.format(name="tp", seeds=[0, 1, 2]), "tp.toml"))
    store = Store(url)
    store.upsert_study("tp")
    store.register_trials("tp", trials)
    out = queue.Queue()
    bench._writer(url, [t.trial_id for t in trials], threading.Barrier(1), out)
    _end, latencies = out.get_nowait()
    assert len(latencies) == 3
    records = store.trials("tp")
    assert {r.status for r in records} == {"done"}
    assert all(r.metrics["miou"] == 0.5 and r.job_id == "1_0" for r in records)


@pytest.mark.slow
def test_the_ddp_evaluation_bench_times_both_modes_and_checks_their_figures_agree():
    """bench_ddp_eval.py on two CPU ranks, tiny: it prints both times and exits non-zero
    when the shares' figures differ from the whole set's."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_ddp_eval.py"), "--images", "5", "--size", "32",
         "--batch", "2", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[1].startswith("quickstart at 32x32, 5 images, eval.batch_size 2, cpu")
    times = {line[:34].strip(): float(line[34:].split()[0]) for line in lines[2:5]}
    assert set(times) == {"every rank, whole set (before)", "each rank, its share (now)",
                          "ratio now / before"} and all(t > 0 for t in times.values())
    assert lines[5].endswith("the same as the whole set's: True")


@pytest.mark.parametrize("trials", [8, 180, 184])
def test_the_report_bench_s_baseline_is_a_configuration_of_its_study(tmp_path, trials):
    """bench_report.py --trials below 184 named a baseline its study lacked (the widest
    ASPP's conventional configuration) and stopped at the first table."""
    bench = _load("bench_report")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    baseline = bench.build_database(url, trials)
    steps = bench.table_path(url, baseline)
    assert steps["table + fronts"] > 0
    from ablate.store import Store

    store = Store(url)
    assert baseline in {r.config_name for r in store.trials("bench", with_metrics=False)}
    store.close()


# modules the scripts import, not scripts: no --help, no machine line of their own
HELPERS = {"machine", "check_outcomes", "gpu_throughput"}
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in HELPERS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_bench_script_prints_the_machine_it_ran_on(name):
    """docs/benchmarks.md: each script prints the machine with its figures (bench_cost,
    bench_checkpoint_size and bench_knockout printed none, bench_cluster only the CPU
    count and load)."""
    source = (BENCH / f"{name}.py").read_text()
    assert "describe(" in source or name == "gpu_check"  # gpu_check: its environment check


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_bench_script_answers_help_with_its_options(name):
    """``--help`` prints the usage and a whole first sentence, without running the bench
    (bench_checkpoint_size had no options and ran its measure; bench_cluster's description
    stopped mid-sentence)."""
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    usage, description = done.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: {name}.py [-h]")
    assert description.rstrip().endswith("."), description


def test_the_byo_bench_times_this_checkout_s_ablate(tmp_path):
    """bench_byo.py's `ablate plan` processes got PYTHONPATH=examples/custom_unet alone,
    so they imported the venv's installed ablate, not the checkout's being timed."""
    import subprocess

    bench = _load("bench_byo")
    env = bench.plan_env(str(tmp_path / "cache"))
    assert env["ABLATE_CACHE_DIR"] == str(tmp_path / "cache")
    found = subprocess.run(
        [sys.executable, "-c", "import ablate, custom_unet; print(ablate.__file__)"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert Path(found).is_relative_to(BENCH.parent)


@pytest.mark.slow
def test_the_pipeline_bench_s_child_error_is_its_one_line(tmp_path):
    """``--before REV`` with too few ``--images`` ended in a CalledProcessError traceback
    that hid the child's reason."""
    from types import SimpleNamespace

    bench = _load("bench_pipeline")
    bench.write_voc(tmp_path / "voc", distinct=1, images=2)
    args = SimpleNamespace(batches=1, batch=2, crop=32, device="cpu", threads=1)
    with pytest.raises(SystemExit, match=r"--images: 2 images make 1 batches, need 3$"):
        bench.measure(BENCH.parent, tmp_path / "voc", 0, args)


def test_docs_benchmarks_lists_every_bench_script_and_no_other():
    """The script block of docs/benchmarks.md names every script in bench/ (bench_decisions,
    bench_knockout and bench_wandb were missing), the helpers under it."""
    import re

    text = (BENCH.parent / "docs" / "benchmarks.md").read_text()
    block = text.split("## The scripts", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    listed = set(re.findall(r"bench/(\w+\.(?:py|sh))", block))
    scripts = {p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh")}
    assert listed == scripts - {f"{h}.py" for h in HELPERS}
    after = text.split("## The scripts", 1)[1].split("```", 2)[2].split("##", 1)[0]
    assert set(re.findall(r"bench/(\w+)\.py", after)) == HELPERS


def test_the_decisions_bench_s_command_line_gives_its_seed(monkeypatch, capsys):
    """The printed command named every option but ``--seed``: a run with another seed
    could not be repeated from its output."""
    bench = _load("bench_decisions")
    ran = []
    monkeypatch.setattr(bench, "loop_table", lambda *a: ran.append(a))
    monkeypatch.setattr(sys, "argv", ["bench_decisions.py", "--part", "loop", "--seed", "7",
                                      "--replicates", "4"])
    bench.main()
    command = capsys.readouterr().out.splitlines()[1]
    assert command.startswith("command: bench/bench_decisions.py --replicates 4 ")
    assert " --seed 7 " in command and ran == [(4, 2, 7)]


def test_the_trainer_bench_labels_cpu_rows_with_the_precision_they_train_in():
    """On the CPU a row trains in float32 whatever --amp says: its label said bf16."""
    from types import SimpleNamespace

    bench = _load("bench_train_gpu")
    args = SimpleNamespace(models=["quickstart"], size=32, batch=2, steps=4, warmup=2,
                           amp="bf16", channels_last="auto", compile=True, deterministic=True)
    cpu = [label for label, _ in bench.settings(SimpleNamespace(**vars(args), device="cpu"))]
    assert cpu == ["quickstart fp32", "quickstart fp32 compile", "quickstart fp32 deterministic"]
    cuda = [label for label, _ in bench.settings(SimpleNamespace(**vars(args), device="cuda"))]
    assert cuda[0] == "quickstart bf16"


def test_the_ddp_evaluation_bench_refuses_sizes_it_cannot_run():
    """--ranks 0 ended in a KeyError traceback after spawning nothing."""
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / "bench_ddp_eval.py"), "--ranks", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "bench_ddp_eval.py: error: --ranks must be at least 2, got 1")


@pytest.mark.slow
@pytest.mark.parametrize("images, line", [
    ("1", "train.batch_size: 2 is larger than the training set (1)"),  # ablate's refusal
    ("2", "--images: 2 images make 1 batches, need 3"),  # the bench's own
])
def test_the_pipeline_bench_refuses_too_few_images_in_one_line_exit_2(images, line):
    """Too few ``--images`` exited 1 (the bench's line) or with a traceback (ablate's)."""
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / "bench_pipeline.py"), "--images", images,
                           "--distinct", "1", "--workers", "0", "--batches", "1", "--batch", "2",
                           "--crop", "32", "--repeats", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"bench_pipeline.py: error: {line}"]


BAD_COUNTS = [("bench_byo", "--repeats"), ("bench_claims", "--repeats"),
              ("bench_cluster", "--writers"), ("bench_cost", "--repeats"),
              ("bench_data", "--repeats"), ("bench_decisions", "--jobs"),
              ("bench_knockout", "--repeats"), ("bench_pipeline", "--workers"),
              ("bench_plan", "--repeats"), ("bench_plan_train", "--repeats"),
              ("bench_report", "--repeats"), ("bench_runtimes", "--runs"),
              ("bench_selective", "--rounds"), ("bench_train_gpu", "--repeats"),
              ("bench_tuning_bias", "--replicates"), ("bench_wandb", "--repeats")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "option"), BAD_COUNTS)
def test_a_bench_refuses_a_count_below_its_least_in_one_line(name, option):
    """``--repeats 0`` and the like ran the bench and ended in a traceback (a median of no
    runs, ``max()`` of nothing, a process pool of 0 workers, or NaN figures and exit 0)."""
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), option, "-1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"{name}.py: error: argument {option}: must be at least ")


@pytest.mark.parametrize(("text", "message"), [("12x", "is not HxW"), ("0x5", "at least 1")])
def test_a_bench_size_is_hxw_with_both_sides_at_least_one(text, message):
    """``--resolution 12x`` ended in int()'s traceback."""
    import argparse

    machine = _load("machine")
    assert machine.hxw("512X1024") == (512, 1024)
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        machine.hxw(text)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "option", "value", "reason"), [
    ("bench_knockout", "--remove", "nosuch", "model.remove: the network has no module 'nosuch'"),
    ("bench_cost", "--backbone", "nosuch", "backbone: unknown backbone 'nosuch'")])
def test_a_model_bench_refuses_a_model_ablate_refuses_in_one_line(name, option, value, reason):
    """A misspelt backbone or module ended in a pydantic or UserInputError traceback."""
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), option, value,
                           "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"{name}.py: error: {reason}")


def test_the_report_bench_judges_its_targets_only_at_the_sizes_they_are_set_for():
    """--trials 2000 printed "target <= 2 s: met" for a target set at 100,000 trials."""
    bench = _load("bench_report")
    assert bench.judge(0.05, 2, 2_000, bench.TABLE_TRIALS) == "not judged below 100,000 trials"
    assert bench.judge(1.9, 2, 100_000, bench.TABLE_TRIALS) == "met"
    assert bench.judge(2.1, 2, 100_000, bench.TABLE_TRIALS) == "MISSED"
    assert bench.judge(4.6, 5, 1_000, bench.PLOT_TRIALS) == "met"
