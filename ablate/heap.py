"""The cyclic garbage collector paused for work that makes many objects and no reference
cycle: expanding 20,000 trials (its passes over the growing heap were a quarter of the
time) and reading hundreds of thousands of rows into a frame; or run less often where
cycles may form but most objects live to the end (a report)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


YOUNG_THRESHOLD = 20_000  # allocations between young-generation collections (Python: 700)


@contextmanager
def fewer_collections(threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """The young generation collected every ``threshold`` allocations instead of Python's
    700: a report allocates hundreds of thousands of objects that live until it ends (the
    imported libraries, frames, figure artists), and at the default the collector scanned
    them again and again (0.4-0.6 s, a tenth of a cold HTML report). Cycles are still
    collected, later; the caller's thresholds come back afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], threshold), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
