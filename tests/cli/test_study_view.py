"""What ``ablate run`` shows while a study runs: each trial's progress line names the
trial whole (its grid point in brackets included) and its Slurm job."""

from __future__ import annotations

import io

from rich.console import Console

from ablate.cli.study_view import StudyView
from ablate.dispatch.entry import TrialJob
from ablate.dispatch.events import Planned, TrialUpdate
from ablate.train.events import Claimed, JobStateChanged, Stepped, Submitted


def _view() -> StudyView:
    view = StudyView(Console(file=io.StringIO(), width=200), store=None)
    view.show(Planned(study="s", trials=2, skipped=0, retried=0))
    return view


def _job(tid: str, name: str) -> TrialJob:
    return TrialJob(study="s", trial_id=tid, name=name, spec={}, run_dir="/nowhere")


def _labels(view: StudyView) -> list[str]:
    """Each trial's progress line as the terminal shows it (the first task: the total)."""
    console = Console(file=io.StringIO(), width=200)
    return [console.render_str(task.description).plain for task in view.progress.tasks[1:]]


def test_progress_lines_keep_the_grid_point_and_the_job_id():
    """Rich reads a progress description as markup: unescaped, the two trials below
    both read 'all/seed=0' and the job id vanished."""
    view = _view()
    a = _job("t1", "all[keep_last_expansion=true]/seed=0")
    b = _job("t2", "all[keep_last_expansion=false]/seed=0")
    view.show(TrialUpdate(a, Submitted(job_id="12_0")))
    view.show(TrialUpdate(b, Claimed(resumed="timed_out")))
    assert _labels(view) == ["  all[keep_last_expansion=true]/seed=0 [job 12_0]",
                             "  all[keep_last_expansion=false]/seed=0 [resumes: timed out]"]
    view.show(TrialUpdate(a, JobStateChanged(job_id="12_0", state="RUNNING")))
    view.show(TrialUpdate(b, Stepped(step=4, total_steps=8, epoch=1, epochs=2, loss=0.5,
                                     lr=0.01)))
    assert _labels(view) == ["  all[keep_last_expansion=true]/seed=0 [job 12_0 RUNNING]",
                             "  all[keep_last_expansion=false]/seed=0 epoch 1/2 loss 0.500"]
    view.close()


def test_a_round_with_nothing_to_run_and_a_detached_round_draw_no_bar():
    """Every trial done: 'trials 0/0' stood under 'skipped'. Detached: the run returned
    once its jobs were queued, leaving 'trials 0/1' and an empty '0/?' bar per job."""
    out = io.StringIO()

    def terminal() -> Console:  # a terminal, where rich draws bars live; no colours
        return Console(file=out, width=100, force_terminal=True, color_system=None)

    view = StudyView(terminal(), store=None)
    view.show(Planned(study="s", trials=0, skipped=2, retried=0))
    view.close()
    detached = StudyView(terminal(), store=None, detached=True)
    detached.show(Planned(study="s", trials=1, skipped=0, retried=0))
    detached.show(TrialUpdate(_job("t1", "a/seed=0"), Submitted(job_id="12_0")))
    detached.close()
    assert out.getvalue() == "2 trial(s) already done (or failed, with --skip-failed): skipped.\n"
    assert detached.job_ids == {"t1": "12_0"}


class _NoTrials:
    """A store whose study holds no trial records (the summary's counts are the round's)."""

    def trials(self, study, with_metrics=True):
        return []

    def get_costs(self, arch_ids):
        return {}


def test_a_detached_slurm_round_says_it_queued_its_trials(capsys):
    """With --detach the round ends once its jobs are queued: it said '0 run' and
    'nothing left to take: every trial is done or held by another runner'."""
    from ablate.cli.study_view import print_summary
    from ablate.dispatch.claiming import runner_report
    from ablate.dispatch.events import RunSummary

    summary = RunSummary(total=4, submitted=["t1", "t2", "t3", "t4"])
    assert runner_report(_NoTrials(), "s", summary)[0] == (
        "this runner queued 4 trial(s) on Slurm; each job claims its trial when it starts")
    print_summary(_NoTrials(), "s", [], summary)
    assert "s: 0 run, 4 queued on Slurm, 0 skipped" in capsys.readouterr().out
    # waiting for them instead: those that ended are counted as run, not queued
    summary.done, summary.failed = ["t1", "t2"], ["t3"]
    assert runner_report(_NoTrials(), "s", summary)[:2] == [
        "this runner took 3 trial(s)",
        "this runner queued 1 trial(s) on Slurm; each job claims its trial when it starts"]
    summary.done.append("t4")
    assert runner_report(_NoTrials(), "s", summary)[0] == "this runner took 4 trial(s)"
    assert not summary.queued()


def test_the_trials_left_to_other_runners_are_counted_by_their_state_now():
    """After a kill -9 the next runner found one orphaned worker's trial running and the
    other's done; the orphan finished before the round ended, so the report said 'left 2
    to other runners (1 done, 1 running)' above 'study q: 12 done of 12 trial(s)'."""
    from types import SimpleNamespace

    from ablate.dispatch.claiming import runner_report
    from ablate.dispatch.events import RunSummary
    from ablate.trials.lifecycle import Held, TrialStatus

    class Finished:
        def trials(self, study, with_metrics=True):
            return [SimpleNamespace(trial_id=t, name=t, status=TrialStatus.DONE, preemptions=0,
                                    holder=None) for t in ("t1", "t2", "t3")]

    summary = RunSummary(total=3, done=["t1"], taken=["t1"],
                         left={"t2": Held(TrialStatus.DONE), "t3": Held(TrialStatus.RUNNING)})
    assert runner_report(Finished(), "q", summary) == [
        "this runner took 1 trial(s)", "left 2 to other runners (2 done now)",
        "study q: 3 done of 3 trial(s)"]



def test_a_slurm_round_does_not_call_a_cancelled_or_waited_for_trial_queued(capsys):
    """A job scancel'ed while 'ablate run' waited, and a trial another runner held and
    recorded while 'ablate run --wait' waited for it, were both counted as still queued:
    '0 run, 1 queued on Slurm' and 'this runner queued 1 trial(s) on Slurm; each job
    claims its trial when it starts' for a pending trial with no job."""
    from ablate.cli.study_view import print_summary
    from ablate.dispatch.claiming import runner_report
    from ablate.dispatch.events import RunSummary

    summary = RunSummary(total=3, submitted=["t1", "t2", "t3"], done=["t1"],
                         cancelled=["t2"], waited=["t3"])
    assert not summary.queued()
    assert runner_report(_NoTrials(), "s", summary)[:3] == [
        "this runner took 1 trial(s)",
        "1 trial(s) pending again: their Slurm job was cancelled (the next 'ablate run' "
        "runs them)",
        "left 1 to other runners (1 done now)"]
    print_summary(_NoTrials(), "s", [], summary)
    assert "s: 1 run (1 done, 0 failed), 0 skipped" in capsys.readouterr().out


def test_the_summary_shows_every_trial_name_whole_on_a_narrow_terminal(monkeypatch, capsys):
    """At 60 columns the round's table cut two seeds of one configuration to the same
    'lean_last_stage[keep_l…'."""
    from types import SimpleNamespace

    from rich.console import Console

    from ablate.cli import study_view
    from ablate.dispatch.events import RunSummary
    from ablate.trials.lifecycle import TrialStatus

    names = [f"lean_last_stage[keep_last_expansion=true]/seed={s}" for s in (0, 1)]

    class Done:
        def trials(self, study, with_metrics=True):
            return [SimpleNamespace(trial_id=n, name=n, status=TrialStatus.DONE, arch_id="a",
                                    metrics={"miou": 0.3}) for n in names]

        def get_costs(self, arch_ids):
            return {}

    monkeypatch.setattr(study_view, "make_console", lambda: Console(width=60))
    study_view.print_summary(Done(), "s", names, RunSummary(total=2, done=names))
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 60 and not any("…" in line for line in lines)
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert "".join(cells).count("lean_last_stage[keep_last_expansion=true]/seed=") == 2
