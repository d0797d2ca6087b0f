"""Result store. Import ``Store`` and the records; ORM rows stay inside this package."""

from ablate.store.records import (
    CostRecord,
    EpochMetric,
    EstimateRecord,
    StudyRecord,
    TrialRecord,
    TrialTime,
)
from ablate.store.store import Store, resolve_url

__all__ = ["CostRecord", "EpochMetric", "EstimateRecord", "Store", "StudyRecord", "TrialRecord",
           "TrialTime", "resolve_url"]
