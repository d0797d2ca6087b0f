"""Result store. Import ``Store`` and the records; ORM rows stay inside this package."""

from ablate.store.records import CostRecord, EpochMetric, StudyRecord, TrialRecord
from ablate.store.store import Store, resolve_url

__all__ = ["CostRecord", "EpochMetric", "Store", "StudyRecord", "TrialRecord", "resolve_url"]
