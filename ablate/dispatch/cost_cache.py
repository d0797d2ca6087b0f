"""Architecture costs through the per-user cache (``ablate.cost.cache``) as ``CostRecord``s.

``compute_costs`` looks here before counting, and remembers what it counted, so that
``ablate plan`` without a database, or ``ablate run`` on a new database, does not count
parameters and FLOPs of an architecture counted before by the same code.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ablate.cost import cache
from ablate.store import CostRecord
from ablate.trials.expand import Trial


def cached_costs(trials: list[Trial], have: dict[str, CostRecord]) -> dict[str, CostRecord]:
    """Cached costs of the architectures of ``trials`` missing from ``have``.

    An entry counted without FLOPs (``eval.flops = false``) serves only architectures
    none of whose trials asks for FLOPs.
    """
    wants_flops: dict[str, bool] = {}
    for trial in trials:
        if trial.arch_id not in have:
            wants_flops[trial.arch_id] = wants_flops.get(trial.arch_id, False) \
                or bool(trial.spec.eval.flops)
    if not wants_flops:
        return {}
    out = {}
    for arch_id, entry in cache.load(wants_flops).items():
        record = _record(entry)
        if record is not None and (record.flops is not None or not wants_flops[arch_id]):
            out[arch_id] = record
    return out


def remember(costs: dict[str, CostRecord]) -> None:
    """Write freshly counted costs to the cache (never an error)."""
    for arch_id, record in costs.items():
        entry = asdict(record)
        entry["resolution"] = list(record.resolution)
        cache.save(arch_id, entry)


def _record(entry: dict[str, Any]) -> CostRecord | None:
    """A ``CostRecord`` from a cache entry, None if the entry is not a sane one."""
    try:
        record = CostRecord(**{**entry, "resolution": tuple(entry["resolution"])})
    except (TypeError, KeyError, ValueError):
        return None
    ints = isinstance(record.params, int) and (record.flops is None
                                               or isinstance(record.flops, int))
    shape = len(record.resolution) == 2 and all(isinstance(v, int) for v in record.resolution)
    maps = isinstance(record.params_by_module, dict) and (
        record.flops_by_module is None or isinstance(record.flops_by_module, dict))
    return record if ints and shape and maps else None
