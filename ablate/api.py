"""Notebooks: ``ablate.open(db)`` and the pandas frames the reports are built from.

    >>> import ablate
    >>> db = ablate.open("results/ablate.db")
    >>> db.studies()                 # one row per study, trials counted by state
    >>> db.trials("quickstart")      # the columns of `ablate export`
    >>> db.configs("quickstart")     # the rows of `ablate report --json`
    >>> db.effects("quickstart")     # the "effects" of `ablate report --json --effects`

Read-only: it never creates a database nor writes to one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # lazy: loads pandas

    from ablate.store import Store


def open_store(db: str | None) -> Store:
    """The store at ``db`` for reading only: a missing database is an error, never
    created; read-only connections take no write lock on SQLite, so polling never makes
    a runner wait."""
    from ablate.store import Store  # lazy: loads sqlalchemy

    return Store(db, read_only=True)


class Database:
    """One database of studies; every method reads afresh (a study may be running)."""

    def __init__(self, db: str | None = None) -> None:
        self.store = open_store(db)
        self.url = self.store.display_url

    def __repr__(self) -> str:
        return f"ablate.open({self.url!r})"

    def studies(self) -> pd.DataFrame:
        """``study, description, recipe_path, created_at, trials`` and one count column per
        trial state (``ablate.trials.lifecycle.TrialStatus``: done, running, pending,
        failed, preempted, timed_out)."""
        import pandas as pd  # lazy: loads pandas

        from ablate.store import read  # lazy: loads pandas, sqlalchemy
        from ablate.trials.lifecycle import TrialStatus  # lazy: the package face stays light

        rows = read.trial_rows(self.store, None)
        names = read.study_names(self.store)
        counts = (pd.crosstab(rows["study_pk"].map(names), rows["status"]) if not rows.empty
                  else pd.DataFrame())
        out = []
        for record in self.store.studies():
            row = {"study": record.name, "description": record.description,
                   "recipe_path": record.recipe_path, "created_at": record.created_at}
            states = counts.loc[record.name] if record.name in counts.index else {}
            for state in TrialStatus:
                row[state.value] = int(states.get(state.value, 0)) if len(states) else 0
            row["trials"] = sum(row[s.value] for s in TrialStatus)
            out.append(row)
        columns = ["study", "description", "recipe_path", "created_at", "trials",
                   *(s.value for s in TrialStatus)]
        return pd.DataFrame(out, columns=columns)

    def trials(self, study: str, where: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
        """Every trial of ``study``, a row each: the columns of ``ablate export``."""
        from ablate.report.export import export_frame  # lazy: loads numpy, pandas, sqlalchemy

        return export_frame(self.store, study, where)

    def configs(self, study: str, *, where: list[str] | tuple[str, ...] = (),
                baseline: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
        """One row per configuration: the rows of ``ablate report --json``."""
        return self._report(study, where=where, baseline=baseline, alpha=alpha).configs

    def effects(self, study: str, *, where: list[str] | tuple[str, ...] = (),
                baseline: str | None = None, alpha: float = 0.05,
                min_effect: float | None = None) -> pd.DataFrame:
        """The effect of each axis on mIoU: the ``effects`` of ``ablate report --json
        --effects`` (columns ``ablate.analysis.effects.EFFECT_COLUMNS``, then
        ``ablate.analysis.improvement.SEED_COLUMNS``)."""
        return self._report(study, where=where, baseline=baseline, alpha=alpha,
                            effects=True, min_effect=min_effect).effects

    def _report(self, study: str, **options):
        from ablate.report.build import build_report  # lazy: loads numpy, pandas, sqlalchemy

        # an unknown study said as trials() says it, not with the command's --study
        return build_report(self.store, [study], study_option="", **options)


def open_database(db: str | None = None) -> Database:
    return Database(db)
