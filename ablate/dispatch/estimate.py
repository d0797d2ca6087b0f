"""A study's time estimate from the database, the probe cache and the executor's
parallelism (``ablate plan``, ``ablate run``'s recorded estimate, ``--budget``).

The arithmetic is pure (``cost.estimate``, ``cost.throughput``, ``analysis.expected``);
this module gathers its inputs: done trials of each architecture (any study of the
database), cached or fresh probes (``cost.probe``), the executor's slots and devices,
and for ``--until-decided`` the design, its family of effects and the noise sd.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable, Collection
from typing import Any

from ablate.analysis.design import Design
from ablate.cost.estimate import (
    ConfigTime,
    Resources,
    StudyEstimate,
    cost_of,
    loop_scenarios,
)
from ablate.cost.probe import ProbeDevice, cached_probe, run_probe, work_key
from ablate.cost.throughput import (
    CPU,
    GPU,
    UNKNOWN,
    Throughput,
    Timing,
    WorkKey,
    measured,
    planned_steps,
    trial_seconds,
)
from ablate.cpus import worker_threads
from ablate.trials.expand import Trial
from ablate.trials.lifecycle import TrialStatus


def local_resources(jobs: int, gpus: list[Any], gpus_per_trial: int) -> Resources:
    """``--executor local``: ``jobs`` workers on ``gpus`` (each trial whole devices), or on
    the CPU (each worker its share of the cores; one in-process worker all of them)."""
    jobs = max(1, jobs)
    if gpus:
        per = max(1, gpus_per_trial)
        return Resources("local", GPU, max(1, min(jobs, len(gpus) // per)), per)
    return Resources("local", CPU, jobs, worker_threads(jobs))


def slurm_resources(recipe: Any, flags: dict[str, Any]) -> Resources:
    """``--executor slurm``: the recipe's ``[slurm]`` section under the command's flags."""
    def pick(name: str) -> int:
        value = flags.get(name)
        return int(getattr(recipe.slurm, name) if value is None else value)

    gpus = pick("gpus_per_trial")
    if gpus:
        return Resources("slurm", GPU, pick("array_parallelism"), gpus)
    return Resources("slurm", CPU, pick("array_parallelism"), pick("cpus_per_trial"))


def probe_device(resources: Resources) -> ProbeDevice | None:
    """Where this process can probe like the study's trials run; None for GPU trials on a
    machine without one (a login node)."""
    if resources.kind == CPU:
        return ProbeDevice(CPU, platform.processor() or platform.machine(),
                           resources.devices_per_trial)
    import torch  # lazy: loads torch

    if not torch.cuda.is_available():
        return None
    return ProbeDevice(GPU, torch.cuda.get_device_name(0), 1)


def _kind(environment: dict[str, Any] | None) -> str:
    device = str((environment or {}).get("device") or "cpu")
    return GPU if device.startswith("cuda") else CPU


def throughputs(store: Any, trials: list[Trial], resources: Resources, *,
                probe: bool = False,
                on_probe: Callable[[Trial], None] | None = None) -> dict[WorkKey, Throughput]:
    """Each work key's throughput: done trials of it in ``store`` (any study), else a
    cached probe, else (``probe``) a fresh one; keys with neither are left out."""
    keys = {work_key(t, resources.kind): t for t in trials}
    out: dict[WorkKey, Throughput] = {}
    if store is not None:
        timings = [Timing((r.arch_id, r.batch_size, _kind(r.environment)), r.seconds,
                          int(r.steps) if r.steps else None)
                   for r in store.trial_times(arch_ids={k[0] for k in keys},
                                              statuses=(TrialStatus.DONE,))
                   if r.seconds is not None]
        out = {k: v for k, v in measured(timings).items() if k in keys}
    missing = [t for k, t in keys.items() if k not in out]
    device = probe_device(resources) if missing else None
    for trial in missing if device is not None else []:
        found = cached_probe(trial, device)
        if found is None and probe:
            if on_probe is not None:
                on_probe(trial)
            found = run_probe(trial, device)
        if found is not None:
            out[work_key(trial, resources.kind)] = found
    return out


def trial_estimates(trials: list[Trial], found: dict[WorkKey, Throughput],
                    resources: Resources) -> dict[str, tuple[float | None, str]]:
    """Each trial's seconds and how they are known, by trial id."""
    out = {}
    for trial in trials:
        throughput = found.get(work_key(trial, resources.kind))
        seconds = trial_seconds(throughput, planned_steps(trial.spec))
        out[trial.trial_id] = (seconds, throughput.describe() if throughput and seconds
                               is not None else UNKNOWN)
    return out


def estimate_study(store: Any, recipe: Any, trials: list[Trial], resources: Resources, *,
                   design: Design | None = None, force: bool = False,
                   skip_failed: bool = False, settled: Collection[str] = (),
                   found: dict[WorkKey, Throughput] | None = None) -> StudyEstimate:
    """The study's estimate; with a sequential ``design``, the loop's worst and expected
    cases too. ``store`` may be None (no database yet): cached probes only. ``force``:
    done trials run again (``--force``), so none is left out. ``skip_failed``: failed
    trials do not (``--skip-failed``). ``settled``: trials that run no more whatever
    their status (a tuned study's tuning trials once its selection is recorded: a failed
    draw is not retried), counted in the study but not in what is left to run.
    ``found``: the throughputs (``throughputs``), when the caller has them."""
    study = recipe.name
    known_study = store is not None and any(s.name == study for s in store.studies())
    statuses = store.statuses(study) if known_study else {}
    if found is None:
        found = throughputs(store, trials, resources)
    each = trial_estimates(trials, found, resources)
    kept = {TrialStatus.DONE, *((TrialStatus.FAILED,) if skip_failed else ())}
    done = set(settled) if force else {
        t.trial_id for t in trials
        if statuses.get(t.trial_id) in kept or t.trial_id in settled}
    by_config: dict[str, list[Trial]] = {}
    for trial in trials:
        by_config.setdefault(trial.config_name, []).append(trial)
    configs = []
    for name, group in by_config.items():
        seconds, source = each[group[0].trial_id]  # a configuration's trials differ in seed
        configs.append(ConfigTime(name, len(group), sum(t.trial_id not in done for t in group),
                                  seconds, source))
    total = cost_of([each[t.trial_id][0] for t in trials], resources)
    left = cost_of([each[t.trial_id][0] for t in trials if t.trial_id not in done], resources)
    estimate = StudyEstimate(study, resources, tuple(configs), total, left)
    if design is None or not design.sequential:
        return estimate
    return _with_loop(estimate, store if known_study else None, recipe, trials, design)


def _with_loop(estimate: StudyEstimate, store: Any, recipe: Any, trials: list[Trial],
               design: Design) -> StudyEstimate:
    """The loop's worst case and its expected cases under no effect and at ``d`` (the
    margin, else the design's detectable effect)."""
    from ablate.analysis.expected import detectable, expected_seeds  # lazy: loads numpy

    family = family_size(recipe.name, trials)
    round_cost = cost_of([c.seconds for c in estimate.configs], estimate.resources)
    seeds_so_far = _seeds_so_far(store, recipe, trials)
    notes = []
    if family == 0:
        return dataclasses.replace(estimate, notes=("one configuration: no effect to decide, "
                                                    "the loop adds no seed",))
    cases: list[tuple[str, float]] = []
    margin = design.min_effect
    sd = noise_sd(store, recipe.name) if margin and store is not None else None
    if margin and sd is None:
        notes.append(f"expected case with --min-effect {margin:g}: needs the noise of the "
                     "effects, known once the recipe's seeds are done")
    else:
        margin_sd = margin / sd if margin and sd else None
        cases.append(("no effect", expected_seeds(design, family, 0.0, margin_sd)))
        if margin_sd:
            cases.append((f"every effect is {margin:g} points (the margin)",
                          expected_seeds(design, family, margin_sd, margin_sd)))
        else:
            mde = detectable(design, family)
            cases.append((f"every effect is {mde:.2f} noise sd (80% power by --max-seeds)",
                          expected_seeds(design, family, mde)))
        if sd:
            notes.append(f"noise: a contrast's per-seed sd {sd:.2f} points, from the done "
                         "trials")
    worst, expected = loop_scenarios(estimate.left, round_cost, seeds_so_far,
                                     int(design.max_seeds), cases)
    return dataclasses.replace(estimate, worst=worst, expected=expected, notes=tuple(notes))


def family_size(study: str, trials: list[Trial]) -> int:
    """The number of effects the study's configurations define (as the report counts)."""
    import pandas as pd  # lazy: loads pandas

    from ablate.analysis.effects import family_sizes  # lazy: loads numpy, pandas

    rows = {}
    for t in trials:
        rows.setdefault(t.config_name, {"study": study, "config_name": t.config_name,
                                        "variant": t.variant,
                                        **{f"axis:{k}": v for k, v in t.axes.items()}})
    return family_sizes(pd.DataFrame(list(rows.values()))).get(study, 0) if rows else 0


def noise_sd(store: Any, study: str) -> float | None:
    """The median per-seed sd of the study's effects, read as a fixed design on its done
    trials (None before two paired seeds)."""
    from ablate.analysis.effects import effects_table  # lazy: loads numpy, pandas
    from ablate.analysis.expected import contrast_sd  # lazy: loads numpy, scipy
    from ablate.report.frame import trials_frame  # lazy: loads pandas, sqlalchemy

    frame = trials_frame(store, [study])
    if frame.empty:
        return None
    table = effects_table(frame, designs={}, report=False)
    values = sorted(v for v in (contrast_sd(row) for row in table.itertuples()) if v)
    return values[len(values) // 2] if values else None


def _seeds_so_far(store: Any, recipe: Any, trials: list[Trial]) -> int:
    """The seeds the most grown configuration has (recorded ones and the recipe's); a
    tuned study's tuning seeds are not among them (the loop grows its confirmation)."""
    tuning = set(recipe.tune.settings.seeds) if getattr(recipe, "tune", None) else set()
    seeds: dict[str, set[int]] = {}
    for t in trials:
        if t.tuning_draw is None:
            seeds.setdefault(t.config_name, set()).add(t.seed)
    if store is not None:
        every = tuple(TrialStatus)
        for r in store.trial_times(study=recipe.name, statuses=every):
            if r.config_name in seeds and r.seed not in tuning:
                seeds[r.config_name].add(r.seed)
    return max((len(s) for s in seeds.values()), default=0)


def resources_for(executor: str, recipe: Any, *, jobs: int = 1, gpus: list[Any] | None = None,
                  gpus_per_trial: int | None = None,
                  slurm: dict[str, Any] | None = None) -> Resources:
    """What ``--executor`` offers a study, from the same options the executor is built
    from (``local``: its workers and GPUs; ``slurm``: the recipe's section and flags)."""
    if executor == "slurm":
        return slurm_resources(recipe, {**(slurm or {}), "gpus_per_trial": gpus_per_trial})
    return local_resources(jobs, list(gpus or []), gpus_per_trial or 1)


def plan_gpus(gpus_per_trial: int | None, recipe: Any) -> tuple[list[Any], int]:
    """The local GPUs ``ablate run`` would use here, and per trial; without an NVIDIA
    device on this machine none, without importing torch (plan starts fast)."""
    from ablate.dispatch.gpus import FAKE_GPUS_ENV, runner_gpus  # lazy: only for local plans

    if os.environ.get(FAKE_GPUS_ENV) is None and not os.path.exists("/dev/nvidiactl"):
        return [], max(1, gpus_per_trial or 1)
    return runner_gpus(None, gpus_per_trial, recipe.slurm.gpus_per_trial)
