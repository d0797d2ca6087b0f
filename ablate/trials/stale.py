"""Which trials an edit of the user's code made pending, and which files changed.

A trial id hashes the user's source files (``ids.code_files``), so after an edit the
same configuration and seed is a new, pending trial while the old one stays done under
its old id. ``ablate plan`` says so: a pending trial whose resolved spec equals a done
trial's of the study differs from it only in the code it would run. The files are
named from the per-file hashes each finished trial records (``environment.code``).
"""

from __future__ import annotations

from typing import Any

from ablate.trials.lifecycle import TrialStatus

SHOWN_FILES = 5


def code_change_notes(store: Any, study: str, trials: list[Any],
                      statuses: dict[str, TrialStatus]) -> list[str]:
    """One line such as ``2 trials pending because user code changed since their results:
    mypkg/blocks.py``; empty when no pending trial is explained by a code edit."""
    from ablate.data.catalog import user_dataset  # lazy: loads pydantic

    if store is None:
        return []
    current = {t.trial_id for t in trials}
    if not any(status == TrialStatus.DONE and tid not in current for tid, status in statuses.items()):
        return []  # no done trial outside this plan: nothing was left behind by an edit
    pending = [t for t in trials if statuses.get(t.trial_id) != TrialStatus.DONE
               and (t.spec.model.builder is not None or user_dataset(t.spec.data) is not None)]
    if not pending:
        return []
    from ablate.trials.ids import canonical_json, code_files, spec_dict  # lazy: loads pydantic

    before = {}  # the latest done trial of each resolved spec, among those no longer planned
    for record in store.trials(study, with_metrics=False, status=TrialStatus.DONE):
        if record.trial_id not in current:
            before[canonical_json(record.spec)] = record
    count, changed, unknown = 0, set(), False
    for trial in pending:
        old = before.get(canonical_json(spec_dict(trial.spec)))
        if old is None:
            continue
        count += 1
        ran = (old.environment or {}).get("code") or {}
        for key, files in code_files(trial.spec).items():
            if key not in ran:  # finished by an ablate that did not record its files
                unknown = True
                continue
            changed |= {path for path in files.keys() | ran[key].keys()
                        if files.get(path) != ran[key].get(path)}
    if not count:
        return []
    names = sorted(changed)
    where = ", ".join(names[:SHOWN_FILES])
    if len(names) > SHOWN_FILES:
        where += f" (+{len(names) - SHOWN_FILES} more)"
    trials_word = "trial" if count == 1 else "trials"
    line = f"{count} {trials_word} pending because user code changed since their results"
    if unknown:  # results of an ablate that hashed only the builder's file name no files
        line += (" (or ablate now hashes more of it: results of an older ablate do not "
                 "record their files)")
    return [f"{line}: {where}" if where else line]
