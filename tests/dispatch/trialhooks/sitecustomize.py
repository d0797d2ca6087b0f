"""Test hooks for trials, loaded at start-up by every Python process of a test that puts
this folder first on PYTHONPATH: the runner, its spawned workers and Slurm jobs alike
(they inherit the submitting environment). Each waits on files, never on a clock, so
that what a test asserts about running trials holds however loaded the machine is:

- ``ABLATE_TEST_RENDEZVOUS=FOLDER:N``: each trial, at its first progress event (its start
  stamped, its end not yet), leaves ``FOLDER/<trial id>`` and waits until N trials have.
  Trials whose overlap a test asserts then overlap, instead of by the luck of two
  processes loading torch equally fast.
- ``ABLATE_TEST_HOLD=FOLDER:STEP``: each trial, at its first step event at or past STEP,
  leaves ``FOLDER/<trial id>`` and waits until ``FOLDER/release`` exists. A test then
  acts on a trial it knows is running, at a known step (its checkpoints before STEP
  written), instead of racing it to its end.
"""

import os

_RENDEZVOUS = os.environ.get("ABLATE_TEST_RENDEZVOUS")
_HOLD = os.environ.get("ABLATE_TEST_HOLD")

if _RENDEZVOUS or _HOLD:
    import time
    from pathlib import Path

    from ablate.dispatch import claiming
    from ablate.train.events import Stepped

    WAIT_AT_MOST_S = 900.0  # bounds a failure only (a test that never lets a trial go on)
    _real_run_trial = claiming.run_trial

    def _wait_for(ready) -> None:
        deadline = time.monotonic() + WAIT_AT_MOST_S
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)  # short: a signal (Slurm's USR2) is handled between naps

    def _meets(trial_id: str):
        folder, _, count = _RENDEZVOUS.rpartition(":")
        met = []

        def at(event) -> None:
            if not met:
                met.append(True)
                Path(folder, trial_id).touch()
                _wait_for(lambda: len(os.listdir(folder)) >= int(count))

        return at

    def _holds(trial_id: str):
        folder, _, step = _HOLD.rpartition(":")

        def at(event) -> None:
            if isinstance(event, Stepped) and event.step >= int(step):
                Path(folder, trial_id).touch()
                _wait_for(Path(folder, "release").exists)

        return at

    def _run_trial(job, progress=None, **kwargs):
        hooks = [make(job.trial_id) for make, on in ((_meets, _RENDEZVOUS), (_holds, _HOLD))
                 if on]

        def hooked(event) -> None:
            for hook in hooks:
                hook(event)
            if progress is not None:
                progress(event)

        return _real_run_trial(job, progress=hooked, **kwargs)

    claiming.run_trial = _run_trial
