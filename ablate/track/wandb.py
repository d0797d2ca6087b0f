"""Weights & Biases sink: one W&B run per trial, offline first.

Each trial's run: ``group`` = its configuration (every axis but the seed, as reports name
it), ``job_type`` = the study, ``name`` = ``<configuration>/seed=<s>``, ``id`` derived
from the trial id (``<trial id>-<study hash>``) and resumed (``resume="allow"``), so a
trial that continues from its checkpoint (requeued, taken over, interrupted) continues
its run and its step count. Its config is flat: every resolved key with ``_`` for ``.``
(``model_keep_last_expansion``), ``none`` for None, lists as text, plus the study, trial
id, configuration, variant, seed and axes, so that every key filters and groups in the
W&B UI. Metrics: ``train/loss`` and ``train/lr`` at every logged step (W&B's step is the
optimizer step), ``val/<figure>`` and ``epoch/<figure>`` against ``epoch``; none of them
keeps a summary value (``define_metric(summary="none")``): the summary holds only
``final/<figure>``, the figures the report uses. Tags ``study:<name>`` and
``status:<status>``; a failed or interrupted trial ends with a non-zero exit code (W&B:
failed, or crashed when the process died), never finished. A trial trained from scratch
again is a new run (``-a2``) and moves the earlier attempt's run to the group
``<configuration>/superseded``: the configuration's group holds each seed once.

The run folder is the W&B ``dir`` (``<run folder>/wandb/``). W&B is offline when
``WANDB_MODE=offline``, when no API key is configured, or when the server does not
answer within :data:`PROBE_TIMEOUT_S`: one warning, and ``wandb sync`` uploads the runs
later. The runner decides once per study (``start_study``); a trial on another host (a
Slurm node) checks again for itself.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import netrc
import os
import re
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ablate import atomic
from ablate.track.trial import TrackedTrial, ended_status
from ablate.train.events import EpochEnded, Resumed, Stepped, TrialEvent
from ablate.trials.lifecycle import TrialStatus

INTERRUPTED = "interrupted"  # the status tag of a trial stopped without a result
RUN_FILE = "wandb_run.json"  # in the run folder: the run id, its attempt, the last step logged
SUPERSEDED = "superseded"  # the tag, and the group's suffix, of an attempt trained again
SAVE_EVERY_S = 1.0  # RUN_FILE's step between epoch ends (a write costs ~1 ms on a busy disk)
DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 5.0  # a server that does not answer: offline after this, not after minutes
# wandb's own defaults wait 90 s for init and forever for the upload at the end
TIMEOUTS = {"init_timeout": ("WANDB_INIT_TIMEOUT", 30.0),
            "finish_timeout": ("WANDB_FINISH_TIMEOUT", 60.0)}


def _warn(message: str) -> None:
    print(f"Warning: tracker wandb: {message}", file=sys.stderr, flush=True)


# -- online or offline -------------------------------------------------------------------


def choose_mode(environ: dict[str, str] | None = None) -> tuple[str, str | None]:
    """``(mode, reason)``: ``offline`` when asked (``WANDB_MODE=offline``), when no API key
    is configured or when the server does not answer; ``reason`` says why W&B is offline
    although it was not asked to be (None otherwise). ``WANDB_MODE=online`` skips the key
    check (other ways to log in), never the probe."""

    env = os.environ if environ is None else environ
    asked = (env.get("WANDB_MODE") or "").strip().lower()
    if asked in ("offline", "dryrun"):
        return "offline", None
    if asked == "disabled":
        return "disabled", None
    base = env.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    if asked != "online" and not has_credentials(base, env):
        return "offline", "no API key (WANDB_API_KEY, or `wandb login`)"
    error = probe(base)
    if error is not None:
        return "offline", f"{base} does not answer ({error})"
    return "online", None


def has_credentials(base_url: str, environ: dict[str, str] | Any) -> bool:
    """An API key in the environment, an identity token file, or ``wandb login``'s netrc
    entry for the server's host."""

    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urllib.parse.urlparse(base_url).hostname or ""
    try:
        return netrc.netrc(environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):  # no netrc file, or one that does not parse
        return False


def probe(url: str, timeout: float | None = None) -> str | None:
    """None when ``url`` answers an HTTP request (any status) within ``timeout``, else why."""

    import urllib.error  # lazy: loads http.client, ssl, email (~50 ms), only for the probe
    import urllib.request  # lazy: likewise

    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout or PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:  # an answer, even 404 or 401
        return None
    except (OSError, ValueError) as err:  # refused, timed out, no route, a bad URL
        return str(getattr(err, "reason", err)) or type(err).__name__


def start_study(study: str) -> dict[str, Any]:
    """In the runner, before any trial: the mode (one probe per study) and project, for
    the trials; ``reason`` is the warning to print when W&B went offline unasked."""

    mode, reason = choose_mode()
    return {"mode": mode, "reason": reason, "project": project_for(study),
            "host": socket.gethostname()}


def project_for(study: str) -> str:
    """``$WANDB_PROJECT``, or the study's name (characters W&B refuses become ``-``)."""
    return os.environ.get("WANDB_PROJECT") or re.sub(r"[/\\#?%:]", "-", study)[:128]


def open_run(mode: str, **init: Any):
    """``(run, mode)``: ``wandb.init`` in ``mode``; online failing (a refused key, a server
    that stops answering) falls back to offline with one warning."""

    import wandb  # lazy: optional wandb (~1 s)

    known = getattr(wandb.Settings, "model_fields", {})
    wanted: dict[str, Any] = {"console": "off", "silent": True, "save_code": False}
    for name, (variable, seconds) in TIMEOUTS.items():
        if variable not in os.environ:
            wanted[name] = seconds
    settings = wandb.Settings(**{k: v for k, v in wanted.items() if k in known})
    Path(init["dir"]).mkdir(parents=True, exist_ok=True)
    if mode == "online":
        try:
            return wandb.init(mode="online", settings=settings, **init), "online"
        except Exception as err:  # wandb raises its own kinds
            _warn(f"{type(err).__name__}: {err}".splitlines()[0][:300]
                  + "; this run is written offline")
            mode = "offline"
    return wandb.init(mode=mode, settings=settings, **init), mode


# -- names -------------------------------------------------------------------------------


def run_id(study: str, trial_id: str, attempt: int = 1) -> str:
    """``<trial id>-<study hash>`` (the same trial in two studies is two runs); a trial
    that trains from scratch again gets ``-a<attempt>``."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", trial_id)
    base = f"{base}-{hashlib.sha256(study.encode()).hexdigest()[:6]}"
    return base if attempt <= 1 else f"{base}-a{attempt}"


def config_key(path: str) -> str:
    """A dotted key as W&B filters and groups it: anything but letters, digits and ``_``
    becomes ``_`` (a dot would be read as nesting)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", path)


def config_value(value: Any) -> Any:
    """None as ``none`` (W&B cannot filter on null), lists as compact text (they group
    as one value), numbers, booleans and text as they are."""
    if value is None:
        return "none"
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested dict under its dotted path."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def run_config(trial: TrackedTrial) -> dict[str, Any]:
    """The run's config: every resolved key, the axes (dotted keys of the same names),
    and who the trial is."""
    config: dict[str, Any] = {}
    for path, value in {**flat_config(trial.spec), **trial.axes}.items():
        key = config_key(path)
        if key in config and config[key] != config_value(value):  # a_b.c beside a.b_c
            key = path.replace(".", "__")
        config[key] = config_value(value)
    config.update(study=trial.study, trial_id=trial.trial_id,
                  configuration=trial.config_name or trial.name, variant=trial.variant or "base",
                  seed=trial.seed, axes=",".join(config_key(k) for k in trial.axes) or "none",
                  run_folder=trial.run_dir)
    return config


def metric_name(key: str) -> str:
    """W&B sorts and filters names of letters, digits and ``_`` (``/`` makes sections): a
    runtime's figure ``latency_ms@onnxruntime/bs8`` becomes ``latency_ms_onnxruntime/bs8``."""
    return re.sub(r"[^A-Za-z0-9_/]", "_", key)


def trial_outcome(result: dict[str, Any]) -> tuple[TrialStatus | None, dict[str, Any]]:
    """``(status, final figures)`` of the result ``finish`` gets (``TrialResult.to_json()``):
    the one place this sink reads a result; status None for a trial stopped without one."""
    status = ended_status(result)
    return status, dict(result.get("final") or {}) if status is TrialStatus.DONE else {}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_state(path: Path) -> dict[str, Any] | None:
    """The run file of an earlier attempt (id, attempt, last step logged, and how it
    ended: a status tag's value, None while it ran or when its process died), if readable."""
    try:
        state = json.loads(path.read_text())
        return {"id": str(state["id"]), "attempt": int(state["attempt"]),
                "step": int(state["step"]), "status": state.get("status")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def superseded_group(group: str) -> str:
    """Where an attempt trained again goes: out of its configuration's group, whose W&B
    average must count each seed once."""
    return f"{group}/{SUPERSEDED}"


# -- the sink ----------------------------------------------------------------------------


class WandbSink:
    """One trial's W&B run. It starts at the trial's first event, when it is known
    whether training resumed from a checkpoint (the same run goes on) or started from
    scratch (a new run when an earlier attempt had logged steps)."""

    name = "wandb"

    def __init__(self, trial: TrackedTrial) -> None:
        self.trial = trial
        self.options = dict(trial.options.get("wandb") or {})
        self.state_path = Path(trial.run_dir) / RUN_FILE
        self.earlier = read_state(self.state_path)
        self.mode = self._mode()
        self.run: Any = None
        self.id = ""
        self.floor = 0  # steps up to here were logged by an earlier attempt of this run
        self.state: dict[str, Any] = {}  # what RUN_FILE holds: id, attempt, last step logged
        self.saved_at = 0.0

    def _mode(self) -> str:
        mode = self.options.get("mode")
        # the runner's view holds on its own host; a Slurm node may reach less than it did
        if mode is None or (mode == "online" and self.options.get("host") != socket.gethostname()):
            mode, reason = choose_mode()
            if reason:
                _warn(f"{reason}; the run of {self.trial.name} is written offline to its "
                      "run folder (`wandb sync` it later)")
        return mode

    def _start(self, resumed: bool) -> None:
        earlier, attempt = self.earlier, 1
        trial = self.trial
        project = self.options.get("project") or project_for(trial.study)
        group = trial.config_name or trial.name
        if earlier is not None:
            attempt = earlier["attempt"]
            if resumed:  # from its checkpoint: the run goes on after what it logged
                self.floor = earlier["step"]
            elif earlier["step"] > 0:  # from scratch again: a new run beside the old one
                attempt += 1
                self._supersede(earlier, project, group)
        self.id = run_id(trial.study, trial.trial_id, attempt)
        self.run, self.mode = open_run(
            self.mode, project=project, dir=trial.run_dir, id=self.id, resume="allow",
            reinit="create_new", name=trial.name, group=group, job_type=trial.study,
            tags=tags(trial.study, TrialStatus.RUNNING), config=run_config(trial))
        self.state = {"id": self.id, "attempt": attempt, "step": self.floor}
        self._save()
        atexit.register(self._save_at_exit)  # a Slurm requeue leaves by sys.exit
        run = self.run
        run.define_metric("epoch", summary="none")  # the summary: final figures only
        run.define_metric("train/*", summary="none")
        for section in ("val/*", "epoch/*"):
            run.define_metric(section, step_metric="epoch", summary="none")

    def _supersede(self, earlier: dict[str, Any], project: str, group: str) -> None:
        """Move the earlier attempt's run out of the configuration's group (W&B's grouped
        view would average its seed twice, its final figures beside the new ones): it
        is reopened in ``<group>/superseded`` with the tag ``superseded`` and ended as it
        ended (finished when it was done, else failed). A failure is one warning."""
        status = earlier.get("status")
        try:
            old, _ = open_run(
                self.mode, project=project, dir=self.trial.run_dir, id=earlier["id"],
                resume="allow", reinit="create_new", name=self.trial.name,
                group=superseded_group(group), job_type=self.trial.study,
                tags=[*tags(self.trial.study, status or "killed"), SUPERSEDED])
            old.finish(exit_code=0 if status == TrialStatus.DONE.value else 1)
        except Exception as err:  # wandb raises its own kinds
            _warn(f"the earlier run {earlier['id']} of {self.trial.name} stays in group "
                  f"{group}: {type(err).__name__}: {err}".splitlines()[0][:300])

    def _save(self) -> None:
        self.saved_at = time.monotonic()
        atomic.write_text(self.state_path, json.dumps(self.state))  # a kill leaves the old one

    def _save_at_exit(self) -> None:
        with contextlib.suppress(OSError):  # the folder may be gone
            self._save()

    def _log(self, values: dict[str, Any], step: int, save: bool = False) -> None:
        values = {key: float(value) for key, value in values.items() if _finite(value)}
        if values:
            self.run.log(values, step=step)
            self.state["step"] = step
            # a kill between saves logs up to a second of steps twice; wandb itself loses
            # the records of its last 15 s then (its file's flush interval)
            if save or time.monotonic() - self.saved_at >= SAVE_EVERY_S:
                self._save()

    def event(self, event: TrialEvent) -> None:
        try:
            if isinstance(event, Resumed | Stepped | EpochEnded) and self.run is None:
                self._start(resumed=isinstance(event, Resumed))
            if not isinstance(event, Stepped | EpochEnded) or event.step <= self.floor:
                return  # W&B keeps one value per step: what the earlier attempt logged
            if isinstance(event, Stepped):
                self._log({"train/loss": event.loss, "train/lr": event.lr}, event.step)
            else:
                self._log({"epoch": event.epoch, **{
                    (f"val/{k[4:]}" if k.startswith("val_") else f"epoch/{k}"): v
                    for k, v in event.metrics.items()}}, event.step, save=True)
        except Exception:
            self._abandon()  # the guard stops calling this sink: end the run as failed now
            raise

    def _abandon(self) -> None:
        if self.run is not None:
            with contextlib.suppress(Exception):
                self._save()
                atexit.unregister(self._save_at_exit)
                self.run.finish(exit_code=1)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        status, final = trial_outcome(result)
        if self.run is None:
            if status is None:  # stopped before its first step: nothing to say
                return {}
            self._start(resumed=False)  # failed before training: a run that says so
        run = self.run
        where = {"run_id": self.id, "mode": self.mode}
        try:
            self.state["status"] = str(status or INTERRUPTED)  # a superseded run ends so
            self._save()
            atexit.unregister(self._save_at_exit)
            where.update(project=run.project, dir=str(run.settings.sync_dir))
            run.summary.update({f"final/{metric_name(k)}": float(v)
                                for k, v in final.items() if _finite(v)})
            run.tags = tags(self.trial.study, status or INTERRUPTED)
            if status is None:  # interrupted: it resumes later
                run.mark_preempting()
        finally:  # never finished unless done (wandb#9568)
            run.finish(exit_code=0 if status is TrialStatus.DONE else 1)
        return where


def tags(study: str, status: str) -> list[str]:
    """``study:<name>``, ``status:<status>`` (a TrialStatus's value, or ``interrupted``)."""
    return [f"study:{study}", f"status:{status}"]
